#include "common/checks.h"

#include <sstream>
#include <string>

#include "common/error.h"

namespace fastrnn {

namespace {

std::string shape_of(std::initializer_list<int64_t> shape) {
  std::ostringstream out;
  out << "(";
  int i = 0;
  for (int64_t s : shape) out << (i++ ? ", " : "") << s;
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

bool same_shape(const TensorView& v, std::initializer_list<int64_t> shape) {
  if (v.ndim != static_cast<int>(shape.size())) return false;
  int d = 0;
  for (int64_t s : shape) {
    if (v.sizes[d++] != s) return false;
  }
  return true;
}

}  // namespace

void check_cpu_array(const char* op, const char* name, const TensorView& v, DType dtype,
                     std::initializer_list<int64_t> shape) {
  FASTRNN_CHECK(v.defined(), op, ": ", name, " is required");
  FASTRNN_CHECK(v.device == DeviceType::CPU, op, ": expected ", name, " on the CPU");
  FASTRNN_CHECK(v.dtype == dtype, op, ": expected ", name, " of dtype ", dtype_name(dtype), ", got ",
                dtype_name(v.dtype));
  FASTRNN_CHECK(same_shape(v, shape), op, ": expected ", name, " of shape ", shape_of(shape), ", got ",
                v.shape_str());
  FASTRNN_CHECK(v.is_contiguous(), op, ": expected ", name, " to be contiguous");
  FASTRNN_CHECK(v.data != nullptr || v.numel() == 0, op, ": ", name, " has no data");
}

void check_optional_cpu_array(const char* op, const char* name, const TensorView& v, DType dtype,
                              std::initializer_list<int64_t> shape) {
  if (v.defined()) check_cpu_array(op, name, v, dtype, shape);
}

void check_workspace(const char* op, const TensorView& v, int64_t bytes) {
  FASTRNN_CHECK(v.defined() && v.device == DeviceType::CPU && v.is_contiguous(), op,
                ": expected a contiguous CPU workspace");
  FASTRNN_CHECK(v.nbytes() >= bytes, op, ": workspace of ", v.nbytes(), " bytes is too small; ", bytes,
                " bytes are needed");
}

void check_no_overlap(const char* op, std::initializer_list<NamedView> outputs,
                      std::initializer_list<NamedView> inputs) {
  // The bytes from a view's first element to one past its last (strides taken into account).
  auto extent = [](const TensorView& v) -> int64_t {
    if (!v.defined() || v.numel() == 0) return 0;
    int64_t last = 0;
    for (int d = 0; d < v.ndim; ++d) last += (v.sizes[d] - 1) * v.strides[d];
    return (last + 1) * static_cast<int64_t>(dtype_size(v.dtype));
  };
  auto overlaps = [&](const TensorView& a, const TensorView& b) {
    const int64_t ea = extent(a), eb = extent(b);
    if (ea == 0 || eb == 0) return false;
    auto a0 = reinterpret_cast<uintptr_t>(a.data), b0 = reinterpret_cast<uintptr_t>(b.data);
    return a0 < b0 + eb && b0 < a0 + ea;
  };
  for (auto out = outputs.begin(); out != outputs.end(); ++out) {
    for (auto other = out + 1; other != outputs.end(); ++other) {
      FASTRNN_CHECK(!overlaps(*out->second, *other->second), op, ": output ", out->first,
                    " overlaps output ", other->first);
    }
    for (const NamedView& in : inputs) {
      FASTRNN_CHECK(!overlaps(*out->second, *in.second), op, ": output ", out->first,
                    " overlaps input ", in.first);
    }
  }
}

}  // namespace fastrnn
