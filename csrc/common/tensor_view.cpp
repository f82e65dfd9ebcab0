#include "common/tensor_view.h"

#include <sstream>

namespace fastrnn {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Other: break;
  }
  return "unsupported";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float16:
    case DType::BFloat16: return 2;
    case DType::Float32:
    case DType::Int32: return 4;
    case DType::Float64:
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    case DType::Other: break;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= sizes[d];
  return ndim < 0 ? 0 : n;
}

bool TensorView::is_contiguous() const {
  // An empty array holds no element to misplace, whatever its strides (torch says so too).
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    // Strides of size-1 dimensions do not matter, as in torch.
    if (sizes[d] != 1 && strides[d] != expected) return false;
    expected *= sizes[d];
  }
  return true;
}

bool TensorView::same_shape(const TensorView& other) const {
  if (ndim != other.ndim) return false;
  for (int d = 0; d < ndim; ++d) {
    if (sizes[d] != other.sizes[d]) return false;
  }
  return true;
}

std::string TensorView::shape_str() const {
  std::ostringstream out;
  out << "(";
  for (int d = 0; d < ndim; ++d) out << (d ? ", " : "") << sizes[d];
  out << (ndim == 1 ? ",)" : ")");
  return out.str();
}

}  // namespace fastrnn
