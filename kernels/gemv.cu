// gemv.cu — the decode matrix-vector product y = W x (T = 1): W (N, K) bf16 or f32 row-major, x fp32,
// fp32 accumulation. Decode is memory-bound: every weight byte is read exactly once per step, with
// 16-byte loads (8 bf16 or 4 f32 per lane per load); x (K floats) is re-read from L1/L2 by every warp.
//
// Layout: 4 warps per block, 4 output rows per warp (the rows share the x loads and give each lane four
// independent 16-byte loads in flight), lanes stride over 16-byte chunks of the rows, then one "transposing"
// warp reduction of the four sums (6 shuffles instead of 4 x 5). The scalar variant handles K or pointers that
// do not allow 16-byte loads (odd K, offsets). Bytes per call: N*K*sizeof(W) + K*4 + N*4.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

constexpr int kGemvWarps = 4;
constexpr int kGemvRows = 4;  // output rows per warp (a power of two <= 32)

namespace {
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
}  // namespace

// w: (N, K); x: (K,); y: (N,). grid ceil(N / (kGemvWarps * kGemvRows)).
template <class W, bool kVec>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(dev_ptr<const W> w, dev_ptr<const float> x, dev_ptr<float> y, int N, int K) {
  const int lane = int(threadIdx.x % 32);
  const int n0 = (int(blockIdx.x) * kGemvWarps + int(threadIdx.x / 32)) * kGemvRows;
  if (n0 >= N) return;  // warp-uniform
  float acc[kGemvRows];
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) acc[r] = 0.0f;
  if constexpr (kVec) {
    constexpr int kPer = 16 / int(sizeof(W));  // weights per 16-byte chunk
    const int chunks = K / kPer;
    dev_ptr<const float4> xv = dev_ptr_cast<const float4>(x);
    dev_ptr<const uint4> rows[kGemvRows];
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r)
      rows[r] = dev_ptr_cast<const uint4>(w + int64_t(min(n0 + r, N - 1)) * K);  // a clamped row is not stored
#pragma unroll 4
    for (int c = lane; c < chunks; c += 32) {
      float xs[kPer];
#pragma unroll
      for (int q = 0; q < kPer / 4; ++q) {
        const float4 v = xv[c * (kPer / 4) + q];
        xs[4 * q] = v.x, xs[4 * q + 1] = v.y, xs[4 * q + 2] = v.z, xs[4 * q + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        const uint4 raw = rows[r][c];
        const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
        float a = acc[r];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          if constexpr (sizeof(W) == 2) {  // two bf16 per word, the lower index in the low half
            a = fmaf(__uint_as_float(u[q] << 16), xs[2 * q], a);
            a = fmaf(__uint_as_float(u[q] & 0xffff0000u), xs[2 * q + 1], a);
          } else {
            a = fmaf(__uint_as_float(u[q]), xs[q], a);
          }
        }
        acc[r] = a;
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      const float xk = x[k];
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r)
        if (n0 + r < N) acc[r] = fmaf(to_f32(w[int64_t(n0 + r) * K + k]), xk, acc[r]);
    }
  }
  const float v = warp_reduce_rows<kGemvRows>(acc, unsigned(lane));
  const int r = warp_reduced_row<kGemvRows>(unsigned(lane));
  if (lane % (32 / kGemvRows) == 0 && n0 + r < N) y[n0 + r] = v;
}

void launch_gemv(const void* w, KType type, int64_t N, int64_t K, const float* x, float* y, cudaStream_t stream) {
  const dim3 grid(unsigned((N + kGemvWarps * kGemvRows - 1) / (kGemvWarps * kGemvRows)));
  const dim3 block(kGemvWarps * 32);
  const size_t esize = type == KType::kF32 ? 4 : 2;
  const bool aligned = reinterpret_cast<uintptr_t>(w) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const bool vec = aligned && (K * int64_t(esize)) % 16 == 0;
  auto px = make_dev_ptr(x, size_t(K));
  auto py = make_dev_ptr(y, size_t(N));
  const size_t n = size_t(N * K);
  if (type == KType::kBF16) {
    auto pw = make_dev_ptr(static_cast<const __nv_bfloat16*>(w), n);
    if (vec)
      infer_launch(gemv_kernel<__nv_bfloat16, true>, grid, block, 0, stream, pw, px, py, int(N), int(K));
    else
      infer_launch(gemv_kernel<__nv_bfloat16, false>, grid, block, 0, stream, pw, px, py, int(N), int(K));
  } else {
    auto pw = make_dev_ptr(static_cast<const float*>(w), n);
    if (vec)
      infer_launch(gemv_kernel<float, true>, grid, block, 0, stream, pw, px, py, int(N), int(K));
    else
      infer_launch(gemv_kernel<float, false>, grid, block, 0, stream, pw, px, py, int(N), int(K));
  }
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
