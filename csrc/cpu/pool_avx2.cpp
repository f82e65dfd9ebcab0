// Pooling with AVX2 for the common windows: 2x2 and 3x3, stride 1 or 2, no dilation (any
// padding, ceil_mode and divisor). Each output row runs SIMD blocks over its interior columns
// (windows wholly inside the input). Max pool also runs the windows clipped by the input's edges
// as SIMD blocks (fewer rows; masked loads at the left and right); average pool runs the border
// outputs, and rows whose windows leave the input, in the portable code. The work streams
// through memory, so the goal is touching each byte once at close to memory bandwidth: stride-2
// windows are deinterleaved in registers (shuffles), never gathered.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/pool_kernels.h"

namespace fastrnn::cpu::isa_avx2 {

#include "cpu/simd/avx2.h"

namespace {

// 8 floats with positions as 8 int32, or 4 doubles with positions as 4 int64.
template <typename T>
using Simd = Avx2<T>;

// Outputs [first, last) along one dimension whose K-wide windows (stride 1 or 2) lie inside [0, size).
struct Interior {
  int64_t first, last;
};
Interior interior(int64_t size, int64_t out_size, int kernel, int64_t pad, int stride) {
  const int64_t first = (pad + stride - 1) / stride, reach = size - kernel + pad;
  int64_t last = reach < 0 ? 0 : reach / stride + 1;
  last = last < out_size ? last : out_size;
  return {first, last < first ? first : last};
}

// Calls block(ow) for blocks of kLanes outputs covering [first, last) (at least kLanes wide);
// the last block is shifted left to end at `last`, recomputing a few outputs instead of
// running a scalar tail (pooled rows are short: 14 outputs for a 28-wide input).
template <int kLanes, typename Fn>
inline void for_each_block(Interior cols, const Fn& block) {
  for (int64_t ow = cols.first;; ow += kLanes) {
    if (ow > cols.last - kLanes) ow = cols.last - kLanes;
    block(ow);
    if (ow == cols.last - kLanes) break;
  }
}

// kLanes outputs of a K x K max pool with stride kStride. row[k] points at window column 0 of the
// first output in the k-th of the window's `rows` rows inside the input (K, or fewer where the
// window's top or bottom lies in the padding: torch scans only the rows inside; `skipped` of them
// lie above the input); `row_start` is the flat index of the first of those rows in the plane,
// `col0` the first output's window column 0 (negative in the left padding). Index: void (no
// indices), int64_t (flat positions) or uint8_t (window slots). kBorder: some lanes' windows are
// clipped by the left or right edge; their columns outside [0, width) load as -inf and, as in
// torch's loop (best = -inf, index = the first element inside), never take over, so values,
// indices, ties and NaN come out as torch's.
template <typename T, int K, int kStride, typename Index, bool kBorder = false>
inline void max_block(const T* const* row, int rows, int skipped, int64_t width, int64_t row_start, int64_t col0,
                      T* out, Index* idx) {
  using S = Simd<T>;
  constexpr int L = S::kLanes;
  constexpr bool kIndices = !std::is_void_v<Index>;
  constexpr bool kSlots = std::is_same_v<Index, uint8_t>;
  using V = typename S::V;
  auto load = [&](int k, int offset) -> V {
    if constexpr (kBorder) {
      return S::load_inside(row[k] + offset, col0 + offset, width);
    } else {
      return S::load(row[k] + offset);
    }
  };
  if constexpr (!kIndices) {
    V best;
    if constexpr (kStride == 1) {
      // Rows first (K loads per column offset), then the K column offsets.
      for (int c = 0; c < K; ++c) {
        V column = load(0, c);
        for (int k = 1; k < K && k < rows; ++k) column = S::max_nan(column, load(k, c));
        best = c == 0 ? column : S::max_nan(best, column);
      }
    } else {
      // Rows first, then the columns: deinterleaved even and odd ones, and for K = 3 column 2 of
      // window j, x[2j + 2]: the odd elements of the row read from x + 1.
      V a = load(0, 0), b = load(0, L);
      for (int k = 1; k < K && k < rows; ++k) {
        a = S::max_nan(a, load(k, 0));
        b = S::max_nan(b, load(k, L));
      }
      V even, odd;
      S::deinterleave(a, b, even, odd);
      best = S::max_nan(even, odd);
      if constexpr (K == 3) {
        V c = load(0, 1), d = load(0, 1 + L);
        for (int k = 1; k < K && k < rows; ++k) {
          c = S::max_nan(c, load(k, 1));
          d = S::max_nan(d, load(k, 1 + L));
        }
        V unused, third;
        S::deinterleave(c, d, unused, third);
        best = S::max_nan(best, third);
      }
    }
    S::store(out, best);
  } else {
    // torch's scan order: row by row, left to right; `greater_or_nan` keeps the first of equal maxima
    // and lets every NaN take over (so the last NaN's index is kept). Element (k, c) of the rows
    // inside is at base + k * width + c (flat) or base + k * K + c (slot).
    const auto base = kSlots ? S::ramp(skipped * K, 0) : S::ramp(row_start + col0, kStride);
    const int64_t row_step = kSlots ? K : width;
    V best = S::set1(-std::numeric_limits<T>::infinity());
    auto at = base;
    if constexpr (kBorder) {
      // The first element inside: column max(col0 + lane * kStride, 0).
      if constexpr (kSlots) {
        at = S::add(S::max_index(S::ramp(-col0, -kStride), S::ramp(0, 0)), skipped * K);
      } else {
        at = S::max_index(base, S::ramp(row_start, 0));
      }
    }
    for (int k = 0; k < K && k < rows; ++k) {
      V cols[3];
      if constexpr (kStride == 1) {
        for (int c = 0; c < K; ++c) cols[c] = load(k, c);
      } else {
        S::deinterleave(load(k, 0), load(k, L), cols[0], cols[1]);
        if constexpr (K == 3) {
          V unused;
          S::deinterleave(load(k, 1), load(k, 1 + L), unused, cols[2]);
        }
      }
      for (int c = 0; c < K; ++c) {
        if (!kBorder && k == 0 && c == 0) {
          best = cols[0];
          continue;
        }
        const V take = S::greater_or_nan(cols[c], best);
        best = S::blend(take, best, cols[c]);
        at = S::blend(take, at, S::add(base, k * row_step + c));
      }
    }
    S::store(out, best);
    if constexpr (kSlots) {
      S::store_slots(idx, at);
    } else {
      S::store_index(idx, at);
    }
  }
}

template <typename T, int K, int kStride>
inline void avg_block(const T* const* row, typename Simd<T>::V divisor, T* out) {
  using S = Simd<T>;
  constexpr int L = S::kLanes;
  using V = typename S::V;
  if constexpr (kStride == 1) {
    // torch's order: row by row, left to right.
    V sum = S::load(row[0]);
    for (int k = 0; k < K; ++k) {
      for (int c = k == 0 ? 1 : 0; c < K; ++c) sum = S::add(sum, S::load(row[k] + c));
    }
    S::store(out, S::div(sum, divisor));
    return;
  }
  V a = S::load(row[0]), b = S::load(row[0] + L);
  for (int k = 1; k < K; ++k) {
    a = S::add(a, S::load(row[k]));
    b = S::add(b, S::load(row[k] + L));
  }
  V even, odd;
  S::deinterleave(a, b, even, odd);
  V sum = S::add(even, odd);
  if constexpr (K == 3) {
    V c = S::load(row[0] + 1), d = S::load(row[0] + 1 + L);
    for (int k = 1; k < K; ++k) {
      c = S::add(c, S::load(row[k] + 1));
      d = S::add(d, S::load(row[k] + 1 + L));
    }
    V unused, third;
    S::deinterleave(c, d, unused, third);
    sum = S::add(sum, third);
  }
  S::store(out, S::div(sum, divisor));
}

// Forward over output rows: SIMD blocks on interior rows and columns, portable code elsewhere.
// element(plane, oh, ow, r) computes one output portably; block(rows, n, skipped, row_start, col0,
// ow, r) kLanes of them (max_block's arguments). kClipRows (max pool): the blocks also take
// windows clipped by the input's edges: by the top or bottom (fewer rows), and, through
// edge_block, by the left or right (the first and last kLanes outputs of a row, overlapping the
// interior blocks, instead of the portable code).
template <typename T, int K, int kStride, bool kClipRows, typename Element, typename Block, typename EdgeBlock>
void forward_rows(const Pool2dShape& s, const Pool2dParams& p, const T* input, int64_t bytes_per_row,
                  const Element& element, const Block& block, const EdgeBlock& edge_block) {
  constexpr int L = Simd<T>::kLanes;
  const Interior rows = interior(s.height, s.out_height, K, p.pad_h, kStride);
  const Interior cols = interior(s.width, s.out_width, K, p.pad_w, kStride);
  const bool wide = cols.last - cols.first >= L;
  const bool edges = kClipRows && cols.first <= L && s.out_width - cols.last <= L;
  parallel_rows(s.planes * s.out_height, bytes_per_row, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / s.out_height, oh = r % s.out_height;
      const T* in = input + plane * s.height * s.width;
      const bool inside = oh >= rows.first && oh < rows.last;
      if (!wide || (!kClipRows && !inside)) {
        for (int64_t ow = 0; ow < s.out_width; ++ow) element(in, oh, ow, r);
        continue;
      }
      // The window's rows inside the input: [ih, ih + n).
      int64_t ih = oh * kStride - p.pad_h, n = K;
      int skipped = 0;
      if (!inside) {
        const int64_t top = ih < 0 ? 0 : ih, bottom = ih + K < s.height ? ih + K : s.height;
        skipped = static_cast<int>(top - ih);
        ih = top, n = bottom - top;
      }
      const T* window_rows[K] = {};
      for (int k = 0; k < n; ++k) window_rows[k] = in + (ih + k) * s.width - p.pad_w;
      auto edge = [&](int64_t ow) {
        const T* at[K] = {};
        for (int k = 0; k < n; ++k) at[k] = window_rows[k] + kStride * ow;
        edge_block(at, static_cast<int>(n), skipped, ih * s.width, kStride * ow - p.pad_w, ow, r);
      };
      if (edges && cols.first > 0) {
        edge(0);
      } else {
        for (int64_t ow = 0; ow < cols.first; ++ow) element(in, oh, ow, r);
      }
      auto blocks = [&](auto rows_in_window) {  // K as a constant for whole windows: unrolled loops
        for_each_block<L>(cols, [&](int64_t ow) {
          const T* at[K] = {};
          for (int k = 0; k < K && k < rows_in_window; ++k) at[k] = window_rows[k] + kStride * ow;
          block(at, static_cast<int>(rows_in_window), skipped, ih * s.width, kStride * ow - p.pad_w, ow, r);
        });
      };
      if (inside) {
        blocks(std::integral_constant<int, K>());
      } else {
        blocks(static_cast<int>(n));
      }
      if (edges && cols.last < s.out_width) {
        edge(s.out_width - L);
      } else {
        for (int64_t ow = cols.last; ow < s.out_width; ++ow) element(in, oh, ow, r);
      }
    }
  });
}

// Index: void (no indices), int64_t (flat positions) or uint8_t (window slots).
template <typename T, int K, int kStride, typename Index>
void max_forward_fast(const Pool2dShape& s, const Pool2dParams& p, const T* input, T* output, Index* indices) {
  // The portable code takes int64_t* or uint8_t* (a null int64_t* for no indices).
  using ElementIndex = std::conditional_t<std::is_void_v<Index>, int64_t, Index>;
  const int64_t index_bytes = std::is_void_v<Index> ? 0 : int64_t(sizeof(ElementIndex));
  const int64_t bytes = (kStride * s.width + s.out_width) * int64_t(sizeof(T)) + s.out_width * index_bytes;
  auto index_at = [&](int64_t o) {
    if constexpr (std::is_void_v<Index>) {
      return static_cast<ElementIndex*>(nullptr);
    } else {
      return indices + o;
    }
  };
  forward_rows<T, K, kStride, true>(
      s, p, input, bytes,
      [&](const T* in, int64_t oh, int64_t ow, int64_t r) {
        const int64_t o = r * s.out_width + ow;
        max_element(in, s, p, oh, ow, output + o, index_at(o));
      },
      [&](const T* const* at, int rows, int skipped, int64_t row_start, int64_t col0, int64_t ow, int64_t r) {
        const int64_t o = r * s.out_width + ow;
        max_block<T, K, kStride, Index>(at, rows, skipped, s.width, row_start, col0, output + o, index_at(o));
      },
      [&](const T* const* at, int rows, int skipped, int64_t row_start, int64_t col0, int64_t ow, int64_t r) {
        const int64_t o = r * s.out_width + ow;
        max_block<T, K, kStride, Index, true>(at, rows, skipped, s.width, row_start, col0, output + o, index_at(o));
      });
}

template <typename T, int K, int kStride>
void avg_forward_fast(const Pool2dShape& s, const Pool2dParams& p, const T* input, T* output) {
  using S = Simd<T>;
  // Interior windows are whole: the divisor is kernel area unless overridden.
  const auto divisor = S::set1(T(p.divisor_override != 0 ? p.divisor_override : K * K));
  forward_rows<T, K, kStride, false>(
      s, p, input, (kStride * s.width + s.out_width) * int64_t(sizeof(T)),
      [&](const T* in, int64_t oh, int64_t ow, int64_t r) { output[r * s.out_width + ow] = avg_element(in, s, p, oh, ow); },
      [&](const T* const* at, int, int, int64_t, int64_t, int64_t ow, int64_t r) {
        avg_block<T, K, kStride>(at, divisor, output + r * s.out_width + ow);
      },
      [](const T* const*, int, int, int64_t, int64_t, int64_t, int64_t) {});
}

// Backward of a 2x2, stride-2 pool (windows never overlap): each thread writes whole input rows
// of grad_input; interior windows are stored straight from registers, border windows are
// scattered portably onto zeros. block(gi_row0, gi_row1, oh, ow) writes kLanes windows' 2x2.
// Only what the blocks do not store is zeroed first: zeroing whole rows would be a second pass
// over grad_input (its first touch, a read of each line from memory) before the stores.
template <typename T, typename Border, typename Block>
void backward_2x2(const Pool2dShape& s, const Pool2dParams& p, T* grad_in, const Border& border, const Block& block) {
  constexpr int L = Simd<T>::kLanes;
  const Interior rows = interior(s.height, s.out_height, 2, p.pad_h, 2);
  const Interior cols = interior(s.width, s.out_width, 2, p.pad_w, 2);
  const bool wide = cols.last - cols.first >= L;
  parallel_rows(s.planes * s.height, s.width * int64_t(sizeof(T)) * 2, [&](int64_t begin, int64_t end) {
    for_each_plane_piece(s, begin, end, [&](int64_t plane, int64_t h0, int64_t h1) {
      T* gi = grad_in + plane * s.height * s.width;
      // The SIMD window rows [first, last): inside the input, both input rows in [h0, h1).
      // Per-row bookkeeping is kept out of the loops: a 28-wide row is only two blocks.
      int64_t first = (h0 + p.pad_h + 1) / 2, last = (h1 + p.pad_h) / 2;
      first = first > rows.first ? first : rows.first;
      last = last < rows.last ? last : rows.last;
      if (!wide || last < first) last = first;
      // Their input rows [top, bottom) are zeroed only outside the blocks' columns [left, right).
      const int64_t top = first < last ? 2 * first - p.pad_h : h0, bottom = first < last ? 2 * last - p.pad_h : h0;
      const int64_t left = 2 * cols.first - p.pad_w, right = 2 * cols.last - p.pad_w;
      std::memset(gi + h0 * s.width, 0, sizeof(T) * (top - h0) * s.width);
      if (left > 0 || right < s.width) {
        for (int64_t ih = top; ih < bottom; ++ih) {
          T* row = gi + ih * s.width;
          std::memset(row, 0, sizeof(T) * left);
          std::memset(row + right, 0, sizeof(T) * (s.width - right));
        }
      }
      std::memset(gi + bottom * s.width, 0, sizeof(T) * (h1 - bottom) * s.width);
      const RowSpan span = output_rows_touching(h0, h1, 2, p.pad_h, 2, 1, s.out_height);
      for (int64_t oh = span.first; oh < span.last; ++oh) {
        if (oh < first || oh >= last) {
          border(plane, oh, 0, s.out_width, h0, h1);
          continue;
        }
        const int64_t ih = oh * 2 - p.pad_h;
        if (cols.first > 0) border(plane, oh, 0, cols.first, h0, h1);
        for_each_block<L>(cols, [&](int64_t ow) {
          T* at = gi + ih * s.width + 2 * ow - p.pad_w;
          block(plane, oh, ow, at, at + s.width, ih * s.width + 2 * ow - p.pad_w);
        });
        if (cols.last < s.out_width) border(plane, oh, cols.last, s.out_width, h0, h1);
      }
    });
  });
}

// Index: int64_t (flat positions) or uint8_t (window slots).
template <typename T, typename Index>
void max_backward_fast(const Pool2dShape& s, const Pool2dParams& p, const T* grad_out, const Index* indices,
                       T* grad_in) {
  using S = Simd<T>;
  const int64_t out_plane = s.out_height * s.out_width, in_plane = s.height * s.width;
  const ArgmaxPosition<Index> position(s, p);
  backward_2x2<T>(
      s, p, grad_in,
      [&](int64_t plane, int64_t oh, int64_t ow0, int64_t ow1, int64_t h0, int64_t h1) {
        const int64_t o = plane * out_plane + oh * s.out_width;
        max_scatter(grad_out + o, indices + o, grad_in + plane * in_plane, position, oh, h0, h1, ow0, ow1);
      },
      [&](int64_t plane, int64_t oh, int64_t ow, T* row0, T* row1, int64_t position) {
        const int64_t o = plane * out_plane + oh * s.out_width + ow;
        // In input order: input j of the 2 kLanes in a row takes window j / 2's gradient where
        // that window's index is j's: its position, or its slot (0, 1 in the window's top row,
        // 2, 3 in the bottom one).
        typename S::V g0, g1;
        typename S::I at0, at1;
        S::duplicate(S::load(grad_out + o), g0, g1);
        constexpr int L = S::kLanes;
        if constexpr (std::is_same_v<Index, uint8_t>) {
          S::duplicate_slots(indices + o, at0, at1);
          const auto top = S::alternate(0, 1), bottom = S::alternate(2, 3);
          S::store(row0, S::keep(S::equal(at0, top), g0));
          S::store(row0 + L, S::keep(S::equal(at1, top), g1));
          S::store(row1, S::keep(S::equal(at0, bottom), g0));
          S::store(row1 + L, S::keep(S::equal(at1, bottom), g1));
        } else {
          S::duplicate_index(indices + o, at0, at1);
          const auto here0 = S::ramp(position, 1), here1 = S::add(here0, s.width);
          S::store(row0, S::keep(S::equal(at0, here0), g0));
          S::store(row0 + L, S::keep(S::equal(at1, S::add(here0, L)), g1));
          S::store(row1, S::keep(S::equal(at0, here1), g0));
          S::store(row1 + L, S::keep(S::equal(at1, S::add(here1, L)), g1));
        }
      });
}

template <typename T>
void avg_backward_fast(const Pool2dShape& s, const Pool2dParams& p, const T* grad_out, T* grad_in) {
  using S = Simd<T>;
  const int64_t out_plane = s.out_height * s.out_width, in_plane = s.height * s.width;
  const auto divisor = S::set1(T(p.divisor_override != 0 ? p.divisor_override : 4));
  backward_2x2<T>(
      s, p, grad_in,
      [&](int64_t plane, int64_t oh, int64_t ow0, int64_t ow1, int64_t h0, int64_t h1) {
        const T* go = grad_out + plane * out_plane + oh * s.out_width;
        for (int64_t ow = ow0; ow < ow1; ++ow) avg_scatter(go[ow], grad_in + plane * in_plane, s, p, oh, ow, h0, h1);
      },
      [&](int64_t plane, int64_t oh, int64_t ow, T* row0, T* row1, int64_t) {
        const auto g = S::div(S::load(grad_out + plane * out_plane + oh * s.out_width + ow), divisor);
        S::interleave_store(row0, g, g);
        S::interleave_store(row1, g, g);
      });
}

// Backward of a 3x3, stride-2 average pool as a gather, so each thread writes whole rows of
// grad_input once with no scatter: with q = iw + pad_w, input column iw lies in the windows of
// ow = q / 2 and, for even q, ow = q / 2 - 1 (rows likewise). Per output row the scaled
// gradients g' = g / divisor (torch's per-output divisor) are expanded to input columns once,
// X[2m] = g'[m] + g'[m - 1], X[2m + 1] = g'[m] (g' = 0 outside [0, OW)); an input row is then one
// expanded row, or the sum of two. Only input widths up to kAvgGatherWidth (stack buffers).
constexpr int64_t kAvgGatherWidth = 1024;

template <typename T>
void avg_backward_3x3s2(const Pool2dShape& s, const Pool2dParams& p, const T* grad_out, T* grad_in) {
  using S = Simd<T>;
  constexpr int L = S::kLanes;
  constexpr int64_t kHalf = kAvgGatherWidth / 2 + 4 * L;
  const int64_t out_plane = s.out_height * s.out_width, in_plane = s.height * s.width;
  // Expanded positions q in [0, 2M) cover q = iw + pad_w for every input column.
  const int64_t m_count = (s.width + p.pad_w + 1) / 2;
  const int64_t m_blocks = (m_count + L - 1) / L * L;
  parallel_rows(s.planes * s.height, s.width * int64_t(sizeof(T)) * 2, [&](int64_t begin, int64_t end) {
    alignas(32) T column_divisor[kHalf];
    alignas(32) T scaled[kHalf + L];  // scaled[1 + m] = g'[m], zero elsewhere
    alignas(32) T expanded[2][2 * kHalf];
    for (int64_t ow = 0; ow < s.out_width; ++ow) {
      const AvgWindow w = avg_window(ow, 3, p.pad_w, 2, s.width);
      column_divisor[ow] = T(p.count_include_pad ? w.padded : w.last - w.first);
    }
    for (int64_t i = 0; i < kHalf + L; ++i) scaled[i] = T(0);
    for_each_plane_piece(s, begin, end, [&](int64_t plane, int64_t h0, int64_t h1) {
      const T* go = grad_out + plane * out_plane;
      T* gi = grad_in + plane * in_plane;
      int64_t held[2] = {-1, -1};  // the output row expanded in each slot
      auto expand = [&](int64_t oh) -> const T* {
        T* x = expanded[oh & 1];
        if (held[oh & 1] == oh) return x + p.pad_w;
        held[oh & 1] = oh;
        const T* g = go + oh * s.out_width;
        if (p.divisor_override != 0) {
          const T divisor = T(p.divisor_override);
          for (int64_t ow = 0; ow < s.out_width; ++ow) scaled[1 + ow] = g[ow] / divisor;
        } else {
          const AvgWindow h = avg_window(oh, 3, p.pad_h, 2, s.height);
          const T row_divisor = T(p.count_include_pad ? h.padded : h.last - h.first);
          for (int64_t ow = 0; ow < s.out_width; ++ow) scaled[1 + ow] = g[ow] / (row_divisor * column_divisor[ow]);
        }
        for (int64_t m = 0; m < m_blocks; m += L) {
          const auto here = S::load(scaled + 1 + m);
          S::interleave_store(x + 2 * m, S::add(here, S::load(scaled + m)), here);
        }
        return x + p.pad_w;
      };
      for (int64_t ih = h0; ih < h1; ++ih) {
        const int64_t q = ih + p.pad_h, m = q / 2;
        const bool first = m < s.out_height, second = q % 2 == 0 && m >= 1 && m - 1 < s.out_height;
        T* row = gi + ih * s.width;
        if (first && second) {
          const T* b = expand(m - 1);
          const T* a = expand(m);
          for (int64_t iw = 0; iw < s.width; ++iw) row[iw] = b[iw] + a[iw];
        } else if (first || second) {
          const T* a = expand(first ? m : m - 1);
          std::memcpy(row, a, sizeof(T) * s.width);
        } else {
          std::memset(row, 0, sizeof(T) * s.width);
        }
      }
    });
  });
}

template <typename T, int K, int kStride>
void max_forward_indexed(const Pool2dShape& s, const Pool2dParams& p, const T* in, T* out, int64_t* indices,
                         uint8_t* slots) {
  if (indices) return max_forward_fast<T, K, kStride, int64_t>(s, p, in, out, indices);
  if (slots) return max_forward_fast<T, K, kStride, uint8_t>(s, p, in, out, slots);
  max_forward_fast<T, K, kStride, void>(s, p, in, out, nullptr);
}

template <typename T>
void max_forward_typed(const Pool2dShape& s, const Pool2dParams& p, const void* input, void* output, int64_t* indices,
                       uint8_t* slots) {
  const T* in = static_cast<const T*>(input);
  T* out = static_cast<T*>(output);
  if (p.stride_h == 1) {
    if (p.kernel_h == 2) return max_forward_indexed<T, 2, 1>(s, p, in, out, indices, slots);
    return max_forward_indexed<T, 3, 1>(s, p, in, out, indices, slots);
  }
  if (p.kernel_h == 2) return max_forward_indexed<T, 2, 2>(s, p, in, out, indices, slots);
  return max_forward_indexed<T, 3, 2>(s, p, in, out, indices, slots);
}

template <typename T>
void max_backward_typed(const Pool2dShape& s, const Pool2dParams& p, const void* grad_output, const int64_t* indices,
                        const uint8_t* slots, void* grad_input) {
  const T* gy = static_cast<const T*>(grad_output);
  T* gx = static_cast<T*>(grad_input);
  if (slots) return max_backward_fast<T, uint8_t>(s, p, gy, slots, gx);
  max_backward_fast<T, int64_t>(s, p, gy, indices, gx);
}

template <typename T>
void avg_forward_typed(const Pool2dShape& s, const Pool2dParams& p, const void* input, void* output) {
  const T* in = static_cast<const T*>(input);
  T* out = static_cast<T*>(output);
  if (p.stride_h == 1) {
    if (p.kernel_h == 2) return avg_forward_fast<T, 2, 1>(s, p, in, out);
    return avg_forward_fast<T, 3, 1>(s, p, in, out);
  }
  if (p.kernel_h == 2) return avg_forward_fast<T, 2, 2>(s, p, in, out);
  return avg_forward_fast<T, 3, 2>(s, p, in, out);
}

}  // namespace

// The caller has checked the arguments and that the window is 2x2 or 3x3 with stride 1 or 2 (the
// same in both dimensions) and no dilation; backward takes the 2x2, stride-2 window only (and
// the 3x3 stride-2 window, input width <= kAvgGatherWidth, for the average).
void max_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output,
                        int64_t* indices, uint8_t* slots) {
  if (dtype == DType::Float64) return max_forward_typed<double>(s, p, input, output, indices, slots);
  return max_forward_typed<float>(s, p, input, output, indices, slots);
}

void avg_pool2d_forward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* input, void* output) {
  if (dtype == DType::Float64) return avg_forward_typed<double>(s, p, input, output);
  return avg_forward_typed<float>(s, p, input, output);
}

void max_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,
                         const int64_t* indices, const uint8_t* slots, void* grad_input) {
  if (dtype == DType::Float64) return max_backward_typed<double>(s, p, grad_output, indices, slots, grad_input);
  max_backward_typed<float>(s, p, grad_output, indices, slots, grad_input);
}

void avg_pool2d_backward(const Pool2dShape& s, const Pool2dParams& p, DType dtype, const void* grad_output,
                         void* grad_input) {
  if (p.kernel_h == 3) {
    if (dtype == DType::Float64) {
      return avg_backward_3x3s2<double>(s, p, static_cast<const double*>(grad_output), static_cast<double*>(grad_input));
    }
    return avg_backward_3x3s2<float>(s, p, static_cast<const float*>(grad_output), static_cast<float*>(grad_input));
  }
  if (dtype == DType::Float64) {
    return avg_backward_fast<double>(s, p, static_cast<const double*>(grad_output), static_cast<double*>(grad_input));
  }
  avg_backward_fast<float>(s, p, static_cast<const float*>(grad_output), static_cast<float*>(grad_input));
}

}  // namespace fastrnn::cpu::isa_avx2
