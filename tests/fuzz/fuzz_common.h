// fuzz_common.h — shared bits of the libFuzzer targets (docs/hardening.md).
//
// A target feeds one input to one parser. An infer::Error is the expected outcome for bad input (the library
// reports it to the user); anything else that escapes (another exception type, a crash, a sanitizer report,
// a timeout, a leak) is a finding: libFuzzer saves the input and exits non-zero.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common.h"

namespace infer::fuzz {

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// Reads a file the target needs at start-up (a bundled tokenizer or template); aborts if it cannot.
inline std::string read_or_die(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "fuzz: cannot open %s\n", path.c_str());
    std::abort();
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs f; an infer::Error is a handled rejection of the input.
template <typename F>
void expect_handled(F&& f) {
  try {
    f();
  } catch (const infer::Error&) {
  }
}

// A finding that is not a crash (a broken invariant): print it and abort so libFuzzer keeps the input.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what.c_str());
  std::abort();
}

}  // namespace infer::fuzz
