// test_simt_fp8.cpp — the FP8 block-scaled kernels of kernels/fp8_gemm.cu run in the SIMT emulator against CPU
// references on random inputs: the activation quantisation (DeepSeek act_quant), the w8a8 GEMM on both tensor-core
// paths (Fp8MmaPath::kFp8 = mma.m16n8k32 e4m3 for sm_89/90/120, kBf16 = bf16 tiles in shared memory and
// mma.m16n8k16 for sm_80/86, selected explicitly), and the decode GEMV; odd M, N, K (partial 128-blocks, K not a
// multiple of 16), views whose first row sits inside a scale block, and no emulator diagnostics (races,
// uninitialised shared memory, out-of-bounds, misaligned cp.async/ldmatrix, unwritten outputs).
//
// References and tolerances:
//   - act_quant: a CPU implementation of the same formula (s = amax / 448, q = e4m3_rn(x / s)) with its own e4m3
//     rounding (checked against cuda_fp8.h's conversion below): bytes and scales must be identical.
//   - GEMM: the CPU computes y from the *same* quantised activations in double. The kernel sums each block's exact
//     e4m3 products in fp32 and adds the scaled block sums in fp32: |error| <= ~(128 + KB) 2^-24 sum|terms|, so
//     the tolerance is 1e-5 · sum_k |sa·sw·qa·qw| per output (observed errors are printed).
//   - GEMM against the w8a16 CPU backend (cpu::matmul_fp8: fp32 activations): the difference is the activation
//     quantisation, bounded per output by sum_k |w_k| (2^-4 |x_k| + s_kb 2^-10) (half an e4m3 ulp: 2^-4 relative
//     for normals, s·2^-10 absolute for subnormals) plus the fp32 slack; the observed relative error is printed.
//   - GEMV (w8a16, fp32 x): only fp32 summation order differs from cpu::matmul_fp8: 1e-5 · sum_k |w_k x_k|.
#include <gtest/gtest.h>

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
#include "simt/runtime.h"

namespace {

namespace simt = infer::simt;
using infer::DType;
using infer::Fp8MmaPath;

#define EXPECT_CLEAN(cap) EXPECT_EQ((cap).total(), 0u) << (cap).summary()

template <class F>
void for_schedules(int n, F&& f) {
  const auto all = simt::test_schedules();
  for (int i = 0; i < n && i < int(all.size()); ++i) {
    SCOPED_TRACE("schedule " + all[size_t(i)].to_string());
    simt::ScopedSchedule scoped(all[size_t(i)]);
    f();
  }
}

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
uint8_t e4m3_rne(float v) {
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

TEST(SimtFp8, E4m3RoundingMatchesCudaHeaders) {
  // Every e4m3 value, the midpoints between neighbours (ties), points just beside them, and random values.
  std::vector<float> vals;
  const float* table = infer::cpu::fp8_e4m3_table();
  for (int b = 0; b < 0x7f; ++b) {
    const float lo = table[b], hi = b + 1 < 0x7f ? table[b + 1] : 480.0f;
    const float mid = 0.5f * (lo + hi);
    for (float v : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), 0.75f * lo + 0.25f * hi})
      vals.push_back(v), vals.push_back(-v);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 30.0f);
  for (int i = 0; i < 20000; ++i) vals.push_back(nd(rng) * std::ldexp(1.0f, int(rng() % 24) - 12));
  vals.push_back(1000.0f);
  vals.push_back(-448.5f);
  for (float v : vals) {
    const uint8_t want = e4m3_rne(v);
    const uint8_t got = uint8_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
    ASSERT_EQ(int(got), int(want)) << "v = " << v;
    if (std::fabs(v) <= 448.0f) {  // and it is a nearest e4m3 value
      const double d = std::fabs(double(table[want]) - v);
      for (int b = 0; b < 0x7f; ++b)
        ASSERT_LE(d, std::fabs(double(std::copysign(table[b], v)) - v)) << "v = " << v << " code " << b;
    }
  }
}

// ------------------------------------------------------------------ activation quantisation

struct Quant {
  int64_t M = 0, K = 0, ldq = 0, KB = 0;
  Buf<uint8_t> q;
  Buf<float> s;
};

Quant quant_ref(const float* x, int64_t ldx, int64_t M, int64_t K) {
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

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Activations with a realistic spread: a few large "outlier" channels, some rows scaled up, one all-zero block.
std::vector<float> activations(int64_t M, int64_t K, int64_t ldx, uint32_t seed) {
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

TEST(SimtFp8, ActQuantMatchesDeepSeekFormula) {
  struct Case {
    int64_t M, K, ldx;
  };
  for (const Case c : {Case{1, 16, 16}, Case{3, 100, 103}, Case{5, 128, 128}, Case{4, 300, 301}, Case{70, 200, 200}}) {
    SCOPED_TRACE("M " + std::to_string(c.M) + " K " + std::to_string(c.K) + " ldx " + std::to_string(c.ldx));
    const auto x = activations(c.M, c.K, c.ldx, 11);
    const Quant want = quant_ref(x.data(), c.ldx, c.M, c.K);
    for_schedules(c.M > 8 ? 1 : 4, [&] {
      simt::Capture cap;
      Buf<uint8_t> q(want.q.n, 0xab);  // the padding columns must be written (zero) too
      Buf<float> s(want.s.n);
      simt::expect_written(s.data(), s.n, "s");
      infer::launch_fp8_act_quant(x.data(), c.ldx, c.M, c.K, q.data(), want.ldq, s.data(), nullptr);
      EXPECT_CLEAN(cap);
      EXPECT_EQ(std::memcmp(q.data(), want.q.data(), q.n), 0) << "quantised bytes differ";
      EXPECT_EQ(std::memcmp(s.data(), want.s.data(), s.n * sizeof(float)), 0) << "scales differ";
    });
  }
}

// ------------------------------------------------------------------ FP8 weights

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

std::string shape_name(int64_t M, const Fp8Case& c) {
  return "M " + std::to_string(M) + " N " + std::to_string(c.N) + " K " + std::to_string(c.K) + " row0 " +
         std::to_string(c.r0) + " scales " + infer::dtype_name(c.sd);
}

// ------------------------------------------------------------------ w8a8 GEMM

struct GemmCase {
  int64_t M, N, K, r0, P;  // P: rows of the parent matrix (>= r0 + N)
  DType sd;
};

const GemmCase kGemmCases[] = {
    {2, 8, 16, 0, 8, DType::F32},         // one partial tile everywhere, K = 16
    {17, 64, 128, 0, 64, DType::BF16},    // exact N tile and K block
    {64, 128, 256, 0, 128, DType::F32},   // exact M tile, two N tiles, two K blocks
    {70, 130, 200, 0, 130, DType::BF16},  // partial M, N tiles and partial last K block
    {5, 96, 300, 37, 200, DType::F32},    // a view: rows 37..132 span two scale row blocks
    {3, 20, 100, 120, 160, DType::BF16},  // K = 100 (not a multiple of 16), view straddling row 128
};

TEST(SimtFp8, GemmMatchesCpuOnBothPaths) {
  for (const GemmCase& gc : kGemmCases) {
    Fp8Case c(gc.P, gc.K, gc.r0, gc.N, gc.sd, uint32_t(100 + gc.M));
    SCOPED_TRACE(shape_name(gc.M, c));
    const int64_t ldx = gc.K + 3, ldy = gc.N + 5;
    const auto x = activations(gc.M, gc.K, ldx, uint32_t(200 + gc.N));
    const Quant a = quant_ref(x.data(), ldx, gc.M, gc.K);

    // Reference from the same quantised activations (double), with the sum of |terms| for the tolerance.
    std::vector<double> want(size_t(gc.M * gc.N)), mag(want.size());
    const float* tab = infer::cpu::fp8_e4m3_table();
    for (int64_t m = 0; m < gc.M; ++m)
      for (int64_t n = 0; n < gc.N; ++n) {
        double y = 0, abs = 0;
        for (int64_t k = 0; k < gc.K; ++k) {
          const double t = double(a.s[size_t(m * a.KB + k / 128)]) * tab[a.q[size_t(m * a.ldq + k)]] * c.wv(n, k);
          y += t;
          abs += std::fabs(t);
        }
        want[size_t(m * gc.N + n)] = y;
        mag[size_t(m * gc.N + n)] = abs;
      }
    // The w8a16 CPU backend on the unquantised activations, and the bound of the activation quantisation.
    std::vector<float> w16(size_t(gc.M * ldy), 0.0f);
    infer::cpu::matmul_fp8_serial(x.data(), ldx, c.cpu_view, w16.data(), ldy, gc.M, 0, gc.N);

    for (Fp8MmaPath path : {Fp8MmaPath::kFp8, Fp8MmaPath::kBf16}) {
      SCOPED_TRACE(path == Fp8MmaPath::kFp8 ? "fp8 mma path" : "bf16 mma path");
      for_schedules(gc.M * gc.N > 2000 ? 1 : 2, [&] {
        simt::Capture cap;
        Buf<float> y(size_t(gc.M * ldy), -7.0f);
        for (int64_t m = 0; m < gc.M; ++m) simt::expect_written(y.data() + m * ldy, size_t(gc.N), "y row");
        infer::launch_fp8_gemm(a.q.data(), a.ldq, a.s.data(), gc.M, c.w, y.data(), ldy, path, nullptr);
        EXPECT_CLEAN(cap);
        double worst = 0, worst_rel = 0, worst16 = 0;
        for (int64_t m = 0; m < gc.M; ++m)
          for (int64_t n = 0; n < gc.N; ++n) {
            const double got = y[size_t(m * ldy + n)], ref = want[size_t(m * gc.N + n)];
            const double err = std::fabs(got - ref), tol = 1e-5 * mag[size_t(m * gc.N + n)] + 1e-30;
            worst = std::max(worst, err / tol);
            worst_rel = std::max(worst_rel, err / (mag[size_t(m * gc.N + n)] + 1e-30));
            // against w8a16: sum_k |w| (2^-4 |x| + s 2^-10) + fp32 slack
            double bound = 0, abs16 = 0;
            for (int64_t k = 0; k < gc.K; ++k) {
              const double wk = std::fabs(c.wv(n, k)), xk = std::fabs(x[size_t(m * ldx + k)]);
              bound += wk * (xk / 16.0 + a.s[size_t(m * a.KB + k / 128)] / 1024.0);
              abs16 += wk * xk;
            }
            const double e16 = std::fabs(got - double(w16[size_t(m * ldy + n)]));
            EXPECT_LE(e16, bound + 1e-5 * abs16 + 1e-30) << "vs w8a16 at m " << m << " n " << n;
            worst16 = std::max(worst16, e16 / (abs16 + 1e-30));
          }
        EXPECT_LE(worst, 1.0) << "error / tolerance vs the same-quantisation reference";
        std::printf("[%s %s] max |y - ref| / sum|terms| = %.2g; vs w8a16: max |y - y16| / sum|w x| = %.3g\n",
                    shape_name(gc.M, c).c_str(), path == Fp8MmaPath::kFp8 ? "fp8" : "bf16", worst_rel, worst16);
      });
    }
  }
}

// Both paths give the same numbers up to fp32 summation order (they compute the same exact products).
TEST(SimtFp8, PathsAgree) {
  Fp8Case c(192, 384, 0, 192, DType::BF16, 5);
  const int64_t M = 33;
  const auto x = activations(M, c.K, c.K, 6);
  const Quant a = quant_ref(x.data(), c.K, M, c.K);
  Buf<float> y8(size_t(M * c.N)), y16(size_t(M * c.N));
  infer::launch_fp8_gemm(a.q.data(), a.ldq, a.s.data(), M, c.w, y8.data(), c.N, Fp8MmaPath::kFp8, nullptr);
  infer::launch_fp8_gemm(a.q.data(), a.ldq, a.s.data(), M, c.w, y16.data(), c.N, Fp8MmaPath::kBf16, nullptr);
  double worst = 0, ymax = 0;
  for (size_t i = 0; i < y8.n; ++i) {
    worst = std::max(worst, double(std::fabs(y8[i] - y16[i])));
    ymax = std::max(ymax, double(std::fabs(y8[i])));
  }
  EXPECT_LE(worst, 1e-5 * ymax) << "max |fp8 path - bf16 path| = " << worst << " (max |y| " << ymax << ")";
}

// ------------------------------------------------------------------ decode GEMV (w8a16)

TEST(SimtFp8, GemvMatchesCpuW8a16) {
  struct Case {
    int64_t N, K, r0, P, x_offset;
    DType sd;
  };
  const Case cases[] = {{1, 16, 0, 1, 0, DType::F32},      {7, 100, 0, 7, 0, DType::BF16},
                        {64, 128, 0, 64, 1, DType::F32},   {130, 300, 0, 130, 0, DType::BF16},
                        {45, 256, 100, 200, 0, DType::F32}, {16, 40, 3, 19, 2, DType::BF16}};
  for (const Case& vc : cases) {
    Fp8Case c(vc.P, vc.K, vc.r0, vc.N, vc.sd, uint32_t(300 + vc.N));
    SCOPED_TRACE(shape_name(1, c) + " x offset " + std::to_string(vc.x_offset));
    Buf<float> xb(size_t(vc.K + 8));
    const auto xr = activations(1, vc.K, vc.K, 9);
    std::copy(xr.begin(), xr.end(), xb.data() + vc.x_offset);
    const float* x = xb.data() + vc.x_offset;
    std::vector<float> want(size_t(vc.N));
    infer::cpu::matmul_fp8_serial(x, vc.K, c.cpu_view, want.data(), vc.N, 1, 0, vc.N);
    for_schedules(2, [&] {
      simt::Capture cap;
      Buf<float> y(size_t(vc.N));
      simt::expect_written(y.data(), y.n, "y");
      infer::launch_fp8_gemv(c.w, x, y.data(), nullptr);
      EXPECT_CLEAN(cap);
      for (int64_t n = 0; n < vc.N; ++n) {
        double abs = 0;
        for (int64_t k = 0; k < vc.K; ++k) abs += std::fabs(double(c.wv(n, k)) * x[k]);
        EXPECT_NEAR(y[size_t(n)], want[size_t(n)], 1e-5 * abs + 1e-30) << "n " << n;
      }
    });
  }
}

}  // namespace
