// The plain conv's forward over a batch (cpu/conv.h): Winograd on groups of images where the
// plan takes it, else image by image (forward.h).
#include "cpu/conv/forward.h"

#include "cpu/conv/call.h"

namespace fastrnn::cpu {
namespace {

// y = conv(x, weight) + bias over the batch (a checked call).
template <typename T>
void run_forward(const ConvShape& s, const ConvWorkspace& ws, const ConvArgs& a) {
  const T *x = a.x.data_as<T>(), *weight = a.weight.data_as<T>(), *bias = data_or_null<T>(a.bias);
  T* y = a.y.data_as<T>();
  if (s.batch == 0 || s.out_channels == 0 || s.out_height == 0 || s.out_width == 0) return;
  const ConvPlan p = choose_algorithm(s, dtype_of<T>(), ConvOp::Forward);
  const GemmScratch scratch = gemm_scratch(p, ws);
  const bool direct = use_direct(s, p, ws);
  if (direct) block_direct_weights(s, p, weight, buffers<T>(p, ws, 0), usable_threads(ws));
  const int64_t in_numel = s.in_channels * s.height * s.width, out_numel = s.out_channels * p.out_pixels;
  if (direct && p.winograd) {
    // Winograd on groups of winograd_batch images (an image with an Inf or NaN sends its group image
    // by image through forward_image, which runs it direct).
    for_each_image_group(s.batch, usable_threads(ws), p.winograd_batch, [&](int64_t n, int64_t images, int slot) {
      const ThreadBuffers<T> buf = buffers<T>(p, ws, slot);
      if (winograd_images(s, p, x + n * in_numel, images, buf, winograd_conv_out(s, p, bias, y + n * out_numel)))
        return;
      for (int64_t i = n; i < n + images; ++i)
        forward_image<T>(s, p, direct, x + i * in_numel, weight, bias, y + i * out_numel, buf, scratch);
    });
    return;
  }
  for_each_image(s.batch, usable_threads(ws), [&](int64_t n, int slot) {
    forward_image<T>(s, p, direct, x + n * in_numel, weight, bias, y + n * out_numel, buffers<T>(p, ws, slot), scratch);
  });
}

}  // namespace

void conv2d_forward(const ConvArgs& a) {
  const ConvCall c = check_conv_call("conv2d_forward", ConvOp::Forward, a);
  FASTRNN_DISPATCH_FLOATING(a.x.dtype, "conv2d_forward", [&] { run_forward<scalar_t>(c.shape, c.workspace, a); });
}

}  // namespace fastrnn::cpu
