// Host check of the CUDA convolutions' index arithmetic (csrc/cuda/conv_problems.h), which
// needs no GPU: each implicit GEMM is run naively through the problem's own a(), b() and
// store() and compared with a direct float64 convolution. Built and run by
// tests/test_conv_cuda.py::test_gather_index_math_on_host; exits non-zero on a mismatch.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/conv_problems.h"

using namespace fastrnn::cuda::conv;

namespace {

struct Case {
  int N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups;
};

std::mt19937 rng(7);
std::vector<double> random_vector(size_t n) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(n);
  for (double& e : v) e = u(rng);
  return v;
}

Shape make(const Case& c) {
  Shape s{};
  s.N = c.N, s.C = c.C, s.H = c.H, s.W = c.W, s.K = c.K, s.R = c.R, s.S = c.S;
  s.sh = c.sh, s.sw = c.sw, s.ph = c.ph, s.pw = c.pw, s.dh = c.dh, s.dw = c.dw, s.groups = c.groups;
  s.P = (c.H + 2 * c.ph - c.dh * (c.R - 1) - 1) / c.sh + 1;
  s.Q = (c.W + 2 * c.pw - c.dw * (c.S - 1) - 1) / c.sw + 1;
  s.Cg = c.C / c.groups, s.Kg = c.K / c.groups;
  s.RS = s.R * s.S, s.PQ = s.P * s.Q, s.HW = s.H * s.W, s.CgRS = s.Cg * s.RS;
  s.div_S = FastDiv(s.S), s.div_RS = FastDiv(s.RS), s.div_Q = FastDiv(s.Q), s.div_PQ = FastDiv(s.PQ);
  s.div_W = FastDiv(s.W), s.div_HW = FastDiv(s.HW), s.div_sh = FastDiv(s.sh), s.div_sw = FastDiv(s.sw);
  return s;
}

int failures = 0;
void expect_close(const char* what, const Case& c, const std::vector<double>& a, const std::vector<double>& b) {
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) err = std::fmax(err, std::fabs(a[i] - b[i]) + (std::isnan(a[i]) ? 1 : 0));
  if (err > 1e-12 || a.size() != b.size()) {
    ++failures;
    std::printf("%s mismatch %.3g: N%d C%d H%d W%d K%d R%d S%d stride %d,%d pad %d,%d dil %d,%d groups %d\n", what, err,
                c.N, c.C, c.H, c.W, c.K, c.R, c.S, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.groups);
  }
}

// Direct convolution: y (N, K, P, Q) from x and weight.
std::vector<double> direct(const Shape& s, const std::vector<double>& x, const std::vector<double>& w) {
  std::vector<double> y(size_t(s.N) * s.K * s.PQ, 0.0);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < s.P; ++p)
        for (int q = 0; q < s.Q; ++q) {
          const int g = k / s.Kg;
          double acc = 0;
          for (int c = 0; c < s.Cg; ++c)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                const int h = p * s.sh - s.ph + r * s.dh, ww = q * s.sw - s.pw + t * s.dw;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                acc += x[((size_t(n) * s.C + g * s.Cg + c) * s.H + h) * s.W + ww] * w[((size_t(k) * s.Cg + c) * s.R + r) * s.S + t];
              }
          y[((size_t(n) * s.K + k) * s.P + p) * s.Q + q] = acc;
        }
  return y;
}

template <class Problem>
void run_gemm(const Problem& prob, int splits = 1) {
  const int per = (prob.gemm_k + splits - 1) / splits;
  for (int g = 0; g < prob.s.groups; ++g)
    for (int sp = 0; sp < splits; ++sp)
      for (int m = 0; m < prob.gemm_m; ++m)
        for (int n = 0; n < prob.gemm_n; ++n) {
          double acc = 0;
          for (int k = sp * per; k < std::min(prob.gemm_k, (sp + 1) * per); ++k) acc += prob.a(g, m, k) * prob.b(g, k, n);
          prob.store(g, sp, m, n, acc);
        }
}

void check(const Case& c) {
  const Shape s = make(c);
  const auto x = random_vector(size_t(s.N) * s.C * s.HW);
  const auto w = random_vector(size_t(s.K) * s.CgRS);
  const auto dy = random_vector(size_t(s.N) * s.K * s.PQ);
  const auto y_ref = direct(s, x, w);

  ForwardProblem<double, false> fwd{};
  fwd.s = s, fwd.gemm_m = s.N * s.PQ, fwd.gemm_n = s.Kg, fwd.gemm_k = s.CgRS;
  std::vector<double> y(y_ref.size(), NAN);
  fwd.x = x.data(), fwd.weight = w.data(), fwd.y = y.data();
  run_gemm(fwd);
  expect_close("forward", c, y, y_ref);

  // Gradients by linearity: <dy, conv(x, w)> = <dx, x> = <dw, w>, checked element by element
  // against the direct definition (d/dx and d/dw of sum(dy * y)).
  std::vector<double> dx_ref(x.size(), 0.0), dw_ref(w.size(), 0.0);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < s.P; ++p)
        for (int q = 0; q < s.Q; ++q) {
          const int g = k / s.Kg;
          const double d = dy[((size_t(n) * s.K + k) * s.P + p) * s.Q + q];
          for (int cc = 0; cc < s.Cg; ++cc)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                const int h = p * s.sh - s.ph + r * s.dh, ww = q * s.sw - s.pw + t * s.dw;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                const size_t xi = ((size_t(n) * s.C + g * s.Cg + cc) * s.H + h) * s.W + ww;
                const size_t wi = ((size_t(k) * s.Cg + cc) * s.R + r) * s.S + t;
                dx_ref[xi] += d * w[wi];
                dw_ref[wi] += d * x[xi];
              }
        }

  BackwardInputProblem<double, PlainGrad<double>> bi{};
  bi.s = s, bi.gemm_m = s.N * s.HW, bi.gemm_n = s.Cg, bi.gemm_k = s.Kg * s.RS;
  std::vector<double> dx(x.size(), NAN);
  bi.grad.dy = dy.data(), bi.weight = w.data(), bi.dx = dx.data();
  run_gemm(bi);
  expect_close("backward input", c, dx, dx_ref);

  const int splits = 3;
  BackwardWeightProblem<double, PlainGrad<double>> bw{};
  bw.s = s, bw.gemm_m = s.Kg, bw.gemm_n = s.CgRS, bw.gemm_k = s.N * s.PQ;
  std::vector<double> partial(size_t(splits) * w.size(), NAN);
  bw.grad.dy = dy.data(), bw.x = x.data(), bw.partial = partial.data();
  run_gemm(bw, splits);
  std::vector<double> dw(w.size(), 0.0);
  for (int sp = 0; sp < splits; ++sp)
    for (size_t i = 0; i < w.size(); ++i) dw[i] += partial[sp * w.size() + i];
  expect_close("backward weight", c, dw, dw_ref);

  // Pooled forward, as the tile policies hold rows: a thread's window is rows
  // m_first + j * stride, m_first = chunk * 4 * stride + i (i < stride).
  for (int log_stride : {3, 4}) {
    const int stride = 1 << log_stride;
    ForwardProblem<double, true> pf{};
    pf.s = s, pf.gemm_n = s.Kg, pf.gemm_k = s.CgRS;
    pf.Po = s.P / 2, pf.Qo = s.Q / 2, pf.windows = s.N * pf.Po * pf.Qo, pf.log_stride = log_stride;
    pf.div_PoQo = FastDiv(std::max(1, pf.Po * pf.Qo)), pf.div_Qo = FastDiv(std::max(1, pf.Qo));
    pf.gemm_m = (pf.windows + stride - 1) / stride * stride * 4;
    const size_t pooled = size_t(s.N) * s.K * pf.Po * pf.Qo;
    std::vector<double> z(pooled, NAN);
    std::vector<uint8_t> am(pooled, 255);
    pf.x = x.data(), pf.weight = w.data(), pf.y = z.data(), pf.argmax = am.data();
    for (int g = 0; g < s.groups; ++g)
      for (int m_first = 0; m_first < pf.gemm_m; ++m_first) {
        if ((m_first >> log_stride) & 3) continue;  // not the first row of a window
        for (int n = 0; n < pf.gemm_n; ++n) {
          double v[4];
          for (int j = 0; j < 4; ++j) {
            v[j] = 0;
            for (int k = 0; k < pf.gemm_k; ++k) v[j] += pf.a(g, m_first + j * stride, k) * pf.b(g, k, n);
          }
          pf.store_window(g, m_first, n, v);
        }
      }
    std::vector<double> z_ref(pooled);
    std::vector<double> am_ref(pooled), am_got(pooled);
    for (int n = 0; n < s.N; ++n)
      for (int k = 0; k < s.K; ++k)
        for (int po = 0; po < pf.Po; ++po)
          for (int qo = 0; qo < pf.Qo; ++qo) {
            double best = -1;
            int index = 0;
            for (int j = 0; j < 4; ++j) {
              double r = y_ref[((size_t(n) * s.K + k) * s.P + 2 * po + j / 2) * s.Q + 2 * qo + j % 2];
              r = r < 0 ? 0 : r;
              if (r > best) best = r, index = j;
            }
            const size_t i = ((size_t(n) * s.K + k) * pf.Po + po) * pf.Qo + qo;
            z_ref[i] = best, am_ref[i] = index, am_got[i] = am[i];
          }
    expect_close("pooled forward", c, z, z_ref);
    expect_close("pooled argmax", c, am_got, am_ref);

    // Pooled backward: the scattered gradient equals PooledGrad::at everywhere.
    const auto dz = random_vector(pooled);
    PooledGrad<double> pg{dz.data(), z.data(), am.data(), pf.Po, pf.Qo};
    std::vector<double> full(dy.size(), 0.0), full_ref(dy.size(), 0.0);
    for (int n = 0; n < s.N; ++n)
      for (int k = 0; k < s.K; ++k)
        for (int p = 0; p < s.P; ++p)
          for (int q = 0; q < s.Q; ++q) full[((size_t(n) * s.K + k) * s.P + p) * s.Q + q] = pg.at(s, n, k, p, q);
    for (size_t i = 0; i < pooled; ++i) {
      const size_t nk = i / (size_t(pf.Po) * pf.Qo), rem = i % (size_t(pf.Po) * pf.Qo);
      const int po = int(rem / pf.Qo), qo = int(rem % pf.Qo), j = am[i];
      if (z[i] > 0) full_ref[(nk * s.P + 2 * po + j / 2) * s.Q + 2 * qo + j % 2] = dz[i];
    }
    expect_close("pooled gradient", c, full, full_ref);
  }
}

}  // namespace

int main() {
  // FastDiv against the hardware division over a spread of divisors and dividends.
  std::uniform_int_distribution<int> big(0, (1 << 30) + 12345);
  for (int d = 1; d < 3000; ++d) {
    const FastDiv f(d);
    for (int t = 0; t < 200; ++t) {
      const int n = t < 100 ? t * d + (t % 3) - 1 : big(rng);
      if (n >= 0 && f.div(n) != n / d) {
        std::printf("FastDiv(%d).div(%d) = %d\n", d, n, f.div(n));
        return 1;
      }
    }
  }
  const Case cases[] = {
      {2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1},   {1, 4, 13, 11, 6, 3, 2, 2, 3, 1, 0, 1, 1, 2},
      {2, 6, 10, 10, 6, 3, 3, 2, 2, 2, 2, 2, 2, 6}, {3, 5, 8, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1},
      {1, 4, 9, 12, 8, 5, 3, 3, 2, 2, 1, 1, 2, 4},  {2, 2, 5, 5, 3, 5, 5, 1, 1, 0, 0, 1, 1, 1},
      {1, 6, 11, 13, 9, 2, 4, 1, 2, 1, 3, 2, 1, 3}, {2, 3, 12, 12, 7, 3, 3, 3, 3, 4, 4, 3, 3, 1},
  };
  for (const Case& c : cases) check(c);
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
