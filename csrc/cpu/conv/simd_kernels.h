// The direct and Winograd kernels that AVX2 and AVX-512 both have (conv/kernels.h), declared
// inside each set's namespace by conv/kernels.h (no include guard: included once per set).
// (The numbers are conv/kernels.h's.)

// 1. The direct forward: out (channels, ld)[c][q] = bias[c] + sum_t w(t, c) * xpad[q +
// offsets[t]] for q < length (bias may be null), the weights blocked by 4 channels: w(t, c) = weight_blocked[((c / 4) *
// taps + t) * 4 + c % 4]. Writes nothing past length; reads xpad up to a vector past it.
template <typename T>
void conv_direct(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out);

// The same convolution in row-aligned tiles: out (channels, ld)[c][r * width + j] = bias[c] +
// sum_t w(t, c) * xpad[r * wp + j + offsets[t]] for r < rows, j < width (bias may be null), so
// out can be the conv's output itself: no padded columns beyond a row's last vector (the 5x5
// valid layer on 28x28: 24 per row, not 28), no copy. Writes a row's last vector whole into
// the next row's first columns before computing that row (all but the last row), and reads
// xpad up to the last row's position + width rounded up to a vector.
template <typename T>
void conv_direct_rows(const DirectConvArgs& a, const T* xpad, const T* weight_blocked, const T* bias, T* out);

// 2. The weight gradient of the same direct convolution (conv/direct_avx2.cpp): with the output
// gradient transposed into blocks of B = kDirectChannelBlock<T> channels, dy_blocked[b][p][j] =
// dy of channel b * B + j at output position p = oh * out_width + ow (zero past the
// last channel), and the padded input of the forward,
//   dw_blocked[b][t][j] += sum over (oh, ow) of xpad[oh * wp + ow + offsets[t]] * dy_blocked[b][p][j],
// an outer-product GEMM over the positions (no im2col, no horizontal sums, only the out_width
// real columns of each row).
template <typename T>
void conv_direct_weight_grad(const DirectWeightGradArgs& a, const T* xpad, const T* dy_blocked, T* dw_blocked);

// 2b. The weight gradient as dot products over the output plane, for shifted planes (conv.cpp,
// few input channels), where every tap reads xs at a fixed offset from the output position q:
//   dw[c * dw_channel + t * dw_tap] += sum over q < length of dy[c * ld + q] * xs[q + offsets[t]]
// for c < channels, t < taps; vectorised over q, so dy needs no transposing (for one input
// channel that transpose had cost as much as the products).
template <typename T>
void conv_dot_weight_grad(const int64_t* offsets, int64_t taps, int64_t channels, int64_t length, const T* xs,
                          const T* dy, int64_t ld, T* dw, int64_t dw_channel, int64_t dw_tap);

// 6. Winograd F(2x2, 3x3) for 3x3 stride-1 convs (conv/winograd_kernels.h; conv.cpp runs the
// products between them through conv_direct): the input's phase planes (its even/odd rows and
// columns, zero-padded), the input transform B^T d B of every tile into v, and the output
// transform A^T m A (plus bias) into the NCHW output. See that file for the layouts.
template <typename T>
bool winograd_phases(const T* x, int64_t channels, int64_t height, int64_t width, int64_t pad_h, int64_t pad_w,
                     int64_t th, int64_t tc, int64_t plane, T* phases);
template <typename T>
void winograd_input(const T* phases, int64_t channels, int64_t plane, int64_t tc, int64_t k0, int64_t count, T* v,
                    int64_t v_ci, int64_t v_xi);
template <typename T>
void winograd_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                     int64_t count, int64_t tc, int64_t out_h, int64_t out_w, T* y, T* yab);
template <typename T>
void winograd_pool_output(const T* m, int64_t m_co, int64_t m_xi, int64_t channels, const T* bias, int64_t k0,
                          int64_t count, int64_t tc, int64_t out_w, int64_t ph, int64_t pw, T* y, int64_t* indices,
                          T* yab);
