// Direct convolution for one input channel (a network's first layer on grey images), where
// im2col + GEMM has a depth of only kernel_h * kernel_w. Included once per instruction set,
// inside namespace fastrnn::cpu::isa_<name>, so the compiler vectorises it for that set.
//
// Each step keeps kChannels output channels x kWidth output columns of one output row in
// registers and sweeps the kernel taps over a zero-padded copy of the image, so every input
// load feeds kChannels FMAs and no tap needs a bounds check.

constexpr int64_t kDirectChannels = 4, kDirectWidth = 16;

// Elements of the padded image copy: (out_h + kernel_h - 1) rows of out_w + kernel_w - 1
// columns, plus a row's slack for the last column block reading past the row.
inline int64_t direct_padded_elements(const ConvShape& s) {
  return (s.out_height + s.kernel_h - 1) * (s.out_width + s.kernel_w - 1) + kDirectWidth;
}

// y_n (out_channels, out_h, out_w) = conv(x_n (1, H, W)) + bias, stride 1, dilation 1.
template <typename T>
void direct_single_channel(const ConvShape& s, const T* x_n, const T* weight, const T* bias, T* y_n, T* padded) {
  const int64_t OH = s.out_height, OW = s.out_width, KH = s.kernel_h, KW = s.kernel_w;
  const int64_t PH = OH + KH - 1, PW = OW + KW - 1, taps = KH * KW;
  for (int64_t r = 0; r < PH; ++r) {
    const int64_t ih = r - s.pad_h;
    T* dst = padded + r * PW;
    for (int64_t c = 0; c < PW; ++c) {
      const int64_t iw = c - s.pad_w;
      dst[c] = ih >= 0 && ih < s.height && iw >= 0 && iw < s.width ? x_n[ih * s.width + iw] : T(0);
    }
  }
  for (int64_t c = 0; c < kDirectWidth; ++c) padded[PH * PW + c] = T(0);
  for (int64_t co0 = 0; co0 < s.out_channels; co0 += kDirectChannels) {
    const int64_t cn = co0 + kDirectChannels <= s.out_channels ? kDirectChannels : s.out_channels - co0;
    T w[kDirectChannels][64];  // the taps of these channels (kernels up to 8x8 take this path)
    T b[kDirectChannels];
    for (int64_t c = 0; c < kDirectChannels; ++c) {
      const int64_t co = co0 + (c < cn ? c : 0);
      for (int64_t t = 0; t < taps; ++t) w[c][t] = c < cn ? weight[co * taps + t] : T(0);
      b[c] = bias != nullptr && c < cn ? bias[co] : T(0);
    }
    for (int64_t oh = 0; oh < OH; ++oh) {
      for (int64_t ow0 = 0; ow0 < OW; ow0 += kDirectWidth) {
        T acc[kDirectChannels][kDirectWidth];
#pragma GCC unroll 4
        for (int64_t c = 0; c < kDirectChannels; ++c)
#pragma GCC unroll 16
          for (int64_t j = 0; j < kDirectWidth; ++j) acc[c][j] = b[c];
        for (int64_t kh = 0; kh < KH; ++kh) {
          const T* row = padded + (oh + kh) * PW + ow0;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t t = kh * KW + kw;
#pragma GCC unroll 4
            for (int64_t c = 0; c < kDirectChannels; ++c) {
              const T wt = w[c][t];
#pragma GCC unroll 16
              for (int64_t j = 0; j < kDirectWidth; ++j) acc[c][j] += wt * row[kw + j];
            }
          }
        }
        const int64_t width = ow0 + kDirectWidth <= OW ? kDirectWidth : OW - ow0;
        for (int64_t c = 0; c < cn; ++c) {
          T* out = y_n + ((co0 + c) * OH + oh) * OW + ow0;
          for (int64_t j = 0; j < width; ++j) out[j] = acc[c][j];
        }
      }
    }
  }
}
