// cuda_shim.cpp — see cuda_shim.h. Host implementations of the CUDA runtime / cuBLAS calls of the CUDA backend,
// for the SIMT emulator build, in namespace infer::cuda_shim (the header's name redirection is off here).
#define INFER_CUDA_SHIM_IMPL
#include "cuda/cuda_shim.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

// The stream hook used by infer_launch (kernels/common.cuh) under INFER_SIMT.
namespace infer::simt {
bool stream_capture_launch(cudaStream_t stream, std::function<void()>& launch);
}

// The opaque handle types of the real headers, defined here.
struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::vector<std::function<void()>> nodes;  // the capture in progress
};
struct CUgraph_st {
  std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> nodes;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace infer::cuda_shim {
namespace {

std::mutex g_mu;  // allocation tables, device settings, capture state
FakeDevice g_device;
ShimStats g_stats;
thread_local cudaError_t t_last_error = cudaSuccess;
std::map<uintptr_t, size_t> g_device_allocs;  // start -> bytes
std::map<uintptr_t, size_t> g_pinned_allocs;
std::vector<CUstream_st*> g_capturing;  // streams with a capture in progress

cudaError_t fail(cudaError_t e) {
  t_last_error = e;
  return e;
}

bool in_table(const std::map<uintptr_t, size_t>& t, const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = t.upper_bound(a);
  if (it == t.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + std::max<size_t>(it->second, 1);
}
bool is_device(const void* p, size_t bytes) {
  std::lock_guard lk(g_mu);
  return in_table(g_device_allocs, p, bytes);
}
bool is_pinned(const void* p, size_t bytes) {
  std::lock_guard lk(g_mu);
  return in_table(g_pinned_allocs, p, bytes);
}

// A call that a real stream capture (global mode) forbids: fails and invalidates the captures in progress.
bool capture_forbids() {
  std::lock_guard lk(g_mu);
  bool any = false;
  for (CUstream_st* s : g_capturing)
    if (s->mode != cudaStreamCaptureModeRelaxed) {
      s->invalidated = true;
      any = true;
    }
  return any;
}

// Runs `work` now, or records it when `stream` is capturing.
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work) {
  if (stream && stream->capturing) {
    stream->nodes.push_back(std::move(work));
    return cudaSuccess;
  }
  work();
  return cudaSuccess;
}

// Checks that [p, p + bytes) is device memory (want_device) or host memory (not a device allocation).
bool side_ok(const void* p, size_t bytes, bool want_device) {
  return want_device ? is_device(p, bytes) : !is_device(p, 1);
}

cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  switch (kind) {
    case cudaMemcpyHostToDevice:
      if (!side_ok(src, bytes, false) || !side_ok(dst, bytes, true)) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyDeviceToHost:
      if (!side_ok(src, bytes, true) || !side_ok(dst, bytes, false)) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyDeviceToDevice:
      if (!side_ok(src, bytes, true) || !side_ok(dst, bytes, true)) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyHostToHost:
      break;
    default:  // cudaMemcpyDefault: any side
      break;
  }
  return cudaSuccess;
}

float load_as_float(const void* base, size_t i, cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(base)[i];
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    default: return 0.0f;
  }
}
void store_float(void* base, size_t i, cudaDataType t, float v) {
  switch (t) {
    case CUDA_R_32F: static_cast<float*>(base)[i] = v; break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16(v); break;
    case CUDA_R_16F: static_cast<__half*>(base)[i] = __float2half(v); break;
    default: break;
  }
}

}  // namespace

FakeDevice fake_device() {
  std::lock_guard lk(g_mu);
  return g_device;
}
void set_fake_device(const FakeDevice& d) {
  std::lock_guard lk(g_mu);
  g_device = d;
}
ShimStats stats() {
  std::lock_guard lk(g_mu);
  ShimStats s = g_stats;
  s.live_allocations = g_device_allocs.size();
  return s;
}

// ------------------------------------------------------------------ runtime

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    default: return "cuda shim error";
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaGetDeviceCount(int* count) {
  const auto d = fake_device();
  *count = d.count_error == cudaSuccess ? d.count : 0;
  return d.count_error == cudaSuccess ? cudaSuccess : fail(d.count_error);
}

cudaError_t cudaSetDevice(int device) {
  const auto d = fake_device();
  if (d.count_error != cudaSuccess) return fail(d.count_error);
  if (device < 0 || device >= d.count) return fail(cudaErrorInvalidDevice);
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  const auto d = fake_device();
  if (device < 0 || device >= d.count) return fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = d.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = d.minor; break;
    case cudaDevAttrMultiProcessorCount: *value = d.sm_count; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 99 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    default: *value = 0; break;
  }
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  const auto d = fake_device();
  if (device < 0 || device >= d.count) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "%s", d.name);
  prop->major = d.major;
  prop->minor = d.minor;
  prop->multiProcessorCount = d.sm_count;
  prop->totalGlobalMem = size_t(8) << 30;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlockOptin = 99 * 1024;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *total = size_t(8) << 30;
  *free = *total;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  *p = std::aligned_alloc(256, std::max<size_t>(256, (bytes + 255) / 256 * 256));
  if (!*p) return fail(cudaErrorMemoryAllocation);
  std::lock_guard lk(g_mu);
  g_device_allocs[reinterpret_cast<uintptr_t>(*p)] = bytes;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  {
    std::lock_guard lk(g_mu);
    if (!g_device_allocs.erase(reinterpret_cast<uintptr_t>(p))) return fail(cudaErrorInvalidValue);
  }
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  *p = std::aligned_alloc(256, std::max<size_t>(256, (bytes + 255) / 256 * 256));
  if (!*p) return fail(cudaErrorMemoryAllocation);
  std::lock_guard lk(g_mu);
  g_pinned_allocs[reinterpret_cast<uintptr_t>(*p)] = bytes;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  {
    std::lock_guard lk(g_mu);
    if (!g_pinned_allocs.erase(reinterpret_cast<uintptr_t>(p))) return fail(cudaErrorInvalidValue);
  }
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  if (const cudaError_t e = check_copy(dst, src, bytes, kind)) return e;
  if (bytes) std::memmove(dst, src, bytes);
  if (kind == cudaMemcpyDeviceToHost) {  // waits for the device like a sync
    std::lock_guard lk(g_mu);
    ++g_stats.host_syncs;
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (const cudaError_t e = check_copy(dst, src, bytes, kind)) return e;
  if (stream && stream->capturing) {
    // A graph's copy node must not touch pageable host memory (the real capture rejects it).
    const bool host_src = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost;
    const bool host_dst = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost;
    if ((host_src && !is_pinned(src, bytes)) || (host_dst && !is_pinned(dst, bytes))) {
      stream->invalidated = true;
      return fail(cudaErrorStreamCaptureUnsupported);
    }
  }
  return enqueue(stream, [dst, src, bytes] {
    if (bytes) std::memmove(dst, src, bytes);
  });
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (bytes && !is_device(p, bytes)) return fail(cudaErrorInvalidValue);
  return enqueue(stream, [p, value, bytes] { std::memset(p, value, bytes); });
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  (void)flags;
  *stream = new CUstream_st;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return fail(cudaErrorInvalidValue);
  {
    std::lock_guard lk(g_mu);
    std::erase(g_capturing, stream);
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream && stream->capturing) {
    stream->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  std::lock_guard lk(g_mu);
  ++g_stats.host_syncs;
  return cudaSuccess;  // everything already ran
}

cudaError_t cudaDeviceSynchronize() {
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  std::lock_guard lk(g_mu);
  ++g_stats.host_syncs;
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream) return fail(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot be captured
  if (stream->capturing) return fail(cudaErrorIllegalState);
  stream->capturing = true;
  stream->invalidated = false;
  stream->mode = mode;
  stream->nodes.clear();
  std::lock_guard lk(g_mu);
  g_capturing.push_back(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  if (!stream || !stream->capturing) return fail(cudaErrorIllegalState);
  stream->capturing = false;
  {
    std::lock_guard lk(g_mu);
    std::erase(g_capturing, stream);
  }
  if (stream->invalidated) {
    stream->nodes.clear();
    return fail(cudaErrorStreamCaptureInvalidated);
  }
  *graph = new CUgraph_st{std::move(stream->nodes)};
  stream->nodes.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  *status = stream && stream->capturing
                ? (stream->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
                : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  if (!graph) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes};
  std::lock_guard lk(g_mu);
  ++g_stats.graphs_instantiated;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return fail(cudaErrorInvalidValue);
  {
    std::lock_guard lk(g_mu);
    ++g_stats.graph_launches;
    g_stats.graph_nodes_run += exec->nodes.size();
  }
  return enqueue(stream, [exec] {
    for (auto& node : exec->nodes) node();
  });
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

// ------------------------------------------------------------------ cuBLAS

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

// C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C, column-major, as cuBLAS: op(A)[i, p] is
// A[i + p*lda] (N) or A[p + i*lda] (T); op(B)[p, j] is B[p + j*ldb] (N) or B[j + p*ldb] (T).
// note: accumulates in double, so the emulated GEMM is at least as accurate as the GPU's fp32 one.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  (void)algo;
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto type_ok = [](cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; };
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) ||
      ldc < std::max(1, m) || !type_ok(Atype) || !type_ok(Btype) || !type_ok(Ctype) || Atype != Btype ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32 &&
       compute != CUBLAS_COMPUTE_32F_FAST_16BF))
    return CUBLAS_STATUS_INVALID_VALUE;
  // Every operand must be device memory (the host-code bug this catches: a host pointer passed to cuBLAS).
  const size_t a_elems = size_t(lda) * size_t(std::max(0, (ta ? m : k) - 1)) + size_t(ta ? k : m);
  const size_t b_elems = size_t(ldb) * size_t(std::max(0, (tb ? k : n) - 1)) + size_t(tb ? n : k);
  const size_t c_elems = size_t(ldc) * size_t(std::max(0, n - 1)) + size_t(m);
  auto esize = [](cudaDataType t) -> size_t { return t == CUDA_R_32F ? 4 : 2; };
  if (m && n && k && (!is_device(A, a_elems * esize(Atype)) || !is_device(B, b_elems * esize(Btype))))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m && n && !is_device(C, c_elems * esize(Ctype))) return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);  // host pointer mode
  auto run = [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int p = 0; p < k; ++p) {
          const size_t ia = ta ? size_t(p) + size_t(i) * lda : size_t(i) + size_t(p) * lda;
          const size_t ib = tb ? size_t(j) + size_t(p) * ldb : size_t(p) + size_t(j) * ldb;
          acc += double(load_as_float(A, ia, Atype)) * double(load_as_float(B, ib, Btype));
        }
        const size_t ic = size_t(i) + size_t(j) * ldc;
        float v = al * float(acc);
        if (be != 0.0f) v += be * load_as_float(C, ic, Ctype);
        store_float(C, ic, Ctype, v);
      }
    std::lock_guard lk(g_mu);
    ++g_stats.gemm_calls;
  };
  enqueue(handle->stream, run);
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace infer::cuda_shim

// ------------------------------------------------------------------ the stream hook for kernel launches

bool infer::simt::stream_capture_launch(cudaStream_t stream, std::function<void()>& launch) {
  if (!stream || !stream->capturing) return false;
  stream->nodes.push_back(std::move(launch));
  return true;
}
