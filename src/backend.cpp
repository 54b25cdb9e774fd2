// backend.cpp — choosing a backend by device name.
#include "backend.h"

#include "common.h"
#include "cpu/backend_cpu.h"

namespace infer {

std::unique_ptr<Backend> make_backend(const std::string& device, int n_threads) {
  if (device == "cpu" || device == "auto") return std::make_unique<CpuBackend>(n_threads);
  if (device == "cuda" || device.rfind("cuda:", 0) == 0)
    fail(INFER_ERR_UNSUPPORTED, "--device " + device + ": this build has no CUDA backend yet; use --device cpu");
  fail(INFER_ERR_INVALID_ARG, "unknown device '" + device + "' (expected cpu, cuda, cuda:N or auto)");
}

}  // namespace infer
