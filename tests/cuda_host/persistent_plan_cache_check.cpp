// Host check of the persistent plan cache (csrc/cuda/rnn_persistent_cache.h), which needs no
// GPU: a fake make() stands in for the CUDA queries and a fake driver records the kernels'
// shared-memory limits per device. Built and run by
// tests/test_persistent_plan_cache.py::test_cache_logic_on_host; exits non-zero on a failure.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "cuda/rnn_persistent_cache.h"

using namespace fastrnn::cuda;

namespace {

int failures = 0;
#define EXPECT(...)                                                         \
  do {                                                                      \
    if (!(__VA_ARGS__)) {                                                   \
      std::printf("%s:%d: failed: %s\n", __FILE__, __LINE__, #__VA_ARGS__); \
      ++failures;                                                           \
    }                                                                       \
  } while (0)

struct Plan {
  bool use = false;
  int64_t smem_bytes = 0;
  int64_t tag = 0;  // which key made it
};

// Stands in for the driver: (kernel, device) -> the dynamic shared-memory limit set on it.
struct FakeDriver {
  std::mutex mutex;
  std::map<std::pair<const void*, int>, int64_t> limit;
  int set_calls = 0;
  int queries = 0;
  bool fail_next = false;
};

const char kernel_a = 0, kernel_b = 0;  // two distinct addresses

PersistentPlanKey key_of(const void* kernel, int device, int64_t H, int64_t B) {
  PersistentPlanKey k;
  k.kernel = kernel, k.device = device, k.hidden_size = H, k.batch_rows = B < 64 ? B : 64;
  k.gates = 4, k.weight_bytes = 4, k.compute_bytes = 4;
  return k;
}

// What query_plan does with the limit: raise it, never lower it, and only on success.
Plan find(PersistentPlanCache<Plan>& cache, FakeDriver& driver, const PersistentPlanKey& key) {
  return cache.find_or_make(key, [&](Plan& plan, int64_t& limit_bytes) {
    std::lock_guard<std::mutex> lock(driver.mutex);
    ++driver.queries;
    if (driver.fail_next) {
      driver.fail_next = false;
      plan.use = false;
      return false;
    }
    plan.use = true;
    plan.smem_bytes = key.hidden_size * 100 + key.batch_rows;
    plan.tag = key.hidden_size * 1000 + key.batch_rows * 10 + key.device;
    if (plan.smem_bytes > limit_bytes) {
      ++driver.set_calls;
      driver.limit[{key.kernel, key.device}] = plan.smem_bytes;
      limit_bytes = plan.smem_bytes;
    }
    return true;
  });
}

// Every plan the cache hands out must be launchable: its bytes within the driver's limit.
void expect_launchable(FakeDriver& driver, const PersistentPlanKey& key, const Plan& plan) {
  std::lock_guard<std::mutex> lock(driver.mutex);
  EXPECT(!plan.use || driver.limit[{key.kernel, key.device}] >= plan.smem_bytes);
}

void hits_and_misses() {
  PersistentPlanCache<Plan> cache(64);
  FakeDriver driver;
  const auto k = key_of(&kernel_a, 0, 37, 7);
  const Plan first = find(cache, driver, k);
  const Plan second = find(cache, driver, k);
  EXPECT(cache.misses() == 1 && driver.queries == 1);
  EXPECT(first.tag == second.tag && first.smem_bytes == second.smem_bytes && second.use);
  // Batches past the largest chunk share a key; anything else is its own key.
  find(cache, driver, key_of(&kernel_a, 0, 37, 64));
  find(cache, driver, key_of(&kernel_a, 0, 37, 100));
  EXPECT(cache.misses() == 2);
  find(cache, driver, key_of(&kernel_b, 0, 37, 7));
  find(cache, driver, key_of(&kernel_a, 0, 129, 7));
  auto backward = key_of(&kernel_a, 0, 37, 7);
  backward.backward = true;
  find(cache, driver, backward);
  EXPECT(cache.misses() == 5 && cache.size() == 5);
}

void failures_are_not_cached() {
  PersistentPlanCache<Plan> cache(64);
  FakeDriver driver;
  const auto k = key_of(&kernel_a, 0, 37, 7);
  driver.fail_next = true;
  EXPECT(!find(cache, driver, k).use);
  EXPECT(cache.size() == 0 && driver.set_calls == 0);
  const Plan retried = find(cache, driver, k);  // the queries run again, and now succeed
  EXPECT(retried.use && driver.queries == 2 && cache.misses() == 2);
  find(cache, driver, k);
  EXPECT(driver.queries == 2);
}

void limits_are_per_device_and_only_raised() {
  PersistentPlanCache<Plan> cache(64);
  FakeDriver driver;
  const auto big = key_of(&kernel_a, 0, 500, 64), small = key_of(&kernel_a, 0, 40, 3);
  find(cache, driver, big);
  EXPECT(driver.set_calls == 1);
  find(cache, driver, small);  // within the limit already raised: no set, no lowering
  EXPECT(driver.set_calls == 1);
  EXPECT(driver.limit[{&kernel_a, 0}] == 500 * 100 + 64);
  // The same shape on device 1: its own plan, its own attribute call.
  const auto big_on_1 = key_of(&kernel_a, 1, 500, 64);
  const Plan p1 = find(cache, driver, big_on_1);
  EXPECT(driver.set_calls == 2 && driver.limit[{&kernel_a, 1}] == p1.smem_bytes);
  for (const auto& k : {big, small, big_on_1}) expect_launchable(driver, k, find(cache, driver, k));
}

void bounded_and_limits_survive_eviction() {
  const size_t capacity = 8;
  PersistentPlanCache<Plan> cache(capacity);
  FakeDriver driver;
  const auto big = key_of(&kernel_a, 0, 900, 64);
  find(cache, driver, big);
  for (int64_t H = 1; H <= 40; ++H) {
    find(cache, driver, key_of(&kernel_a, 0, H, 5));
    EXPECT(cache.size() <= capacity);
  }
  EXPECT(driver.set_calls == 1);  // every smaller plan fits the limit raised for `big`
  expect_launchable(driver, big, find(cache, driver, big));  // evicted, remade, still within the limit
  EXPECT(driver.set_calls == 1);
}

void threads_make_each_key_once() {
  PersistentPlanCache<Plan> cache(1024);
  FakeDriver driver;
  std::vector<PersistentPlanKey> keys;
  for (int device = 0; device < 2; ++device)
    for (int64_t H : {7, 13, 37, 97})
      for (int64_t B : {1, 5, 64}) keys.push_back(key_of(device ? &kernel_b : &kernel_a, device, H, B));
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const auto& k = keys[size_t(i * 7 + t) % keys.size()];
        const Plan p = find(cache, driver, k);
        if (p.tag != k.hidden_size * 1000 + k.batch_rows * 10 + k.device) wrong.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT(wrong.load() == 0);
  EXPECT(cache.misses() == keys.size() && size_t(driver.queries) == keys.size());
  for (const auto& k : keys) expect_launchable(driver, k, find(cache, driver, k));
}

}  // namespace

int main() {
  hits_and_misses();
  failures_are_not_cached();
  limits_are_per_device_and_only_raised();
  bounded_and_limits_survive_eviction();
  threads_make_each_key_once();
  if (failures) std::printf("%d check(s) failed\n", failures);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
