// The plain conv's gradients over a batch (cpu/conv.h, backward.h).
#include "cpu/conv/backward.h"

#include "cpu/conv/call.h"

namespace fastrnn::cpu {
namespace {

// dx, dweight, dbias (those wanted) over the batch (a checked call).
template <typename T>
void run_backward(const ConvShape& s, const ConvWorkspace& ws, const ConvArgs& a) {
  const T *dy = a.dy.data_as<T>(), *x = a.x.data_as<T>(), *weight = a.weight.data_as<T>();
  T *dx = data_or_null<T>(a.dx), *dweight = data_or_null<T>(a.dweight), *dbias = data_or_null<T>(a.dbias);
  const ConvPlan p = choose_algorithm(s, dtype_of<T>(), ConvOp::Backward);
  if (s.batch == 0 || p.out_pixels == 0) {  // empty sums
    if (dx != nullptr) std::fill(dx, dx + s.batch * s.in_channels * s.height * s.width, T(0));
    if (dweight != nullptr) std::fill(dweight, dweight + s.out_channels * p.taps, T(0));
    if (dbias != nullptr) std::fill(dbias, dbias + s.out_channels, T(0));
    return;
  }
  const int64_t out_numel = s.out_channels * p.out_pixels;
  backward_batch<T>(
      s, p, [&](int64_t n, const ThreadBuffers<T>&) { return dy + n * out_numel; },
      [](int64_t, const ThreadBuffers<T>&, T*, T*, T*) {}, x, weight, dx, dweight, dbias, ws);
}

}  // namespace

void conv2d_backward(const ConvArgs& a) {
  const ConvCall c = check_conv_call("conv2d_backward", ConvOp::Backward, a);
  FASTRNN_DISPATCH_FLOATING(a.x.dtype, "conv2d_backward", [&] { run_backward<scalar_t>(c.shape, c.workspace, a); });
}

int64_t conv_workspace_bytes(const ConvShape& s, DType dtype, ConvOp op, int threads) {
  check_conv_shape("conv_workspace_bytes", s);
  threads = std::max(1, threads);
  return dtype == DType::Float64 ? workspace_bytes<double>(s, op, threads) : workspace_bytes<float>(s, op, threads);
}

}  // namespace fastrnn::cpu
