#include "bindings/view.h"

#include <pybind11/numpy.h>

#include <cstdint>

#include "common/error.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

// The DLPack ABI (unversioned "dltensor" capsules, DLPack 0.x): only the fields read here.
struct DLDevice {
  int32_t device_type;  // 1 = CPU, 2 = CUDA, 3 = pinned host memory
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // 0 = int, 1 = uint, 2 = float, 4 = bfloat
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};

DType dtype_from_dlpack(const DLDataType& t) {
  if (t.lanes != 1) return DType::Other;
  if (t.code == 2 && t.bits == 16) return DType::Float16;
  if (t.code == 2 && t.bits == 32) return DType::Float32;
  if (t.code == 2 && t.bits == 64) return DType::Float64;
  if (t.code == 4 && t.bits == 16) return DType::BFloat16;
  if (t.code == 0 && t.bits == 32) return DType::Int32;
  if (t.code == 0 && t.bits == 64) return DType::Int64;
  if (t.code == 1 && t.bits == 8) return DType::UInt8;
  return DType::Other;
}

DType dtype_from_numpy(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 2) return DType::Float16;
  if (kind == 'f' && size == 4) return DType::Float32;
  if (kind == 'f' && size == 8) return DType::Float64;
  if (kind == 'i' && size == 4) return DType::Int32;
  if (kind == 'i' && size == 8) return DType::Int64;
  if (kind == 'u' && size == 1) return DType::UInt8;
  return DType::Other;
}

TensorView from_dlpack(py::handle capsule_obj, const char* name) {
  PyObject* capsule = capsule_obj.ptr();
  FASTRNN_CHECK_KIND(ErrorKind::Type, PyCapsule_IsValid(capsule, "dltensor"), name,
                     ": expected an unused DLPack capsule");
  // Borrowed, not consumed: the capsule keeps ownership and frees the tensor when collected.
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  const DLTensor& t = managed->dl_tensor;
  FASTRNN_CHECK(t.ndim >= 0 && t.ndim <= kMaxDims, name, ": at most ", kMaxDims, " dimensions are supported");
  TensorView v;
  v.dtype = dtype_from_dlpack(t.dtype);
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  v.device = t.device.device_type == 2 ? DeviceType::CUDA
             : (t.device.device_type == 1 || t.device.device_type == 3) ? DeviceType::CPU
                                                                         : DeviceType::Other;
  v.device_index = t.device.device_id;
  v.ndim = t.ndim;
  int64_t compact = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    v.sizes[d] = t.shape[d];
    v.strides[d] = t.strides ? t.strides[d] : compact;
    compact *= t.shape[d];
  }
  return v;
}

TensorView from_numpy(const py::array& a, const char* name) {
  FASTRNN_CHECK(a.ndim() <= kMaxDims, name, ": at most ", kMaxDims, " dimensions are supported");
  TensorView v;
  v.dtype = dtype_from_numpy(a.dtype());
  v.data = const_cast<void*>(a.data());
  v.device = DeviceType::CPU;
  v.ndim = static_cast<int>(a.ndim());
  const auto item = a.itemsize();
  for (int d = 0; d < v.ndim; ++d) {
    v.sizes[d] = a.shape(d);
    FASTRNN_CHECK(a.strides(d) % item == 0, name, ": strides must be whole elements");
    v.strides[d] = a.strides(d) / item;
  }
  return v;
}

}  // namespace

TensorView to_view(py::handle obj, const char* name) {
  if (obj.is_none()) return TensorView{};
  if (PyCapsule_CheckExact(obj.ptr())) return from_dlpack(obj, name);  // (the cheaper test first)
  if (py::isinstance<py::array>(obj)) return from_numpy(py::reinterpret_borrow<py::array>(obj), name);
  throw Error(ErrorKind::Type,
              detail::concat(name, ": expected a NumPy array, a DLPack capsule or None, got ",
                             std::string(py::str(py::type::handle_of(obj).attr("__name__")))));
}

}  // namespace fastrnn::bindings
