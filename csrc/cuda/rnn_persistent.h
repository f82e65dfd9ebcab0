#pragma once
// The persistent CUDA recurrence (rnn_persistent.cuh): when it applies, and the switches and
// measurements around it. Host-only declarations: no CUDA headers, so the bindings can use it.
//
// FASTRNN_CUDA_PERSISTENT=0 in the environment (read once, at the first RNN call) forces the
// step-wise path; set_rnn_persistent() overrides it inside one process (tests, A/B benchmarks).
#include <cstdint>

#include "common/rnn_params.h"
#include "common/rnn_plan.h"

namespace fastrnn::cuda {

// How one layer-direction call would run its recurrence. `use` false: the step-wise path, and
// `reason` says why (a static string).
struct PersistentPlan {
  bool use = false;
  const char* reason = "";
  int blocks = 0;           // one cooperative grid, one block per SM at most
  int units = 0;            // hidden units per block (the last block may own fewer)
  int batch_chunk = 0;      // batch rows staged in shared memory at once (forward: h_prev and
                            // gates; backward: dgates_hh and the dh_prev slice)
  int64_t smem_bytes = 0;   // dynamic shared memory per block: W_hh slice + staged rows
};

// The sizes a plan depends on (kernel-independent), filled by the caller.
struct PersistentShape {
  int gates = 0;               // G
  int weight_bytes = 0;        // bytes of one W_hh element in shared memory (the storage type)
  int compute_bytes = 0;       // bytes of one compute-type element (h_prev, gates)
  bool projected = false;      // LSTM proj_size: not supported persistently
  bool masked = false;         // recurrent dropout: not supported persistently
  bool variable_batch = false; // batch_sizes with some step shorter than B
  bool backward = false;       // the backward kernel: W_hh columns resident, dgates rows staged
};

bool rnn_persistent_enabled();
// 1: on (where it applies), 0: off, -1: back to the environment's choice.
void set_rnn_persistent(int mode);

// The plan for `kernel` (a persistent kernel instantiation, 256 threads per block) on the
// current device. The kernel's dynamic shared-memory limit there covers the plan when it returns
// use = true. Cached per (kernel, device, sizes): the CUDA queries run once per key.
PersistentPlan plan_persistent(const void* kernel, const RnnDims& d, const PersistentShape& shape);

// How many plan_persistent calls missed the cache (and ran the CUDA queries) in this process.
uint64_t persistent_plan_misses();

// What rnn_forward (backward false) or rnn_backward (backward true; `training` is then
// ignored) would do for this call shape (dtype: the tensors' dtype) on `device`: used by tests
// and benchmarks to know which path they measure.
PersistentPlan rnn_persistent_plan(CellKind cell, DType dtype, int64_t steps, int64_t batch, int64_t hidden_size,
                                   bool training, bool backward, int device);

// The floor of a persistent step: microseconds per grid-wide barrier, measured by one cooperative
// launch of `blocks` blocks (0: one per SM) of 256 threads meeting `steps` barriers and nothing
// else (the launch itself subtracted). Synchronises `stream` (a benchmark, not a kernel).
double grid_barrier_microseconds(int device, int blocks, int steps, uintptr_t stream);

}  // namespace fastrnn::cuda
