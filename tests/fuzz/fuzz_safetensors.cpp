// fuzz_safetensors.cpp — a safetensors image (8-byte header length, JSON header, data) through the same
// validation a model load runs (SafeTensors::parse_buffer). Every accepted tensor must lie inside the buffer:
// its first and last byte are read, so ASan catches a bad offset the validation let through.
#include "fuzz_common.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infer::fuzz::expect_handled([&] {
    auto st = infer::SafeTensors::parse_buffer(data, size, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : st->tensors()) {
      if (t.nbytes != size_t(t.numel()) * infer::dtype_size(t.dtype))
        infer::fuzz::finding("tensor " + name + ": nbytes disagrees with dtype × shape");
      if (t.nbytes) sink = sink + t.data[0] + t.data[t.nbytes - 1];
    }
    (void)sink;
  });
  return 0;
}
