// cuda_api.h — the CUDA runtime and cuBLAS API as the CUDA backend's host code sees it.
//
// With the CUDA toolkit (libinfer built with INFER_HAVE_CUDA) these are the real headers, linked against
// libcudart and libcublas. Under INFER_SIMT (the emulated backend in tests, cmake/simt.cmake) the same
// names are redirected to the runtime shim in cuda_shim.h, which runs everything on the host and the
// kernels in the SIMT emulator. backend_cuda.cpp includes this header and nothing else CUDA-specific, so
// it is the same source in both builds.
#pragma once

#if defined(INFER_SIMT)
#include "cuda/cuda_shim.h"
#else
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif
