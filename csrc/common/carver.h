#pragma once
// One buffer handed out in aligned pieces: how every core entry lays out the workspace its
// caller passes (RNN, conv), so the size query and the kernels cannot disagree.
#include <cstdint>

namespace fastrnn {

constexpr int64_t kAlign = 64;

// Hands out 64-byte-aligned pieces of one buffer. With a null base it only adds up sizes, so
// the size query and the kernels share one layout. Addresses, not offsets, are aligned (a
// NumPy buffer may be only 16-byte aligned), so a size query includes that slack.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(int64_t count) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(base_) + static_cast<uintptr_t>(offset_);
    offset_ += static_cast<int64_t>((kAlign - at % kAlign) % kAlign);
    T* piece = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += count * static_cast<int64_t>(sizeof(T));
    return piece;
  }
  int64_t bytes() const { return offset_ + (base_ ? 0 : kAlign); }

 private:
  char* base_;
  int64_t offset_ = 0;
};

}  // namespace fastrnn
