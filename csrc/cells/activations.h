#pragma once
// Scalar activations shared by the CPU and CUDA kernels. NaN and Inf propagate as in torch.
//
// On the device these are the CUDA math library's functions. On the host they are written
// here, branch-free, so that a loop over hidden units vectorises (`#pragma omp simd`) in
// each instruction-set build; libm's expf/tanhf would stay scalar calls. Accuracy: a few
// units in the last place, enough for float64 results to agree with PyTorch to ~1e-15.
//
// Everything in csrc/cells sits in an unnamed namespace on purpose: each translation unit
// (one per instruction set) gets its own private copy, so the linker can never hand an
// AVX-512 build of a cell to the portable code path.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/macros.h"

namespace fastrnn::cells {
namespace {

#if !defined(__CUDA_ARCH__)

template <typename T>
struct ExpTraits;

template <>
struct ExpTraits<float> {
  using Int = int32_t;
  using UInt = uint32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr Int kBias = 127;
  static constexpr Int kHalfOffset = 256;       // makes n non-negative before halving
  static constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: x + magic rounds x to an integer
  static constexpr float kLo = -104.0f, kHi = 89.0f;  // beyond: the result is 0 or inf anyway
  static constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
  static constexpr int kTerms = 7;              // Taylor degree: |r|^8/8! < 1e-8 for |r| <= ln2/2
};

template <>
struct ExpTraits<double> {
  using Int = int64_t;
  using UInt = uint64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr Int kBias = 1023;
  static constexpr Int kHalfOffset = 2048;
  static constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLo = -746.0, kHi = 710.0;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  static constexpr int kTerms = 13;  // |r|^14/14! < 1e-17
};

template <typename To, typename From>
FASTRNN_HOST_DEVICE To bit_cast_(From from) {
  To to;
  memcpy(&to, &from, sizeof(to));
  return to;
}

// Writes e^x = 2^n (1 + q) with |q| <= ~0.42, as the two powers of two s1 = 2^n1 and
// s2 = 2^n2 (n = n1 + n2, so n may exceed the exponent range of one) and q. Callers multiply by
// s2 last: near the top of the range 2^n alone overflows although 2^n (1 + q) does not
// (float: e^88.7 < FLT_MAX, but n = 128).
template <typename T>
FASTRNN_HOST_DEVICE void exp_parts(T x, T& s1, T& s2, T& q) {
  using E = ExpTraits<T>;
  using Int = typename E::Int;
  using UInt = typename E::UInt;
  // Clamp (a NaN passes: both comparisons are false) so the integer arithmetic stays in range.
  // The bounds are chosen so that the clamped value itself gives the limit: at kLo the result
  // rounds to exactly 0, at kHi to inf. So nothing below tests x again. That matters: a second
  // test of x lets GCC thread jumps through the clamp, and the branches it makes keep the
  // `omp simd` loops over hidden units from vectorising.
  const T xc = x < E::kLo ? E::kLo : (x > E::kHi ? E::kHi : x);
  const T t = xc * T(1.4426950408889634) + E::kMagic;  // magic + round(x / ln2)
  const T n_real = t - E::kMagic;
  const Int n = bit_cast_<Int>(t) - bit_cast_<Int>(E::kMagic);
  const T r = (xc - n_real * E::kLn2Hi) - n_real * E::kLn2Lo;  // |r| <= ln2/2, exact reduction
  // q = e^r - 1 = r (1 + r/2 (1 + r/3 (1 + ... (1 + r/N)))), accurate even when r is tiny.
  T poly = T(1);
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 16
#endif
  for (int k = E::kTerms; k >= 2; --k) poly = T(1) + poly * r * (T(1) / T(k));
  q = r * poly;
  // n1 = floor(n / 2), n2 = n - n1: each power within the exponent range.
  const Int n1 = static_cast<Int>(static_cast<UInt>(n + E::kHalfOffset) >> 1) - E::kHalfOffset / 2;
  const Int n2 = n - n1;
  s1 = bit_cast_<T>(static_cast<UInt>(n1 + E::kBias) << E::kMantissaBits);
  s2 = bit_cast_<T>(static_cast<UInt>(n2 + E::kBias) << E::kMantissaBits);
}

// 0 at x <= kLo, inf at x >= kHi (q > 0 there), NaN for NaN (tests/test_activations.py).
template <typename T>
FASTRNN_HOST_DEVICE T exponential(T x) {
  T s1, s2, q;
  exp_parts(x, s1, s2, q);
  return (s1 + s1 * q) * s2;
}

// tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)), sign restored; expm1 = 2^n q + (2^n - 1)
// keeps full relative accuracy near 0 (the argument is <= 0, so 2^n <= 1 never overflows).
template <typename T>
FASTRNN_HOST_DEVICE T tanh_(T x) {
  T s1, s2, q;
  exp_parts(T(-2) * fabs(x), s1, s2, q);
  const T scale = s1 * s2;
  const T em1 = scale * q + (scale - T(1));
  return copysign(-em1 / (T(2) + em1), x);
}

#else  // device code: the CUDA math library

FASTRNN_HOST_DEVICE float exponential(float x) { return ::expf(x); }
FASTRNN_HOST_DEVICE double exponential(double x) { return ::exp(x); }
FASTRNN_HOST_DEVICE float tanh_(float x) { return ::tanhf(x); }
FASTRNN_HOST_DEVICE double tanh_(double x) { return ::tanh(x); }

#endif

// 1 / (1 + e^-x): exact 0 and 1 at -inf and +inf, NaN stays NaN.
template <typename T>
FASTRNN_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + exponential(-x));
}

// Written so that NaN passes through (NaN < 0 is false), as torch.relu does.
template <typename T>
FASTRNN_HOST_DEVICE T relu(T x) {
  return x < T(0) ? T(0) : x;
}

}  // namespace
}  // namespace fastrnn::cells
