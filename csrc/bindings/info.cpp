// Build and machine information, and the instruction-set switch used by the tests.
#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "bindings/device.h"
#include "bindings/view.h"
#include "common/error.h"
#include "common/isa.h"
#include "cuda/device.h"

namespace py = pybind11;

namespace fastrnn::bindings {
namespace {

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
    if (name == isa_name(isa)) return isa;
  }
  throw Error(ErrorKind::Value, "unknown instruction set '" + name + "'; expected generic, avx2 or avx512");
}

}  // namespace

void register_info(py::module_& m) {
  m.def("build_info", [] {
    py::dict info;
    info["version"] = FASTRNN_VERSION;
    info["compiler"] = compiler();
    info["openmp"] = std::to_string(_OPENMP);
    info["omp_max_threads"] = omp_get_max_threads();
    info["isa"] = isa_name(active_isa());
    info["isa_best"] = isa_name(best_supported_isa());
    const std::vector<std::string> devices = cuda_or(std::vector<std::string>{}, [] {
      std::vector<std::string> names(cuda::device_count());
      for (size_t d = 0; d < names.size(); ++d) names[d] = cuda::device_name(static_cast<int>(d));
      return names;
    });
    info["cuda_compiled"] = kCudaBuild;
    info["cuda_archs"] = std::string(kCudaArchs);
    info["cuda_runtime"] = cuda_or(std::string(), [] { return cuda::runtime_version(); });
    info["cuda_device_count"] = static_cast<int>(devices.size());
    info["cuda_devices"] = devices;
    return info;
  });
  m.def("supported_isas", [] {
    std::vector<std::string> names;
    for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
      if (isa_supported(isa)) names.push_back(isa_name(isa));
    }
    return names;
  });
  // The OpenMP thread count the CPU kernels will use (torch.set_num_threads changes it when torch
  // and the extension share one OpenMP runtime); per-thread workspace sizes depend on it.
  m.def("max_threads", [] { return omp_get_max_threads(); });
  m.def("get_isa", [] { return std::string(isa_name(active_isa())); });
  // Asks the OS to back a large, freshly allocated CPU buffer with huge pages before it is first
  // written: the first touch of a fresh buffer otherwise costs one page fault per 4 KiB, which
  // for the tens of megabytes of a training step's buffers is a sizeable part of the step.
  // A hint only: ignored where unsupported.
  m.def(
      "advise_huge_pages",
      [](py::handle buffer) {
        const TensorView v = to_view(buffer, "buffer");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (v.defined() && v.device == DeviceType::CPU) {
          const uintptr_t page = 4096, begin = reinterpret_cast<uintptr_t>(v.data);
          const uintptr_t start = (begin + page - 1) / page * page, end = (begin + v.nbytes()) / page * page;
          if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
        }
#else
        (void)v;
#endif
      },
      py::arg("buffer"));
  m.def("set_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); }, py::arg("name"));

  // A FASTRNN_ISA that names no instruction set is ignored, as torch ignores a bad
  // ATEN_CPU_CAPABILITY, and said so once, at import: a typo must not pass for a choice, nor
  // make `import fastrnn` fail (unless warnings are errors, where this one is too).
  if (const char* value = unknown_isa_environment()) {
    const std::string message = std::string("FASTRNN_ISA='") + value +
                                "' names no instruction set; expected generic, avx2 or avx512 (any case), or unset. "
                                "Using " + isa_name(active_isa()) + ", the best this CPU supports.";
    // Attributed to fastrnn._C (so `-W ignore::RuntimeWarning:fastrnn._C` silences it), not to
    // whichever importlib frame happens to be running the import.
    if (PyErr_WarnExplicit(PyExc_RuntimeWarning, message.c_str(), "fastrnn._C", 0, "fastrnn._C", nullptr) != 0) {
      throw py::error_already_set();
    }
  }
}

}  // namespace fastrnn::bindings
