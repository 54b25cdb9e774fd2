// test_simt_cuda_shim.cpp — the CUDA runtime / cuBLAS shim that runs the CUDA backend's host code in the SIMT
// emulator build (src/cuda/cuda_shim.{h,cpp}). If the shim were lenient where CUDA is strict, host-code bugs would
// pass in CI and fail on a GPU, so each rule is tested: copies check their memory sides, stream capture records
// work (kernel launches included) instead of running it and rejects what a real capture rejects, and cublasGemmEx
// computes cuBLAS's column-major GEMM with its transposes, leading dimensions, types and alpha/beta.
#include <gtest/gtest.h>

#include <cuda_bf16.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda/cuda_api.h"
#include "dtype.h"
#include "kernels/kernels.h"

namespace {

TEST(SimtCudaShim, CopiesCheckTheirMemorySides) {
  float host[4] = {1, 2, 3, 4};
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, sizeof host), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dev, host, sizeof host, cudaMemcpyHostToDevice), cudaSuccess);
  float back[4] = {};
  EXPECT_EQ(cudaMemcpy(back, dev, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back[3], 4.0f);
  // a host pointer where a device one belongs (and the reverse), a copy past the allocation
  EXPECT_EQ(cudaMemcpy(host, back, sizeof host, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(dev, dev, sizeof host, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back, dev, 2 * sizeof back, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  (void)cudaGetLastError();
  EXPECT_EQ(cudaFree(dev), cudaSuccess);
  EXPECT_EQ(cudaFree(dev), cudaErrorInvalidValue);  // double free
  (void)cudaGetLastError();
}

TEST(SimtCudaShim, CaptureRecordsAndReplays) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  void *d = nullptr, *pinned = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&pinned, sizeof(int32_t)), cudaSuccess);
  float* x = static_cast<float*>(d);
  float* y = x + 32;
  for (int i = 0; i < 32; ++i) x[i] = float(i), y[i] = 1.0f;  // emulated device memory is host memory
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  infer::launch_add(y, 32, x, 32, 1, 32, s);                   // a kernel: recorded, not run
  EXPECT_EQ(cudaMemsetAsync(x, 0, 4, s), cudaSuccess);         // recorded
  EXPECT_EQ(y[5], 1.0f) << "nothing ran during the capture";
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t e = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(y[5], 6.0f);
  EXPECT_EQ(x[0], 0.0f);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);  // replays read memory when they run
  EXPECT_EQ(y[5], 11.0f);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);

  // What a real capture rejects: synchronous copies, allocation, copies from pageable memory.
  float pageable = 0;
  for (int what = 0; what < 3; ++what) {
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    void* p = nullptr;
    if (what == 0) EXPECT_EQ(cudaMemcpy(d, &pageable, 4, cudaMemcpyHostToDevice), cudaErrorStreamCaptureUnsupported);
    if (what == 1) EXPECT_EQ(cudaMalloc(&p, 16), cudaErrorStreamCaptureUnsupported);
    if (what == 2)
      EXPECT_EQ(cudaMemcpyAsync(d, &pageable, 4, cudaMemcpyHostToDevice, s), cudaErrorStreamCaptureUnsupported);
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated) << "case " << what;
    EXPECT_EQ(g, nullptr);
    (void)cudaGetLastError();
  }
  // From pinned memory it is a graph node that reads the host value when the graph runs.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(d, pinned, 4, cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  *static_cast<float*>(pinned) = 42.0f;
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(x[0], 42.0f);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaFreeHost(pinned);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// cublasGemmEx vs a plain triple loop over the column-major definition, for every transpose pair.
TEST(SimtCudaShim, GemmFollowsCublasConventions) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const int m = 5, n = 3, k = 7, lda = 9, ldb = 8, ldc = 6;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  void *a = nullptr, *b = nullptr, *c = nullptr;
  ASSERT_EQ(cudaMalloc(&a, 9 * 9 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, 9 * 9 * sizeof(uint16_t) * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&c, ldc * n * sizeof(float)), cudaSuccess);
  for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T})
    for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T})
      for (cudaDataType t : {CUDA_R_32F, CUDA_R_16BF}) {
        SCOPED_TRACE(std::to_string(int(ta)) + std::to_string(int(tb)) + " type " + std::to_string(int(t)));
        std::vector<float> av(81), bv(81), c0(size_t(ldc * n));
        for (auto& v : av) v = infer::bf16_to_f32(infer::f32_to_bf16(nd(rng)));  // exactly representable in both
        for (auto& v : bv) v = infer::bf16_to_f32(infer::f32_to_bf16(nd(rng)));
        for (auto& v : c0) v = nd(rng);
        for (int i = 0; i < 81; ++i) {
          if (t == CUDA_R_32F) {
            static_cast<float*>(a)[i] = av[size_t(i)];
            static_cast<float*>(b)[i] = bv[size_t(i)];
          } else {
            static_cast<uint16_t*>(a)[i] = infer::f32_to_bf16(av[size_t(i)]);
            static_cast<uint16_t*>(b)[i] = infer::f32_to_bf16(bv[size_t(i)]);
          }
        }
        std::copy(c0.begin(), c0.end(), static_cast<float*>(c));
        const float alpha = 0.5f, beta = 2.0f;
        ASSERT_EQ(cublasGemmEx(h, ta, tb, m, n, k, &alpha, a, t, lda, b, t, ldb, &beta, c, CUDA_R_32F, ldc,
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  CUBLAS_STATUS_SUCCESS);
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < m; ++i) {
            double acc = 0;
            for (int p = 0; p < k; ++p) {
              const float x = ta == CUBLAS_OP_N ? av[size_t(i + p * lda)] : av[size_t(p + i * lda)];
              const float y = tb == CUBLAS_OP_N ? bv[size_t(p + j * ldb)] : bv[size_t(j + p * ldb)];
              acc += double(x) * y;
            }
            const float want = alpha * float(acc) + beta * c0[size_t(i + j * ldc)];
            EXPECT_NEAR(static_cast<float*>(c)[i + j * ldc], want, 1e-5f) << i << "," << j;
          }
        for (int j = 0; j < n; ++j)
          for (int i = m; i < ldc; ++i) EXPECT_EQ(static_cast<float*>(c)[i + j * ldc], c0[size_t(i + j * ldc)]) << "padding";
      }
  // a leading dimension too small, a host pointer, mixed input types: rejected as cuBLAS does
  const float one = 1.0f, zero = 0.0f;
  float host[64];
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_32F, m - 1, b, CUDA_R_32F, ldb, &zero,
                         c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, host, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, &zero,
                         c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_32F, lda, b, CUDA_R_16BF, ldb, &zero,
                         c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cublasDestroy(h);
}

}  // namespace
