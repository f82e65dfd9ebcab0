// When the persistent recurrence applies (rnn_persistent.cuh), its on/off switch, and the
// grid-barrier floor benchmark.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "cuda/launch.h"
#include "cuda/rnn_persistent.h"
#include "cuda/rnn_persistent_cache.h"

namespace fastrnn::cuda {
namespace {

constexpr int kThreads = 256;     // rnn_detail::kPersistentThreads
constexpr int kMaxBatchChunk = 64;
constexpr size_t kMaxPlans = 512;

// -1: follow the environment; 0 / 1: set by set_rnn_persistent.
std::atomic<int> override_mode{-1};

bool environment_allows() {
  static const bool allows = [] {
    const char* value = std::getenv("FASTRNN_CUDA_PERSISTENT");
    return !(value && std::strcmp(value, "0") == 0);
  }();
  return allows;
}

int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

PersistentPlan refuse(const char* reason) {
  PersistentPlan plan;
  plan.reason = reason;
  return plan;
}

bool attribute(cudaDeviceAttr what, int device, int& value) {
  if (cudaDeviceGetAttribute(&value, what, device) == cudaSuccess) return true;
  cudaGetLastError();
  return false;
}

// The queries behind one plan (a cache miss). Returns false, with a refusal in `plan`, when a
// CUDA query failed: that answer is not cached. Raises the kernel's dynamic shared-memory limit
// on `device` to at least the plan's need (`limit_bytes`: what it was raised to so far).
bool query_plan(const void* kernel, int device, const RnnDims& d, const PersistentShape& shape,
                int64_t& limit_bytes, PersistentPlan& plan) {
  int cooperative = 0, sms = 0, optin = 0;
  if (!attribute(cudaDevAttrCooperativeLaunch, device, cooperative)) {
    plan = refuse("cannot query the device");
    return false;
  }
  if (!cooperative) {
    plan = refuse("device has no cooperative launch");
    return true;
  }
  if (!attribute(cudaDevAttrMultiProcessorCount, device, sms) ||
      !attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device, optin) || sms < 1) {
    plan = refuse("cannot query the device");
    return false;
  }
  // Spread the units over every SM (one block each): the fewest units, and so the smallest
  // W_hh slice and the least work, per block.
  const int H = int(d.H), G = shape.gates;
  const int units = int((d.H + sms - 1) / sms);
  const int blocks = (H + units - 1) / units;
  const int64_t weights = align16(int64_t(G) * units * H * shape.weight_bytes);
  // Per staged batch row: forward h_prev (H) + its gates (G*U); backward dgates_hh (G*H) + the
  // row's dh_prev slice (U).
  const int64_t per_row = (shape.backward ? int64_t(G) * H + units : int64_t(H) + int64_t(G) * units) *
                          shape.compute_bytes;
  const int64_t rows_fit = (int64_t(optin) - weights) / per_row;
  if (rows_fit < 1) {
    plan = refuse("the W_hh slice per block does not fit in shared memory");
    return true;
  }
  PersistentPlan out;
  out.blocks = blocks;
  out.units = units;
  out.batch_chunk = int(std::min<int64_t>({d.B, kMaxBatchChunk, rows_fit}));
  out.smem_bytes = weights + out.batch_chunk * per_row;
  // Only raised (the cache may hold a larger plan of this kernel on this device); per device.
  if (out.smem_bytes > limit_bytes) {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(out.smem_bytes)) !=
        cudaSuccess) {
      cudaGetLastError();
      plan = refuse("cannot raise the kernel's shared-memory limit");
      return false;
    }
    limit_bytes = out.smem_bytes;
  }
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, size_t(out.smem_bytes)) !=
      cudaSuccess) {
    cudaGetLastError();
    plan = refuse("occupancy query failed");
    return false;
  }
  // A cooperative launch needs every block resident at once.
  if (int64_t(per_sm) * sms < blocks) {
    plan = refuse("not enough co-resident blocks");
    return true;
  }
  out.use = true;
  out.reason = "persistent";
  plan = out;
  return true;
}

// Keys are per layer shape and kernel instantiation: a few per model.
PersistentPlanCache<PersistentPlan>& plan_cache() {
  static PersistentPlanCache<PersistentPlan> cache(kMaxPlans);
  return cache;
}

__global__ void __launch_bounds__(kThreads) grid_barrier_loop(int steps) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int s = 0; s < steps; ++s) grid.sync();
}

}  // namespace

bool rnn_persistent_enabled() {
  const int mode = override_mode.load(std::memory_order_relaxed);
  return mode < 0 ? environment_allows() : mode != 0;
}

void set_rnn_persistent(int mode) { override_mode.store(mode < 0 ? -1 : (mode != 0), std::memory_order_relaxed); }

PersistentPlan plan_persistent(const void* kernel, const RnnDims& d, const PersistentShape& shape) {
  if (!rnn_persistent_enabled()) return refuse("disabled (FASTRNN_CUDA_PERSISTENT=0 or set_rnn_persistent(0))");
  if (shape.projected) return refuse("LSTM with proj_size");
  if (shape.masked) return refuse("recurrent dropout mask");
  if (shape.variable_batch) return refuse("packed sequences of different lengths");
  if (d.T < 1 || d.B < 1 || d.H < 1) return refuse("empty sequence");
  if (d.T > (int64_t(1) << 30) || d.B > (int64_t(1) << 30) || d.H > (int64_t(1) << 20)) return refuse("sizes too large");
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return refuse("no current CUDA device");
  }
  PersistentPlanKey key;
  key.kernel = kernel, key.device = device, key.hidden_size = d.H;
  key.batch_rows = std::min<int64_t>(d.B, kMaxBatchChunk);
  key.gates = shape.gates, key.weight_bytes = shape.weight_bytes, key.compute_bytes = shape.compute_bytes;
  key.backward = shape.backward;
  return plan_cache().find_or_make(key, [&](PersistentPlan& plan, int64_t& limit_bytes) {
    return query_plan(kernel, device, d, shape, limit_bytes, plan);
  });
}

uint64_t persistent_plan_misses() { return plan_cache().misses(); }

double grid_barrier_microseconds(int device, int blocks, int steps, uintptr_t stream_handle) {
  const char* op = "grid_barrier_microseconds";
  FASTRNN_CHECK_VALUE(steps >= 1, op, ": steps must be positive, got ", steps);
  DeviceScope scope(device);
  int cooperative = 0, sms = 0, per_sm = 0;
  check_cuda(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device), op, "cudaDeviceGetAttribute");
  FASTRNN_CHECK(cooperative, op, ": device ", device, " has no cooperative launch");
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), op, "cudaDeviceGetAttribute");
  check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, grid_barrier_loop, kThreads, 0), op,
             "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  if (blocks <= 0) blocks = sms;
  FASTRNN_CHECK_VALUE(blocks <= per_sm * sms, op, ": ", blocks, " blocks cannot all be resident (at most ",
                      per_sm * sms, ")");
  const auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  struct Events {  // destroyed on every way out
    cudaEvent_t e[3] = {};
    ~Events() {
      for (cudaEvent_t x : e)
        if (x) cudaEventDestroy(x);
    }
  } owned;
  cudaEvent_t* events = owned.e;
  for (int i = 0; i < 3; ++i) check_cuda(cudaEventCreate(&events[i]), op, "cudaEventCreate");
  auto launch = [&](int n) {
    void* args[] = {&n};
    check_cuda(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(grid_barrier_loop), dim3(blocks),
                                           dim3(kThreads), args, 0, stream),
               op, "cudaLaunchCooperativeKernel");
  };
  launch(steps);  // warm-up
  check_cuda(cudaEventRecord(events[0], stream), op, "cudaEventRecord");
  launch(0);  // the launch alone
  check_cuda(cudaEventRecord(events[1], stream), op, "cudaEventRecord");
  launch(steps);
  check_cuda(cudaEventRecord(events[2], stream), op, "cudaEventRecord");
  check_cuda(cudaEventSynchronize(events[2]), op, "cudaEventSynchronize");
  float empty_ms = 0, loop_ms = 0;
  check_cuda(cudaEventElapsedTime(&empty_ms, events[0], events[1]), op, "cudaEventElapsedTime");
  check_cuda(cudaEventElapsedTime(&loop_ms, events[1], events[2]), op, "cudaEventElapsedTime");
  return std::max(0.0, double(loop_ms) - double(empty_ms)) * 1000.0 / steps;
}

}  // namespace fastrnn::cuda
