// common.cuh — what every kernel file includes: the portability layer (simt.h), the tensor-core and
// async-copy helpers (arch.cuh), warp/block reductions, and the one launch helper used by both builds.
//
// Build: nvcc compiles kernels/*.cu for the GPU; cmake/simt.cmake compiles the same files as C++ with
// -DINFER_SIMT into infer_simt, where infer_launch runs the kernel in the SIMT emulator (docs/simt.md).
#pragma once
#include <algorithm>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "arch.cuh"
#include "simt.h"

namespace infer {

__device__ __forceinline__ unsigned lane_id() { return threadIdx.x % 32u; }

// Sum / max over the 32 lanes of a full warp; every lane gets the result.
__device__ __forceinline__ float warp_reduce_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_reduce_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum / max over a 1-D block whose size is a multiple of 32 (at most 1024); every thread gets the
// result. Must be reached by all threads of the block; may be called repeatedly.
// note: each warp reduces the per-warp partials itself, so no second broadcast barrier is needed; the
// leading barrier keeps a previous call's readers of `partial` apart from this call's writers.
__device__ __forceinline__ float block_reduce_sum(float v) {
  __shared__ float partial[32];
  const unsigned lane = threadIdx.x % 32u, warp = threadIdx.x / 32u, nwarps = blockDim.x / 32u;
  v = warp_reduce_sum(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_reduce_sum(lane < nwarps ? partial[lane] : 0.0f);
}
__device__ __forceinline__ float block_reduce_max(float v) {
  __shared__ float partial[32];
  const unsigned lane = threadIdx.x % 32u, warp = threadIdx.x / 32u, nwarps = blockDim.x / 32u;
  v = warp_reduce_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_reduce_max(lane < nwarps ? partial[lane] : -INFINITY);
}

// Sums acc[r] over the warp for each of R rows (R a power of two <= 32), as the GEMVs need after each lane has
// dotted its slice of R weight rows. Each step halves the values per lane: a lane keeps half of the rows and
// receives its partner's partial sums of them. Returns the sum of row warp_reduced_row<R>(lane) (the same on all
// lanes 32 / R apart).
template <int R>
__device__ __forceinline__ float warp_reduce_rows(float (&acc)[R], unsigned lane) {
#pragma unroll
  for (int step = 0; (R >> (step + 1)) > 0; ++step) {
    const int n = R >> (step + 1), offset = 16 >> step;  // constants once unrolled
    const bool upper = (lane & unsigned(offset)) != 0;
#pragma unroll
    for (int i = 0; i < n; ++i) {
      const float send = upper ? acc[i] : acc[i + n];
      const float keep = upper ? acc[i + n] : acc[i];
      acc[i] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
    }
  }
  float v = acc[0];
#pragma unroll
  for (int offset = 16 / R; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
template <int R>
__device__ __forceinline__ int warp_reduced_row(unsigned lane) {
  int row = 0;
#pragma unroll
  for (int step = 0; (R >> (step + 1)) > 0; ++step)
    if (lane & unsigned(16 >> step)) row += R >> (step + 1);
  return row;
}

}  // namespace infer

// Launches `kernel` on (grid, block) with smem_bytes of dynamic shared memory: <<<>>> under nvcc
// (returns cudaGetLastError()), the emulator under INFER_SIMT (returns cudaSuccess, throws
// infer::simt::LaunchError on diagnostics unless a simt::Capture is alive). Arguments convert to the
// kernel's parameter types as in a real launch.
#if defined(__CUDACC__)
template <class... Params, class... Args>
inline cudaError_t infer_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                                cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, smem_bytes, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
}
#else
namespace infer::simt {
// Implemented by the CUDA runtime shim (src/cuda/cuda_shim.cpp): while `stream` is being captured into a
// CUDA graph, keeps `launch` as a node of that graph (it runs at cudaGraphLaunch) and returns true;
// otherwise returns false and the caller runs the launch now.
bool stream_capture_launch(cudaStream_t stream, std::function<void()>& launch);
}  // namespace infer::simt

template <class... Params, class... Args>
inline cudaError_t infer_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                                cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "infer_launch: argument count does not match the kernel");
  // Streams are ordered no-ops in the emulator: the launch runs now (synchronously), or, while the stream
  // is being captured into a CUDA graph, when the graph is launched.
  struct Ctx {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> params;
  };
  std::function<void()> run = [cfg = ::infer::simt::LaunchConfig{reinterpret_cast<const void*>(kernel), grid, block,
                                                                 smem_bytes},
                               ctx = Ctx{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)}]() mutable {
    ::infer::simt::launch(cfg,
                          [](void* p) {
                            auto* c = static_cast<Ctx*>(p);
                            std::apply(c->kernel, c->params);  // each thread gets its own copy of the arguments
                          },
                          &ctx);
  };
  if (!::infer::simt::stream_capture_launch(stream, run)) run();
  return cudaSuccess;
}
#endif

// Allows `kernel` up to `bytes` of dynamic shared memory (above 48 KiB needs an opt-in on the GPU; the
// emulator allows 227 KiB). Call once before the first launch that needs it.
template <class... Params>
inline void infer_set_max_dynamic_smem(void (*kernel)(Params...), size_t bytes) {
#if defined(__CUDACC__)
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
#else
  (void)kernel, (void)bytes;
#endif
}
