// test_cpu_kernels.cpp — the CPU backend's packed GEMM (cpu/gemm.h), attention (cpu/attention.h) and vector
// math against scalar double-precision references, on odd shapes (panel, pair, row-block and key-block edges),
// on every ISA path this CPU has (paths it lacks fall back and are reported) and with 1 and 2 threads.
//
// Tolerances: the fp32 kernels sum K products in fp32, so their error against the exact (double) result is at most
// a few K·2^-24 of Σ|x·w|; we allow 1e-5 of Σ|x·w| (K ≤ 300 here). The bf16 path rounds x to bf16 first: it is
// compared against the exact result on the bf16-rounded x with the same bound, and against the fp32 result with a
// bound of 2^-8 of Σ|x·w| (the rounding of x moves each product by at most 2^-9 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "cpu/simd_math.h"
#include "cpu/thread_pool.h"
#include "dtype.h"

using namespace infer;
using namespace infer::cpu;

namespace {

uint16_t to_bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

struct IsaGuard {
  Isa saved_isa = active_isa();
  Precision saved_prec = precision();
  int64_t saved_work = min_parallel_work();
  ~IsaGuard() {
    set_isa(saved_isa);
    set_precision(saved_prec);
    set_min_parallel_work(saved_work);
  }
};

const Isa kIsas[] = {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16};

struct Case {
  int64_t T, K;
  std::vector<int64_t> rows;  // parts of the concatenation
};

TEST(PackedGemm, MatchesScalarReferenceOnOddShapes) {
  IsaGuard guard;
  set_min_parallel_work(1);  // split even tiny matmuls across the threads
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  const std::vector<Case> cases = {
      {1, 1, {1}},          {1, 2, {47}},           {2, 3, {48}},          {3, 31, {49}},
      {5, 33, {17, 5, 30}}, {8, 64, {100}},         {9, 257, {96, 1}},     {13, 128, {64, 64, 64}},
      {16, 300, {33}},      {17, 65, {48, 48, 2}},  {1, 1024, {200}},      {4, 2, {1, 1}},
      // last panels 32 and 16 columns wide (the rest of N past the 48-column panels, rounded up to 16)
      {3, 130, {72}},       {9, 65, {40, 40}},      {1, 96, {1024}},       {2, 7, {16}},
  };
  ThreadPool pool1(1), pool2(2);
  for (const Case& c : cases) {
    std::vector<std::vector<uint16_t>> wdata;
    std::vector<Matrix> parts;
    int64_t N = 0;
    for (int64_t r : c.rows) {
      auto& w = wdata.emplace_back(size_t(r * c.K));
      for (auto& v : w) v = to_bf16_rne(nd(rng));
      N += r;
    }
    for (size_t i = 0; i < c.rows.size(); ++i) {
      Matrix m;
      m.dtype = DType::BF16;
      m.data = wdata[i].data();
      m.rows = c.rows[i];
      m.cols = c.K;
      parts.push_back(m);
    }
    std::vector<const Matrix*> pp;
    for (auto& m : parts) pp.push_back(&m);
    const int64_t ldx = c.K + 3, ldy = N + 5;
    std::vector<float> x(size_t(c.T * ldx), NAN);  // padding past K is NaN: must never be read
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t k = 0; k < c.K; ++k) x[size_t(t * ldx + k)] = nd(rng);
    auto weight = [&](int64_t n, int64_t k) {
      for (size_t i = 0; i < parts.size(); ++i) {
        if (n < parts[i].rows) return bf16_to_f32(wdata[i][size_t(n * c.K + k)]);
        n -= parts[i].rows;
      }
      return 0.f;
    };
    // Exact references on x and on bf16(x).
    std::vector<double> ref(size_t(c.T * N)), ref_b(size_t(c.T * N)), mag(size_t(c.T * N));
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0, sb = 0, a = 0;
        for (int64_t k = 0; k < c.K; ++k) {
          const float xv = x[size_t(t * ldx + k)], w = weight(n, k);
          s += double(xv) * w;
          sb += double(bf16_to_f32(to_bf16_rne(xv))) * w;
          a += std::fabs(double(xv) * w);
        }
        ref[size_t(t * N + n)] = s;
        ref_b[size_t(t * N + n)] = sb;
        mag[size_t(t * N + n)] = a;
      }
    auto packed = pack_bf16(pool1, pp.data(), int(pp.size()));
    ASSERT_EQ(packed->n, N);
    for (Isa isa : kIsas) {
      for (Precision prec : {Precision::Fp32, Precision::Fast}) {
        set_isa(isa);
        set_precision(prec);
        SCOPED_TRACE(::testing::Message() << "T=" << c.T << " K=" << c.K << " N=" << N << " isa="
                                          << isa_name(active_isa()) << " precision=" << precision_name(prec));
        const bool bf = prec == Precision::Fast && c.T > 1 && active_isa() == Isa::Avx512Bf16;
        std::vector<float> y1(size_t(c.T * ldy), -7.f), y2(size_t(c.T * ldy), -7.f);
        gemm(pool1, x.data(), ldx, *packed, y1.data(), ldy, c.T);
        gemm(pool2, x.data(), ldx, *packed, y2.data(), ldy, c.T);
        for (int64_t t = 0; t < c.T; ++t) {
          for (int64_t n = 0; n < N; ++n) {
            const size_t i = size_t(t * N + n);
            const float got = y1[size_t(t * ldy + n)];
            ASSERT_EQ(got, y2[size_t(t * ldy + n)]) << "1 vs 2 threads at t=" << t << " n=" << n;
            const double want = bf ? ref_b[i] : ref[i];
            ASSERT_LE(std::fabs(got - want), 1e-5 * mag[i] + 1e-30) << "t=" << t << " n=" << n;
            ASSERT_LE(std::fabs(got - ref[i]), std::ldexp(mag[i], -8) + 1e-30) << "t=" << t << " n=" << n;
          }
          for (int64_t n = N; n < ldy; ++n) ASSERT_EQ(y1[size_t(t * ldy + n)], -7.f) << "wrote past N";
        }
      }
    }
  }
}

TEST(PackedGemm, FastPrecisionUsesBf16OnlyWhereTheCpuHasIt) {
  // Not a speed claim: records which path the fast precision takes on this machine (bf16 activations need
  // AVX512-BF16; elsewhere the fp32 kernels run and the result equals the fp32 precision's bit for bit).
  IsaGuard guard;
  std::printf("best ISA on this CPU: %s\n", isa_name(active_isa()));
  ThreadPool pool(1);
  std::vector<uint16_t> w(16 * 4);
  for (size_t i = 0; i < w.size(); ++i) w[i] = to_bf16_rne(1.0f + float(i) / 64);
  Matrix m;
  m.data = w.data();
  m.rows = 16;
  m.cols = 4;
  const Matrix* parts[] = {&m};
  auto p = pack_bf16(pool, parts, 1);
  const float x[8] = {1.0f + 1.0f / 512, 1, 1, 1, 1.0f + 1.0f / 512, 1, 1, 1};  // 1 + 2^-9 rounds to 1 in bf16
  for (Isa isa : kIsas) {
    set_isa(isa);
    float yf[32], yb[32];
    set_precision(Precision::Fp32);
    gemm(pool, x, 4, *p, yf, 16, 2);
    set_precision(Precision::Fast);
    gemm(pool, x, 4, *p, yb, 16, 2);
    if (active_isa() == Isa::Avx512Bf16)
      EXPECT_NE(yf[0], yb[0]) << "bf16 path must round x";
    else
      EXPECT_EQ(std::memcmp(yf, yb, sizeof yf), 0) << isa_name(active_isa());
  }
}

TEST(PackedGemm, SwigluGemmEqualsSiluMulThenGemm) {
  // gemm_swiglu forms silu(g)·u while rounding the activations (bf16 path) or in place of g (fp32 path): the same
  // values as silu_mul followed by gemm, bit for bit, on every ISA, precision and row count (1 = the decode GEMV).
  IsaGuard guard;
  set_min_parallel_work(1);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t I = 70, N = 50, ld = 2 * I + 3;
  std::vector<uint16_t> w(size_t(N * I));
  for (auto& v : w) v = to_bf16_rne(nd(rng));
  Matrix m;
  m.data = w.data();
  m.rows = N;
  m.cols = I;
  const Matrix* parts[] = {&m};
  ThreadPool pool(2);
  auto p = pack_bf16(pool, parts, 1);
  for (int64_t T : {1, 2, 9}) {
    std::vector<float> gu(size_t(T * ld));
    for (auto& v : gu) v = nd(rng);
    for (Isa isa : kIsas)
      for (Precision prec : {Precision::Fp32, Precision::Fast}) {
        set_isa(isa);
        set_precision(prec);
        SCOPED_TRACE(::testing::Message() << "T=" << T << " isa=" << isa_name(active_isa())
                                          << " precision=" << precision_name(prec));
        std::vector<float> a = gu, b = gu, ya(size_t(T * N), -1.f), yb(size_t(T * N), -2.f);
        for (int64_t t = 0; t < T; ++t) silu_mul(a.data() + t * ld, a.data() + t * ld + I, a.data() + t * ld, I);
        gemm(pool, a.data(), ld, *p, ya.data(), N, T);
        gemm_swiglu(pool, b.data(), b.data() + I, ld, *p, yb.data(), N, T);
        ASSERT_EQ(std::memcmp(ya.data(), yb.data(), ya.size() * 4), 0);
      }
  }
}

double attention_ref(const std::vector<float>& q, int64_t ldq, const std::vector<float>& k,
                     const std::vector<float>& v, int64_t ldkv, int64_t t, int64_t h, int64_t pos0, int64_t rep,
                     int64_t d, float scale, int64_t u) {
  const int64_t g = h / rep, nk = pos0 + t + 1;
  std::vector<double> s(static_cast<size_t>(nk));
  double mx = -1e300;
  for (int64_t j = 0; j < nk; ++j) {
    double a = 0;
    for (int64_t i = 0; i < d; ++i) a += double(q[size_t(t * ldq + h * d + i)]) * k[size_t(j * ldkv + g * d + i)];
    s[size_t(j)] = a * scale;
    mx = std::max(mx, s[size_t(j)]);
  }
  double sum = 0, o = 0;
  for (int64_t j = 0; j < nk; ++j) sum += std::exp(s[size_t(j)] - mx);
  for (int64_t j = 0; j < nk; ++j) o += std::exp(s[size_t(j)] - mx) / sum * v[size_t(j * ldkv + g * d + u)];
  return o;
}

TEST(Attention, MatchesScalarReference) {
  IsaGuard guard;
  set_min_parallel_work(1);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  struct A {
    int64_t T, pos0, nh, nkv, d;
  };
  const A cases[] = {{1, 0, 4, 2, 16},  {3, 5, 4, 2, 16},   {9, 0, 8, 2, 32},    {70, 0, 2, 2, 48},
                     {1, 200, 16, 8, 128}, {5, 130, 16, 1, 64}, {4, 3, 4, 4, 8},  {65, 64, 6, 3, 128},
                     {1, 0, 1, 1, 16}};
  ThreadPool pool1(1), pool2(2);
  for (const A& c : cases) {
    const int64_t ldq = c.nh * c.d + 3, ldkv = c.nkv * c.d, n_keys = c.pos0 + c.T, ldo = c.nh * c.d + 1;
    std::vector<float> q(size_t(c.T * ldq)), k(size_t(n_keys * ldkv)), v(size_t(n_keys * ldkv));
    for (auto& x : q) x = nd(rng);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    const float scale = 1.0f / std::sqrt(float(c.d));
    for (Isa isa : kIsas) {
      set_isa(isa);
      SCOPED_TRACE(::testing::Message() << "T=" << c.T << " pos0=" << c.pos0 << " nh=" << c.nh << " nkv=" << c.nkv
                                        << " d=" << c.d << " isa=" << isa_name(active_isa()));
      std::vector<float> o1(size_t(c.T * ldo), -7.f), o2(size_t(c.T * ldo), -7.f);
      attention(pool1, q.data(), ldq, k.data(), v.data(), ldkv, o1.data(), ldo, c.T, c.pos0, c.nh, c.nkv, c.d, scale);
      attention(pool2, q.data(), ldq, k.data(), v.data(), ldkv, o2.data(), ldo, c.T, c.pos0, c.nh, c.nkv, c.d, scale);
      ASSERT_EQ(o1, o2) << "1 vs 2 threads";
      for (int64_t t = 0; t < c.T; ++t) {
        for (int64_t h = 0; h < c.nh; ++h)
          for (int64_t u = 0; u < c.d; ++u) {
            const double want = attention_ref(q, ldq, k, v, ldkv, t, h, c.pos0, c.nh / c.nkv, c.d, scale, u);
            ASSERT_NEAR(o1[size_t(t * ldo + h * c.d + u)], want, 2e-5) << "t=" << t << " h=" << h << " u=" << u;
          }
        ASSERT_EQ(o1[size_t(t * ldo + c.nh * c.d)], -7.f) << "wrote past the heads";
      }
    }
  }
}

TEST(VectorMath, SiluMulMatchesScalar) {
  IsaGuard guard;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 4.f);
  const int64_t n = 1000 + 7;
  std::vector<float> g(n), u(n), y(n);
  for (auto& x : g) x = nd(rng);
  for (auto& x : u) x = nd(rng);
  g[0] = 100.f;
  g[1] = -100.f;
  g[2] = 0.f;
  for (Isa isa : kIsas) {
    set_isa(isa);
    silu_mul(g.data(), u.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double want = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
      ASSERT_NEAR(y[i], want, 1e-6 * std::fabs(want) + 1e-30) << isa_name(active_isa()) << " i=" << i;
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) void exp_vec(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
}

TEST(VectorMath, Exp512WithinTwoUlp) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "this CPU has no AVX-512";
  std::vector<float> xs;
  for (float x = -103.f; x < 88.7f; x += 0.0137f) xs.push_back(x);
  for (float x : {0.f, -0.f, 1e-30f, -1e-30f, 88.72f, -87.3f}) xs.push_back(x);
  xs.resize((xs.size() + 15) / 16 * 16, 0.f);
  std::vector<float> ys(xs.size());
  exp_vec(xs.data(), ys.data(), xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = std::exp(double(xs[i]));
    if (want < 1.2e-38) {  // denormal results: absolute error below the smallest normal
      ASSERT_LE(std::fabs(ys[i] - want), 1.2e-38) << xs[i];
      continue;
    }
    ASSERT_LE(std::fabs(ys[i] - want) / want, 2.5e-7) << xs[i];
  }
  float special[16] = {-INFINITY, INFINITY, NAN, 200.f, -200.f};
  exp_vec(special, special, 16);
  EXPECT_EQ(special[0], 0.f);
  EXPECT_EQ(special[1], INFINITY);
  EXPECT_TRUE(std::isnan(special[2]));
  EXPECT_EQ(special[3], INFINITY);
  EXPECT_EQ(special[4], 0.f);
}
#endif

}  // namespace
