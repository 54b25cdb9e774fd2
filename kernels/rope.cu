// rope.cu — per-head RMSNorm (Qwen3's q_norm / k_norm) fused with NeoX RoPE, including yarn's scaled
// inv_freq and attention_scaling (both from the host RopeTable).
//
// One warp per (row, head); lane l holds the rotation pairs (i, i + d/2) for i = l, l + 32, ... (at most
// kMaxPairs per lane, so d <= 512). Angles are computed in place: pos * inv_freq[i] as an fp32 product
// (as torch), then precise sincosf. In-place on x: read once, written once.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

constexpr int kRopeWarps = 4;
constexpr int kRopeMaxPairs = 8;  // d / 2 <= 32 * 8

// x: (T, ldx), head h of row t at x[t*ldx + h*d]; norm: (d,) or null; inv_freq: (d/2,).
// grid (ceil(n_heads / kRopeWarps), rows strided by gridDim.y); block kRopeWarps * 32.
__global__ void __launch_bounds__(kRopeWarps * 32)
    rope_head_norm_kernel(dev_ptr<float> x, int64_t ldx, int T, int n_heads, int d, dev_ptr<const float> norm,
                          float eps, dev_ptr<const float> inv_freq, float attn_scaling, int pos0,
                          dev_ptr<const int32_t> pos_dev) {
  const int lane = int(threadIdx.x % 32);
  const int h = int(blockIdx.x) * kRopeWarps + int(threadIdx.x / 32);
  if (h >= n_heads) return;  // warp-uniform
  const int half = d / 2;
  const int p0 = pos_dev ? pos_dev[0] : pos0;
  for (int t = int(blockIdx.y); t < T; t += int(gridDim.y)) {
    dev_ptr<float> v = x + (t * ldx + int64_t(h) * d);
    float a[kRopeMaxPairs], b[kRopeMaxPairs];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < kRopeMaxPairs; ++j) {
      const int i = lane + 32 * j;
      a[j] = i < half ? v[i] : 0.0f;
      b[j] = i < half ? v[i + half] : 0.0f;
      ss += a[j] * a[j] + b[j] * b[j];
    }
    if (norm) {
      ss = warp_reduce_sum(ss);
      const float r = 1.0f / sqrtf(ss / float(d) + eps);
#pragma unroll
      for (int j = 0; j < kRopeMaxPairs; ++j) {
        const int i = lane + 32 * j;
        if (i < half) {
          a[j] = a[j] * r * norm[i];
          b[j] = b[j] * r * norm[i + half];
        }
      }
    }
    const float pos = float(p0 + t);
#pragma unroll
    for (int j = 0; j < kRopeMaxPairs; ++j) {
      const int i = lane + 32 * j;
      if (i < half) {
        float s, c;
        sincosf(pos * inv_freq[i], &s, &c);
        c *= attn_scaling;
        s *= attn_scaling;
        v[i] = a[j] * c - b[j] * s;
        v[i + half] = b[j] * c + a[j] * s;
      }
    }
  }
}

void launch_head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const float* norm, float eps,
                           const float* inv_freq, float attn_scaling, int64_t pos0, const int32_t* pos_dev,
                           cudaStream_t stream) {
  const dim3 grid(unsigned((n_heads + kRopeWarps - 1) / kRopeWarps), unsigned(std::min<int64_t>(T, 65535)));
  infer_launch(rope_head_norm_kernel, grid, dim3(kRopeWarps * 32), 0, stream,
               make_dev_ptr(x, size_t((T - 1) * ldx + n_heads * d)), ldx, int(T), int(n_heads), int(d),
               make_dev_ptr(norm, norm ? size_t(d) : 0), eps, make_dev_ptr(inv_freq, size_t(d / 2)), attn_scaling,
               int(pos0), make_dev_ptr(pos_dev, pos_dev ? 1 : 0));
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
