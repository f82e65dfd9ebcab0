#pragma once
// A spinning barrier for the threads of one recurrence, met once per time step. A step can be a
// microsecond of work, where a general-purpose barrier costs about as much as the step; this one
// costs about one cache-line round trip between cores. Waiters spin (with a pause hint), which
// is right for a team that has the cores to itself for the whole call.
// In an unnamed namespace: see cells/activations.h.
namespace fastrnn {
namespace {

class SpinBarrier {
 public:
  // Call from one thread, before the others wait (e.g. in `omp single`).
  void reset(int size) {
    size_ = size;
    __atomic_store_n(&arrived_, 0, __ATOMIC_RELAXED);
  }

  void wait() {
    const int generation = __atomic_load_n(&generation_, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&arrived_, 1, __ATOMIC_ACQ_REL) == size_) {
      // The last to arrive opens the next generation; its release publishes everyone's writes,
      // which the others acquired through arrived_.
      __atomic_store_n(&arrived_, 0, __ATOMIC_RELAXED);
      __atomic_store_n(&generation_, generation + 1, __ATOMIC_RELEASE);
      return;
    }
    while (__atomic_load_n(&generation_, __ATOMIC_ACQUIRE) == generation) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }

 private:
  alignas(64) int arrived_ = 0;
  alignas(64) int generation_ = 0;
  int size_ = 1;
};

}  // namespace
}  // namespace fastrnn
