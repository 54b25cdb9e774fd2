// elementwise.cu — residual add, bias add, SwiGLU and the fp32 -> bf16 (hi[, lo]) conversion that feeds
// the cuBLAS prefill GEMM. All memory-bound; grid (column blocks, rows) with both axes strided.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {
constexpr int kThreads = 256;
inline dim3 rows_grid(int64_t T, int64_t n) {
  return dim3(unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 1024)), unsigned(std::min<int64_t>(T, 65535)));
}
// Short rows get one thread per element (rounded to a warp) instead of idle threads.
inline dim3 rows_block(int64_t n) { return dim3(unsigned(std::min<int64_t>(kThreads, (n + 31) / 32 * 32))); }
inline size_t span(int64_t T, int64_t ld, int64_t n) { return size_t((T - 1) * ld + n); }
}  // namespace

#define INFER_ROWS_LOOP(T, n)                                                  \
  for (int t = int(blockIdx.y); t < (T); t += int(gridDim.y))                  \
    for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < (n); i += int(gridDim.x * blockDim.x))

// x: (T, ldx) += y: (T, ldy)
__global__ void add_kernel(dev_ptr<float> x, int64_t ldx, dev_ptr<const float> y, int64_t ldy, int T, int n) {
  INFER_ROWS_LOOP(T, n) x[t * ldx + i] += y[t * ldy + i];
}

// y: (T, ldy) += bias: (n,)
__global__ void add_bias_kernel(dev_ptr<float> y, int64_t ldy, dev_ptr<const float> bias, int T, int n) {
  INFER_ROWS_LOOP(T, n) y[t * ldy + i] += bias[i];
}

// y = silu(g) * u; g, u, y: (T, ld*)
__global__ void swiglu_kernel(dev_ptr<const float> g, int64_t ldg, dev_ptr<const float> u, int64_t ldu, dev_ptr<float> y,
                              int64_t ldy, int T, int n) {
  INFER_ROWS_LOOP(T, n) {
    const float a = g[t * ldg + i];
    y[t * ldy + i] = a / (1.0f + expf(-a)) * u[t * ldu + i];
  }
}

// x: (T, ldx) fp32 -> out: (parts, T, K) bf16; part p is the rounding error of parts 0..p-1, rounded again.
__global__ void f32_to_bf16_kernel(dev_ptr<const float> x, int64_t ldx, dev_ptr<__nv_bfloat16> out, int parts, int T,
                                   int K) {
  INFER_ROWS_LOOP(T, K) {
    float rest = x[t * ldx + i];
    for (int p = 0; p < parts; ++p) {
      const __nv_bfloat16 h = __float2bfloat16_rn(rest);
      out[(int64_t(p) * T + t) * K + i] = h;
      rest -= __bfloat162float(h);
    }
  }
}

#undef INFER_ROWS_LOOP

void launch_add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n, cudaStream_t stream) {
  infer_launch(add_kernel, rows_grid(T, n), rows_block(n), 0, stream, make_dev_ptr(x, span(T, ldx, n)), ldx,
               make_dev_ptr(y, span(T, ldy, n)), ldy, int(T), int(n));
}

void launch_add_bias(float* y, int64_t ldy, const float* bias, int64_t T, int64_t n, cudaStream_t stream) {
  infer_launch(add_bias_kernel, rows_grid(T, n), rows_block(n), 0, stream, make_dev_ptr(y, span(T, ldy, n)), ldy,
               make_dev_ptr(bias, size_t(n)), int(T), int(n));
}

void launch_swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                   int64_t n, cudaStream_t stream) {
  infer_launch(swiglu_kernel, rows_grid(T, n), rows_block(n), 0, stream, make_dev_ptr(g, span(T, ldg, n)), ldg,
               make_dev_ptr(u, span(T, ldu, n)), ldu, make_dev_ptr(y, span(T, ldy, n)), ldy, int(T), int(n));
}

void launch_f32_to_bf16(const float* x, int64_t ldx, int64_t T, int64_t K, uint16_t* out, int parts,
                        cudaStream_t stream) {
  infer_launch(f32_to_bf16_kernel, rows_grid(T, K), rows_block(K), 0, stream, make_dev_ptr(x, span(T, ldx, K)), ldx,
               make_dev_ptr(reinterpret_cast<__nv_bfloat16*>(out), size_t(parts * T * K)), parts, int(T), int(K));
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
