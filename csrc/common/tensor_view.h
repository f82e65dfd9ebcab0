#pragma once
// A borrowed, framework-free view of an array: what every kernel receives. The core never
// owns or allocates memory; the caller (NumPy or torch, through the bindings) does.
#include <cstddef>
#include <cstdint>
#include <string>

namespace fastrnn {

enum class DType : uint8_t { Float16, BFloat16, Float32, Float64, Int32, Int64, UInt8, Other };
enum class DeviceType : uint8_t { CPU, CUDA, Other };

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);  // 0 for DType::Other

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }

constexpr int kMaxDims = 8;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::Other;
  DeviceType device = DeviceType::CPU;
  int device_index = 0;
  int ndim = -1;                  // -1: absent (an optional argument that was not given)
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements

  bool defined() const { return ndim >= 0; }
  int64_t size(int dim) const { return sizes[dim]; }
  int64_t numel() const;
  int64_t nbytes() const { return numel() * static_cast<int64_t>(dtype_size(dtype)); }
  bool is_contiguous() const;
  bool same_shape(const TensorView& other) const;
  std::string shape_str() const;  // "(5, 3, 10)"

  template <typename T> T* data_as() const { return static_cast<T*>(data); }
};

}  // namespace fastrnn
