// common.h — error type, status codes and checks used across the runtime.
// Load and config paths throw infer::Error; the C API boundary (api.cpp) turns it into a status code
// and a last-error message. Never used for control flow in the per-token loop.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "infer/infer.h"

namespace infer {

class Error : public std::runtime_error {
 public:
  Error(infer_status code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  infer_status code() const { return code_; }

 private:
  infer_status code_;
};

[[noreturn]] inline void fail(infer_status code, const std::string& msg) { throw Error(code, msg); }
[[noreturn]] inline void fail_format(const std::string& msg) { throw Error(INFER_ERR_FORMAT, msg); }

#define INFER_CHECK(cond, code, msg)            \
  do {                                          \
    if (!(cond)) ::infer::fail((code), (msg));  \
  } while (0)

}  // namespace infer
