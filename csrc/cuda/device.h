#pragma once
// What the CUDA runtime reports; safe to call on machines without a GPU or driver.
#include <string>

namespace fastrnn::cuda {

int device_count();                     // 0 when there is no usable device or driver
std::string device_name(int device);    // "" when unavailable
std::string runtime_version();          // "13.0"

}  // namespace fastrnn::cuda
