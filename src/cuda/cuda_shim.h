// cuda_shim.h — the CUDA runtime / cuBLAS entry points the CUDA backend uses, implemented on the host for the
// SIMT emulator build (INFER_SIMT). Included through cuda/cuda_api.h only.
//
// The real CUDA headers provide the types and enums (they compile with the host compiler); each function the
// backend calls is then #defined to its shim in infer::cuda_shim, with the real signature. So
// backend_cuda.cpp is compiled unchanged, and a test binary can hold the real CUDA backend (libcudart) and
// the emulated one side by side: no shim symbol has a CUDA runtime name.
//
// Semantics (docs/simt.md, "The CUDA runtime shim"):
//   - device memory is host memory (256-byte aligned); every allocation is recorded, and cudaMemcpy* check
//     that their pointers lie on the side their cudaMemcpyKind says (a host pointer passed as a device one
//     is an error here, as it would be a crash on the GPU);
//   - streams are ordered no-ops: work runs when it is issued (kernels in the SIMT emulator);
//   - stream capture records kernel launches (kernels/common.cuh asks the shim), async copies, memsets and
//     cuBLAS calls as graph nodes instead of running them; cudaGraphLaunch runs the nodes in order. Calls
//     that a real capture rejects (synchronous copies, allocation, synchronization, copies to or from
//     pageable host memory) fail with cudaErrorStreamCaptureUnsupported and invalidate the capture;
//   - cublasGemmEx runs a reference GEMM with cuBLAS's column-major conventions, transposes, leading
//     dimensions, data types (f32, bf16, f16) and alpha/beta (beta == 0: C is not read).
#pragma once
#include <cublas_v2.h>  // types and enums only
#include <cuda_runtime_api.h>

#include <cstdint>

// Some names are macros in the real headers (cublasCreate -> cublasCreate_v2, ...): drop them first.
#undef cudaGetErrorString
#undef cudaGetLastError
#undef cudaGetDeviceCount
#undef cudaSetDevice
#undef cudaDeviceGetAttribute
#undef cudaGetDeviceProperties
#undef cudaMemGetInfo
#undef cudaMalloc
#undef cudaFree
#undef cudaMallocHost
#undef cudaFreeHost
#undef cudaMemcpy
#undef cudaMemcpyAsync
#undef cudaMemsetAsync
#undef cudaStreamCreateWithFlags
#undef cudaStreamDestroy
#undef cudaStreamSynchronize
#undef cudaDeviceSynchronize
#undef cudaStreamBeginCapture
#undef cudaStreamEndCapture
#undef cudaStreamIsCapturing
#undef cudaGraphInstantiate
#undef cudaGraphLaunch
#undef cudaGraphExecDestroy
#undef cudaGraphDestroy
#undef cublasCreate
#undef cublasDestroy
#undef cublasSetStream
#undef cublasGemmEx

namespace infer::cuda_shim {

// ---- runtime
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMemGetInfo(size_t* free, size_t* total);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// ---- cuBLAS
cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);

// ---- test controls (not CUDA API)

// The device the shim reports. Tests set "no driver", "no GPU" or an old GPU to check the backend's errors.
struct FakeDevice {
  cudaError_t count_error = cudaSuccess;  // what cudaGetDeviceCount returns (cudaErrorNoDevice, ...)
  int count = 1;
  int major = 8, minor = 9;  // compute capability
  int sm_count = 4;
  const char* name = "SIMT emulator";
};
FakeDevice fake_device();
void set_fake_device(const FakeDevice& d);

// Counters since process start.
struct ShimStats {
  uint64_t graphs_instantiated = 0;
  uint64_t graph_launches = 0;
  uint64_t graph_nodes_run = 0;  // nodes run by cudaGraphLaunch
  uint64_t gemm_calls = 0;       // cublasGemmEx calls run (directly or from a graph)
  uint64_t live_allocations = 0; // device allocations not yet freed
  uint64_t host_syncs = 0;       // the host waited for the device: stream/device synchronize, synchronous D2H copy
};
ShimStats stats();

}  // namespace infer::cuda_shim

// Redirect the CUDA names to the shims declared above (not in cuda_shim.cpp, which defines them).
#if !defined(INFER_CUDA_SHIM_IMPL)
#define cudaGetErrorString ::infer::cuda_shim::cudaGetErrorString
#define cudaGetLastError ::infer::cuda_shim::cudaGetLastError
#define cudaGetDeviceCount ::infer::cuda_shim::cudaGetDeviceCount
#define cudaSetDevice ::infer::cuda_shim::cudaSetDevice
#define cudaDeviceGetAttribute ::infer::cuda_shim::cudaDeviceGetAttribute
#define cudaGetDeviceProperties ::infer::cuda_shim::cudaGetDeviceProperties
#define cudaMemGetInfo ::infer::cuda_shim::cudaMemGetInfo
#define cudaMalloc ::infer::cuda_shim::cudaMalloc
#define cudaFree ::infer::cuda_shim::cudaFree
#define cudaMallocHost ::infer::cuda_shim::cudaMallocHost
#define cudaFreeHost ::infer::cuda_shim::cudaFreeHost
#define cudaMemcpy ::infer::cuda_shim::cudaMemcpy
#define cudaMemcpyAsync ::infer::cuda_shim::cudaMemcpyAsync
#define cudaMemsetAsync ::infer::cuda_shim::cudaMemsetAsync
#define cudaStreamCreateWithFlags ::infer::cuda_shim::cudaStreamCreateWithFlags
#define cudaStreamDestroy ::infer::cuda_shim::cudaStreamDestroy
#define cudaStreamSynchronize ::infer::cuda_shim::cudaStreamSynchronize
#define cudaDeviceSynchronize ::infer::cuda_shim::cudaDeviceSynchronize
#define cudaStreamBeginCapture ::infer::cuda_shim::cudaStreamBeginCapture
#define cudaStreamEndCapture ::infer::cuda_shim::cudaStreamEndCapture
#define cudaStreamIsCapturing ::infer::cuda_shim::cudaStreamIsCapturing
#define cudaGraphInstantiate ::infer::cuda_shim::cudaGraphInstantiate
#define cudaGraphLaunch ::infer::cuda_shim::cudaGraphLaunch
#define cudaGraphExecDestroy ::infer::cuda_shim::cudaGraphExecDestroy
#define cudaGraphDestroy ::infer::cuda_shim::cudaGraphDestroy
#define cublasCreate ::infer::cuda_shim::cublasCreate
#define cublasDestroy ::infer::cuda_shim::cublasDestroy
#define cublasSetStream ::infer::cuda_shim::cublasSetStream
#define cublasGemmEx ::infer::cuda_shim::cublasGemmEx
#endif  // !INFER_CUDA_SHIM_IMPL
