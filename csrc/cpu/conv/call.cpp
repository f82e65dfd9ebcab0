#include "cpu/conv/call.h"

#include <omp.h>

#include <cstdint>
#include <initializer_list>

#include "common/error.h"

namespace fastrnn::cpu {
namespace {

void check_op(const char* name, ConvOp op) {
  const int value = static_cast<int>(op);
  FASTRNN_CHECK(value >= static_cast<int>(ConvOp::Forward) && value <= static_cast<int>(ConvOp::PoolBackward), name,
                ": op must be 0 (forward), 1 (backward), 2 (pooled forward) or 3 (pooled backward), got ", value);
}

// The workspace view w as the kernels take it: aligned to 64 bytes, for as many threads as it
// has room for (all OpenMP threads when it was sized by conv_workspace_bytes).
ConvWorkspace fit_workspace(const char* name, const TensorView& w, const ConvShape& s, DType dtype, ConvOp op) {
  FASTRNN_CHECK(w.defined() && w.device == DeviceType::CPU && w.is_contiguous(), name,
                ": expected a contiguous CPU workspace");
  const auto raw = reinterpret_cast<uintptr_t>(w.data);
  ConvWorkspace ws;
  ws.data = reinterpret_cast<char*>((raw + 63) / 64 * 64);
  ws.bytes = w.nbytes() - (ws.data - static_cast<char*>(w.data));
  int threads = omp_get_max_threads();
  while (threads > 1 && conv_workspace_bytes(s, dtype, op, threads) > ws.bytes) --threads;
  ws.threads = threads;
  FASTRNN_CHECK(w.data != nullptr && ws.bytes >= conv_workspace_bytes(s, dtype, op, threads), name,
                ": workspace too small");
  return ws;
}

// The fused backward trusts the indices: each must lie in its conv output plane.
void check_indices(const char* name, const TensorView& indices, int64_t plane) {
  const int64_t* at = indices.data_as<int64_t>();
  for (int64_t i = 0, n = indices.numel(); i < n; ++i)
    FASTRNN_CHECK(at[i] >= 0 && at[i] < plane, name, ": index out of range");
}

}  // namespace

ConvCall check_conv_call(const char* name, ConvOp op, const ConvArgs& a) {
  check_op(name, op);
  const TensorView& x = a.x;
  FASTRNN_CHECK(x.defined() && x.device == DeviceType::CPU, name, ": x must be a CPU array");
  const DType dtype = x.dtype;
  FASTRNN_CHECK(dtype == DType::Float32 || dtype == DType::Float64, name, ": dtype ", dtype_name(dtype),
                " is not supported on the CPU; expected float32 or float64");
  const bool pooled = op == ConvOp::PoolForward || op == ConvOp::PoolBackward;
  int64_t out_h = a.out_height, out_w = a.out_width;
  if (!pooled) {  // the plain conv's output size is its output's
    const TensorView& out = op == ConvOp::Forward ? a.y : a.dy;
    FASTRNN_CHECK(out.ndim == 4, name, ": ", op == ConvOp::Forward ? "y" : "dy", " must be 4-D, got ", out.shape_str());
    out_h = out.sizes[2], out_w = out.sizes[3];
  }
  ConvCall call;
  call.shape = conv_shape(name, x, a.weight, out_h, out_w, a.geometry);
  const ConvShape& s = call.shape;
  const int64_t n = s.batch, k = s.out_channels;
  check_conv_view(name, "x", x, x, {n, s.in_channels, s.height, s.width}, dtype);
  check_conv_view(name, "weight", a.weight, x, {k, s.in_channels / s.groups, s.kernel_h, s.kernel_w}, dtype);
  const std::initializer_list<int64_t> output = {n, k, pooled ? out_h / 2 : out_h, pooled ? out_w / 2 : out_w};
  if (op == ConvOp::Forward || op == ConvOp::PoolForward) {
    check_conv_view(name, "bias", a.bias, x, {k}, dtype, true);
    check_conv_view(name, "y", a.y, x, output, dtype);
    if (pooled) check_conv_view(name, "indices", a.indices, x, output, DType::Int64);
  } else {
    check_conv_view(name, "dy", a.dy, x, output, dtype);
    if (pooled) check_conv_view(name, "y", a.y, x, output, dtype);
    if (pooled) check_conv_view(name, "indices", a.indices, x, output, DType::Int64);
    check_conv_view(name, "dx", a.dx, x, {n, s.in_channels, s.height, s.width}, dtype, true);
    check_conv_view(name, "dweight", a.dweight, x, {k, s.in_channels / s.groups, s.kernel_h, s.kernel_w}, dtype, true);
    check_conv_view(name, "dbias", a.dbias, x, {k}, dtype, true);
    if (pooled) check_indices(name, a.indices, out_h * out_w);
  }
  call.workspace = fit_workspace(name, a.workspace, s, dtype, op);
  return call;
}

int64_t conv_workspace_bytes(ConvOp op, DType dtype, const TensorView& x, const TensorView& weight, int64_t out_height,
                             int64_t out_width, const ConvGeometry& g) {
  const char* name = "conv_workspace_bytes";
  check_op(name, op);
  const ConvShape s = conv_shape(name, x, weight, out_height, out_width, g);
  return conv_workspace_bytes(s, dtype, op, omp_get_max_threads()) + 64;  // + 64: any alignment
}

}  // namespace fastrnn::cpu
