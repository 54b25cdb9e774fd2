// fp8_test_util.h — helpers of the emulated FP8 kernel tests (test_simt_fp8.cpp, test_simt_moe_gemm.cpp): aligned
// host buffers, an e4m3 rounding written from the format, DeepSeek's act_quant on the host, random activations
// with outliers, and random FP8 "checkpoint" matrices with their device layout and CPU view.
#pragma once
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "cpu/ops_fp8.h"
#include "dtype.h"
#include "kernels/kernels.h"
#include "simt_test_util.h"

namespace infer::fp8test {

// A 64-byte aligned host buffer (the kernels' cp.async and vector loads need 16).
template <class T>
struct Buf {
  std::unique_ptr<T[], void (*)(T*)> p{nullptr, [](T* q) { ::operator delete[](q, std::align_val_t(64)); }};
  size_t n = 0;
  Buf() = default;
  explicit Buf(size_t count, T fill = T{}) : n(count) {
    p.reset(static_cast<T*>(::operator new[](std::max<size_t>(count, 1) * sizeof(T), std::align_val_t(64))));
    std::fill(p.get(), p.get() + n, fill);
  }
  T* data() { return p.get(); }
  const T* data() const { return p.get(); }
  T& operator[](size_t i) { return p[i]; }
  const T& operator[](size_t i) const { return p[i]; }
};

// float -> e4m3fn bits, round to nearest even, saturating to ±448 (written from the format, independent of the
// CUDA headers).
inline uint8_t e4m3_rne(float v) {
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  double a = std::fabs(double(v));
  if (std::isnan(v)) return 0x7f;
  if (a >= 448.0) return sign | 0x7e;
  if (a < std::ldexp(1.0, -6)) {  // subnormal range: multiples of 2^-9
    const double q = std::nearbyint(a * 512.0);  // ties to even (default rounding mode)
    return sign | uint8_t(q);  // q == 8 is the smallest normal's encoding (0x08)
  }
  int e = 0;
  const double m = std::frexp(a, &e);  // a = m · 2^e, m in [0.5, 1)
  double q = std::nearbyint(m * 16.0);  // 1.mmm: 4 significant bits
  if (q == 16.0) q = 8.0, ++e;
  const int exp = e - 1 + 7;  // biased exponent of 1.mmm · 2^(e-1)
  const uint8_t bits = uint8_t((exp << 3) | (int(q) - 8));
  return sign | std::min<uint8_t>(bits, 0x7e);
}

struct Quant {
  int64_t M = 0, K = 0, ldq = 0, KB = 0;
  Buf<uint8_t> q;
  Buf<float> s;
};

inline Quant quant_ref(const float* x, int64_t ldx, int64_t M, int64_t K) {
  Quant r;
  r.M = M, r.K = K, r.ldq = infer::fp8_padded_k(K), r.KB = infer::fp8_scale_cols(K);
  r.q = Buf<uint8_t>(size_t(M * r.ldq), 0);
  r.s = Buf<float>(size_t(M * r.KB), 0.0f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t kb = 0; kb < r.KB; ++kb) {
      const int64_t k1 = std::min(K, (kb + 1) * 128);
      float amax = 0.0f;
      for (int64_t k = kb * 128; k < k1; ++k) amax = std::max(amax, std::fabs(x[m * ldx + k]));
      const float s = amax / 448.0f;
      r.s[size_t(m * r.KB + kb)] = s;
      for (int64_t k = kb * 128; k < k1; ++k) r.q[size_t(m * r.ldq + k)] = amax > 0 ? e4m3_rne(x[m * ldx + k] / s) : 0;
    }
  return r;
}

using testutil::randn;  // simt_test_util.h

// Activations with a realistic spread: a few large "outlier" channels, some rows scaled up, one all-zero block.
inline std::vector<float> activations(int64_t M, int64_t K, int64_t ldx, uint32_t seed) {
  auto x = randn(size_t(M * ldx), seed);
  std::mt19937 rng(seed + 7);
  for (int64_t m = 0; m < M; ++m) {
    const float row_scale = (m % 3 == 1) ? 20.0f : 1.0f;
    for (int64_t k = 0; k < K; ++k) {
      float& v = x[size_t(m * ldx + k)];
      v *= row_scale;
      if (k % 37 == 5) v *= 30.0f;  // outlier channels
    }
  }
  if (M > 2 && K > 128)
    for (int64_t k = 128; k < std::min<int64_t>(K, 256); ++k) x[size_t(2 * ldx + k)] = 0.0f;
  return x;
}

// A random FP8 "checkpoint" matrix (P rows, K cols) quantised per 128x128 block from a normal distribution (scale
// amax / 448, as the generators of real checkpoints), with BF16 or F32 scales; plus the device layout of rows
// [r0, r0 + N): padded to ldw, fp32 scales from scale row r0 / 128 on.
struct Fp8Case {
  int64_t P, K, r0, N, ldw;
  std::vector<uint8_t> q;      // (P, K)
  std::vector<float> s32;      // (ceil(P/128), KB) as fp32
  std::vector<uint16_t> s16;   // bf16 copy (when bf16)
  DType sd;
  Buf<uint8_t> dev_w;
  Buf<float> dev_s;
  infer::Fp8Weight w{};
  infer::cpu::Matrix cpu_view;  // the CPU backend's view of rows [r0, r0 + N)

  Fp8Case(int64_t P_, int64_t K_, int64_t r0_, int64_t N_, DType sd_, uint32_t seed)
      : P(P_), K(K_), r0(r0_), N(N_), ldw(infer::fp8_padded_k(K_)), sd(sd_) {
    const auto f = randn(size_t(P * K), seed, 0.05f);
    const int64_t RB = (P + 127) / 128, KB = (K + 127) / 128;
    s32.resize(size_t(RB * KB));
    s16.resize(s32.size());
    q.resize(size_t(P * K));
    for (int64_t rb = 0; rb < RB; ++rb)
      for (int64_t kb = 0; kb < KB; ++kb) {
        float amax = 0;
        for (int64_t r = rb * 128; r < std::min(P, rb * 128 + 128); ++r)
          for (int64_t k = kb * 128; k < std::min(K, kb * 128 + 128); ++k) amax = std::max(amax, std::fabs(f[size_t(r * K + k)]));
        float s = amax / 448.0f;
        if (sd == DType::BF16) {  // round the stored scale up, as the fixture generator
          uint16_t b = infer::f32_to_bf16(s);
          if (infer::bf16_to_f32(b) < s) ++b;
          s16[size_t(rb * KB + kb)] = b;
          s = infer::bf16_to_f32(b);
        }
        s32[size_t(rb * KB + kb)] = s;
        for (int64_t r = rb * 128; r < std::min(P, rb * 128 + 128); ++r)
          for (int64_t k = kb * 128; k < std::min(K, kb * 128 + 128); ++k)
            q[size_t(r * K + k)] = e4m3_rne(f[size_t(r * K + k)] / s);
      }
    dev_w = Buf<uint8_t>(size_t(N * ldw), 0);
    for (int64_t n = 0; n < N; ++n) std::memcpy(dev_w.data() + n * ldw, q.data() + (r0 + n) * K, size_t(K));
    const int64_t srows = infer::fp8_scale_rows(N, r0 % 128);
    dev_s = Buf<float>(size_t(srows * KB));
    std::memcpy(dev_s.data(), s32.data() + (r0 / 128) * KB, dev_s.n * sizeof(float));
    w = infer::Fp8Weight{dev_w.data(), ldw, dev_s.data(), r0 % 128, N, K};
    cpu_view.dtype = DType::F8_E4M3;
    cpu_view.data = q.data() + r0 * K;
    cpu_view.rows = N;
    cpu_view.cols = K;
    cpu_view.scale = sd == DType::BF16 ? static_cast<const void*>(s16.data()) : s32.data();
    cpu_view.scale_dtype = sd;
    cpu_view.block = 128;
    cpu_view.scale_row0 = r0;
    cpu_view.scale_cols = KB;
  }
  float wv(int64_t n, int64_t k) const {  // dequantised W[n, k] of the view
    return infer::cpu::fp8_e4m3_table()[q[size_t((r0 + n) * K + k)]] * s32[size_t((r0 + n) / 128 * ((K + 127) / 128) + k / 128)];
  }
};

inline std::string shape_name(int64_t M, const Fp8Case& c) {
  return "M " + std::to_string(M) + " N " + std::to_string(c.N) + " K " + std::to_string(c.K) + " row0 " +
         std::to_string(c.r0) + " scales " + infer::dtype_name(c.sd);
}

}  // namespace infer::fp8test
