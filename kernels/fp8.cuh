// fp8.cuh — e4m3 (float8_e4m3fn) helpers shared by the FP8 kernels (block_gemm.cuh, fp8_gemm.cu, moe.cu).
//
// Numerics: the byte's sign, exponent and mantissa are shifted into f16 bits, which is exactly v · 2^-8 for
// every finite e4m3 value including subnormals, then widened to f32 (exact); callers fold the factor 2^8 into a
// scale. The e4m3 NaN code (0x7f, absent from checkpoints) reads as 480 here, while the fp8 mma path treats it as
// NaN.
#pragma once
#include "common.cuh"

namespace infer {

constexpr int kFp8QBlock = 128;  // DeepSeek / Qwen3-FP8 scale block side (K and N)

// f32 of one f16 bit pattern (low 16 bits of h).
__device__ __forceinline__ float f16_bits_to_f32(uint32_t h) {
  __half_raw r;
  r.x = static_cast<unsigned short>(h & 0xffffu);
  return __half2float(__half(r));
}

// Four e4m3 (byte i of u = element i) as fp32 values v_i · 2^-8, exactly.
__device__ __forceinline__ void e4m3x4_to_f32_scaled(uint32_t u, float (&f)[4]) {
  const uint32_t ev = u & 0x00ff00ffu, od = (u >> 8) & 0x00ff00ffu;                  // elements {0, 2}, {1, 3}
  const uint32_t he = ((ev & 0x00800080u) << 8) | ((ev & 0x007f007fu) << 7);         // f16 bits of v · 2^-8
  const uint32_t ho = ((od & 0x00800080u) << 8) | ((od & 0x007f007fu) << 7);
  f[0] = f16_bits_to_f32(he);
  f[1] = f16_bits_to_f32(ho);
  f[2] = f16_bits_to_f32(he >> 16);
  f[3] = f16_bits_to_f32(ho >> 16);
}

// Four e4m3 as two registers of bf16 pairs (lo: elements 0, 1; hi: 2, 3), each value v_i · 2^-8, exactly
// (at most 4 significant bits: the f32's upper half is the bf16).
__device__ __forceinline__ void e4m3x4_to_bf16x4_scaled(uint32_t u, uint32_t& lo, uint32_t& hi) {
  float f[4];
  e4m3x4_to_f32_scaled(u, f);
  lo = (__float_as_uint(f[0]) >> 16) | (__float_as_uint(f[1]) & 0xffff0000u);
  hi = (__float_as_uint(f[2]) >> 16) | (__float_as_uint(f[3]) & 0xffff0000u);
}

// Σ over 16 e4m3 weights (one 16-byte chunk) times 16 fp32 activations, in units of 2^-8 (see above).
__device__ __forceinline__ float e4m3x16_dot_scaled(const uint4& raw, const float (&xs)[16]) {
  const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
  float d = 0.0f;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    float f[4];
    e4m3x4_to_f32_scaled(u[q], f);
    d = fmaf(f[0], xs[4 * q], d);
    d = fmaf(f[1], xs[4 * q + 1], d);
    d = fmaf(f[2], xs[4 * q + 2], d);
    d = fmaf(f[3], xs[4 * q + 3], d);
  }
  return d;
}

// The 16 activations x[16c .. 16c + 16) that meet chunk c of an e4m3 weight row, zero past K: four float4 loads when
// kVec (x 16-byte aligned) and the chunk is whole, else one guarded load each.
template <bool kVec>
__device__ __forceinline__ void load_x_chunk16(dev_ptr<const float> x, int c, int K, float (&xs)[16]) {
  if (kVec && c * 16 + 16 <= K) {
    dev_ptr<const float4> xv = dev_ptr_cast<const float4>(x);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float4 v = xv[c * 4 + q];
      xs[4 * q] = v.x, xs[4 * q + 1] = v.y, xs[4 * q + 2] = v.z, xs[4 * q + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int q = 0; q < 16; ++q) xs[q] = c * 16 + q < K ? x[c * 16 + q] : 0.0f;
  }
}

}  // namespace infer
