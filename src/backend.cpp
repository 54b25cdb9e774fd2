// backend.cpp — choosing a backend by device name.
#include "backend.h"

#include "common.h"
#include "cpu/backend_cpu.h"
#if defined(INFER_HAVE_CUDA)
#include "cuda/backend_cuda.h"
#endif

namespace infer {

std::unique_ptr<Backend> make_backend(const std::string& device, int n_threads) {
  if (device == "cpu") return std::make_unique<CpuBackend>(n_threads);
  if (device == "auto") {
#if defined(INFER_HAVE_CUDA)
    try {
      return std::make_unique<CudaBackend>(CudaOptions::from_env(0));
    } catch (const Error&) {  // no driver, no GPU, too old: the CPU it is
    }
#endif
    return std::make_unique<CpuBackend>(n_threads);
  }
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (device.size() > 5) {
      const std::string n = device.substr(5);
      if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos)
        fail(INFER_ERR_INVALID_ARG, "unknown device '" + device + "' (expected cpu, cuda, cuda:N or auto)");
      index = std::stoi(n);
    }
#if defined(INFER_HAVE_CUDA)
    return std::make_unique<CudaBackend>(CudaOptions::from_env(index));
#else
    (void)index;
    fail(INFER_ERR_UNSUPPORTED, "--device " + device + ": this build has no CUDA backend (built without nvcc); "
                                "use --device cpu");
#endif
  }
  fail(INFER_ERR_INVALID_ARG, "unknown device '" + device + "' (expected cpu, cuda, cuda:N or auto)");
}

}  // namespace infer
