#pragma once
// The cache behind plan_persistent (rnn_persistent.cu): one plan per (kernel, device, sizes), so
// the device queries, cudaFuncSetAttribute and the occupancy query run once per layer shape, not
// once per call. Host-only, no CUDA headers: tests/cuda_host checks it without a GPU.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace fastrnn::cuda {

// Everything a plan depends on beyond the checks plan_persistent makes before the lookup.
struct PersistentPlanKey {
  const void* kernel = nullptr;  // one instantiation: cell, storage dtype, training, forward/backward
  int device = 0;                // function attributes and occupancy are per device
  int64_t hidden_size = 0;       // H: units per block, the W_hh slice, the grid
  int64_t batch_rows = 0;        // min(B, the largest chunk): larger batches stage the same chunks
  int gates = 0;
  int weight_bytes = 0;
  int compute_bytes = 0;
  bool backward = false;

  bool operator==(const PersistentPlanKey& o) const {
    return kernel == o.kernel && device == o.device && hidden_size == o.hidden_size && batch_rows == o.batch_rows &&
           gates == o.gates && weight_bytes == o.weight_bytes && compute_bytes == o.compute_bytes &&
           backward == o.backward;
  }
};

struct PersistentPlanKeyHash {
  size_t operator()(const PersistentPlanKey& k) const {
    uint64_t h = uint64_t(reinterpret_cast<uintptr_t>(k.kernel));
    for (uint64_t v : {uint64_t(k.device), uint64_t(k.hidden_size), uint64_t(k.batch_rows), uint64_t(k.gates),
                       uint64_t(k.weight_bytes), uint64_t(k.compute_bytes), uint64_t(k.backward)}) {
      h = (h ^ v) * 0x100000001b3ull;  // FNV-1a step per field
    }
    return size_t(h ^ (h >> 32));
  }
};

template <class Plan>
class PersistentPlanCache {
 public:
  explicit PersistentPlanCache(size_t capacity) : capacity_(capacity) {}

  // The plan for `key`: the cached one, or make(plan, limit_bytes)'s. `limit_bytes` is the
  // kernel's dynamic shared-memory limit on key.device as raised so far (0: never); make raises
  // it, never lowers it, so a plan cached earlier with a larger size stays launchable. make
  // returns false when a query failed: that plan is returned but not kept. One mutex over the
  // lookup and the queries: they run once per key, and the limit must not race.
  template <class Make>
  Plan find_or_make(const PersistentPlanKey& key, Make&& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto hit = plans_.find(key);
    if (hit != plans_.end()) return hit->second;
    misses_.fetch_add(1, std::memory_order_relaxed);
    Plan plan;
    int64_t& limit = limits_[{reinterpret_cast<uintptr_t>(key.kernel), key.device}];
    if (!make(plan, limit)) return plan;
    // Keys are per layer shape, so a process holds a few; a process sweeping sizes starts over
    // rather than grow. The limits are kept: they mirror state the driver keeps.
    if (plans_.size() >= capacity_) plans_.clear();
    plans_.emplace(key, plan);
    return plan;
  }

  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.size();
  }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::unordered_map<PersistentPlanKey, Plan, PersistentPlanKeyHash> plans_;
  // (kernel, device) -> bytes its dynamic shared-memory limit was raised to. Bounded by the
  // kernel instantiations times the devices, so never evicted.
  std::map<std::pair<uintptr_t, int>, int64_t> limits_;
  std::atomic<uint64_t> misses_{0};
};

}  // namespace fastrnn::cuda
