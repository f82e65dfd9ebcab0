#pragma once
// Errors raised by the core. The bindings turn each kind into the Python exception of that
// name, so a failed precondition deep in C++ still reaches the user as a normal exception.
// Never throw from inside an OpenMP parallel region: check everything before the kernel runs.
#include <sstream>
#include <stdexcept>
#include <string>

namespace fastrnn {

enum class ErrorKind { Runtime, Value, Type, NotImplemented };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace fastrnn

#define FASTRNN_CHECK_KIND(kind, cond, ...)                                            \
  do {                                                                                 \
    if (!(cond)) throw ::fastrnn::Error((kind), ::fastrnn::detail::concat(__VA_ARGS__)); \
  } while (0)

// RuntimeError, as torch raises for wrong sizes, devices and most dtype mistakes.
#define FASTRNN_CHECK(cond, ...) FASTRNN_CHECK_KIND(::fastrnn::ErrorKind::Runtime, cond, __VA_ARGS__)
#define FASTRNN_CHECK_VALUE(cond, ...) FASTRNN_CHECK_KIND(::fastrnn::ErrorKind::Value, cond, __VA_ARGS__)
