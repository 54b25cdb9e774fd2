// rmsnorm.cu — RMSNorm over rows, optionally fused with the residual add that precedes it in a
// pre-norm block (x += y; out = rmsnorm(x) * w), which saves one read of x.
//
// One block of 256 threads per row; fp32 sum of squares (block_reduce_sum), then out = x * r * w in the
// order the CPU backend uses. Memory-bound: 8 (or 16 fused) bytes per element.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

constexpr int kNormThreads = 256;  // at most; short rows get one thread per element (rounded to a warp)

// x: (T, ldx); y: (T, ldy) when kAdd; w: (n,); out: (T, ldo). grid: rows (strided by gridDim.x).
// note: out may alias y (fused) or x (plain): every element is read and written by the same thread.
template <bool kAdd>
__global__ void __launch_bounds__(kNormThreads) rmsnorm_kernel(dev_ptr<float> x, int64_t ldx, dev_ptr<const float> y,
                                                               int64_t ldy, dev_ptr<const float> w, dev_ptr<float> out,
                                                               int64_t ldo, int n, int T, float eps) {
  for (int t = int(blockIdx.x); t < T; t += int(gridDim.x)) {
    dev_ptr<float> xr = x + t * ldx;
    float ss = 0.0f;
    for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) {
      float v = xr[i];
      if constexpr (kAdd) {
        v += y[t * ldy + i];
        xr[i] = v;
      }
      ss += v * v;
    }
    ss = block_reduce_sum(ss);
    const float r = 1.0f / sqrtf(ss / float(n) + eps);
    for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) out[t * ldo + i] = xr[i] * r * w[i];
  }
}

namespace {
inline dim3 norm_block(int64_t n) { return dim3(unsigned(std::min<int64_t>(kNormThreads, (n + 31) / 32 * 32))); }
}  // namespace

void launch_rmsnorm(const float* x, int64_t ldx, const float* w, float* out, int64_t ldo, int64_t T, int64_t n,
                    float eps, cudaStream_t stream) {
  infer_launch(rmsnorm_kernel<false>, dim3(unsigned(std::min<int64_t>(T, 65535))), norm_block(n), 0, stream,
               make_dev_ptr(const_cast<float*>(x), size_t((T - 1) * ldx + n)), ldx, make_dev_ptr<const float>(nullptr, 0),
               int64_t(0), make_dev_ptr(w, size_t(n)), make_dev_ptr(out, size_t((T - 1) * ldo + n)), ldo, int(n), int(T),
               eps);
}

void launch_add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const float* w, float* out, int64_t ldo,
                        int64_t T, int64_t n, float eps, cudaStream_t stream) {
  infer_launch(rmsnorm_kernel<true>, dim3(unsigned(std::min<int64_t>(T, 65535))), norm_block(n), 0, stream,
               make_dev_ptr(x, size_t((T - 1) * ldx + n)), ldx, make_dev_ptr(y, size_t((T - 1) * ldy + n)), ldy,
               make_dev_ptr(w, size_t(n)), make_dev_ptr(out, size_t((T - 1) * ldo + n)), ldo, int(n), int(T), eps);
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
