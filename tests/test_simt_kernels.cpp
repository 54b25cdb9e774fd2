// test_simt_kernels.cpp — every CUDA kernel (kernels/*.cu, through the launch wrappers of kernels/kernels.h) run in
// the SIMT emulator against the CPU backend's op, on fresh random inputs of several shapes (odd sizes, strided
// rows, unaligned pointers), under the emulator's schedules (in order, reversed, two random seeds) with no
// diagnostics (races, uninitialized shared memory, out-of-bounds, unwritten outputs).
//
// Tolerances (each op's comment says why): fp32 kernels that only reorder fp32 sums are held to ~1e-5 relative;
// the bf16 tensor-core prefill attention to 2e-2 (bf16 rounds Q, K, V and P to 8 bits); conversions must be
// exact; the device sampler must pick exactly the CPU sampler's token.
//
// Sizes are small: the emulator runs ~10^5-10^6 thread switch points per second.
#include <gtest/gtest.h>

#include "simt_test_util.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/backend_cpu.h"
#include "dtype.h"
#include "kernels/kernels.h"
#include "rope.h"
#include "sampler.h"
#include "simt/runtime.h"

namespace {

using namespace infer::testutil;

constexpr uint64_t kScheduleSeed = 3;  // the random schedule of for_two_schedules

namespace simt = infer::simt;
using infer::DType;

template <class F>
void for_each_schedule(F&& f) {
  for (const simt::Schedule& s : simt::test_schedules()) {
    SCOPED_TRACE("schedule " + s.to_string());
    simt::ScopedSchedule scoped(s);
    f();
  }
}
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = infer::f32_to_bf16(v[i]);
  return b;
}

infer::TensorInfo tensor(const void* data, DType t, std::vector<int64_t> shape) {
  infer::TensorInfo ti;
  ti.name = "t";
  ti.dtype = t;
  ti.shape = std::move(shape);
  ti.data = static_cast<const uint8_t*>(data);
  ti.nbytes = size_t(ti.numel()) * infer::dtype_size(t);
  return ti;
}

// max |a - b| / (atol + rtol |b|) over the elements: <= 1 passes.
double worst_ratio(const float* a, const float* b, size_t n, double atol, double rtol) {
  double w = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    const double r = std::isnan(d) ? INFINITY : d / (atol + rtol * std::fabs(double(b[i])));
    w = std::max(w, r);
  }
  return w;
}

// Compares the rows (T, n) of two strided buffers.
void expect_rows_near(const std::vector<float>& got, const std::vector<float>& want, int64_t T, int64_t n, int64_t ld,
                      double atol, double rtol, const std::string& what) {
  double w = 0;
  for (int64_t t = 0; t < T; ++t) w = std::max(w, worst_ratio(&got[size_t(t * ld)], &want[size_t(t * ld)], size_t(n), atol, rtol));
  EXPECT_LE(w, 1.0) << what << " (error / tolerance = " << w << ")";
}


// ------------------------------------------------------------------ embedding

TEST(SimtKernels, EmbedMatchesCpu) {
  const int64_t vocab = 37;
  for (DType dt : {DType::F32, DType::BF16, DType::F16})
    for (int64_t hidden : {1, 33, 64})
      for (int64_t T : {1, 5}) {
        SCOPED_TRACE(std::string(infer::dtype_name(dt)) + " hidden " + std::to_string(hidden) + " T " + std::to_string(T));
        const auto f = randn(size_t(vocab * hidden), 1);
        std::vector<uint16_t> h16(f.size());
        for (size_t i = 0; i < f.size(); ++i) h16[i] = dt == DType::BF16 ? infer::f32_to_bf16(f[i]) : infer::f32_to_f16(f[i]);
        const void* table = dt == DType::F32 ? static_cast<const void*>(f.data()) : h16.data();
        std::vector<int32_t> ids(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) ids[size_t(t)] = int32_t((t * 11 + 3) % vocab);
        const int64_t ldo = hidden + 3;
        std::vector<float> want(size_t(T * ldo), 0.0f);
        infer::CpuBackend cpu(1);
        cpu.embed(tensor(table, dt, {vocab, hidden}), ids.data(), T, want.data(), ldo);
        for_each_schedule([&] {
          simt::Capture cap;
          std::vector<float> got(want.size(), 0.0f);
          infer::launch_embed(table, dt == DType::F32 ? infer::KType::kF32 : dt == DType::BF16 ? infer::KType::kBF16 : infer::KType::kF16,
                              vocab, hidden, ids.data(), T, got.data(), ldo, nullptr);
          EXPECT_CLEAN(cap);
          EXPECT_EQ(got, want);  // a conversion: exact
        });
      }
}

// ------------------------------------------------------------------ norms

// fp32 sums in another order than the CPU's (which sums squares in double): relative error ~1e-6.
TEST(SimtKernels, RmsNormMatchesCpu) {
  for (int64_t n : {1, 31, 256, 700})
    for (int64_t T : {1, 3}) {
      SCOPED_TRACE("n " + std::to_string(n) + " T " + std::to_string(T));
      const int64_t ld = n + 5;
      const auto x = randn(size_t(T * ld), 2, 3.0f);
      const auto w = randn(size_t(n), 3);
      const auto wb = to_bf16(w);
      std::vector<float> want(x.size(), 0.0f);
      infer::CpuBackend cpu(1);
      cpu.rmsnorm(x.data(), ld, tensor(wb.data(), DType::BF16, {n}), want.data(), ld, T, n, 1e-6f);
      std::vector<float> wf(static_cast<size_t>(n));
      infer::cpu::row_to_f32(wb.data(), DType::BF16, wf.data(), n);
      for_each_schedule([&] {
        simt::Capture cap;
        std::vector<float> got(x.size(), 0.0f);
        infer::launch_rmsnorm(x.data(), ld, wf.data(), got.data(), ld, T, n, 1e-6f, nullptr);
        EXPECT_CLEAN(cap);
        expect_rows_near(got, want, T, n, ld, 1e-6, 1e-5, "rmsnorm");
      });
    }
}

// x += y; out = rmsnorm(x) * w, with out aliasing y (as the CUDA backend fuses it).
TEST(SimtKernels, AddRmsNormMatchesCpu) {
  for (int64_t n : {7, 64, 300})
    for (int64_t T : {1, 4}) {
      SCOPED_TRACE("n " + std::to_string(n) + " T " + std::to_string(T));
      const auto x0 = randn(size_t(T * n), 4);
      const auto y0 = randn(size_t(T * n), 5);
      const auto w = randn(size_t(n), 6);
      std::vector<float> wx = x0, wy = y0;
      infer::CpuBackend cpu(1);
      cpu.add(wx.data(), n, wy.data(), n, T, n);
      cpu.rmsnorm(wx.data(), n, tensor(w.data(), DType::F32, {n}), wy.data(), n, T, n, 1e-5f);
      for_each_schedule([&] {
        simt::Capture cap;
        std::vector<float> x = x0, y = y0;
        infer::launch_add_rmsnorm(x.data(), n, y.data(), n, w.data(), y.data(), n, T, n, 1e-5f, nullptr);
        EXPECT_CLEAN(cap);
        EXPECT_EQ(x, wx);  // the add is exact
        expect_rows_near(y, wy, T, n, n, 1e-6, 1e-5, "add_rmsnorm");
      });
    }
}

// ------------------------------------------------------------------ elementwise

TEST(SimtKernels, ElementwiseMatchCpu) {
  for (int64_t n : {1, 300})
    for (int64_t T : {1, 3}) {
      SCOPED_TRACE("n " + std::to_string(n) + " T " + std::to_string(T));
      const int64_t ld = n + 2;
      const auto a = randn(size_t(T * ld), 7, 4.0f), b = randn(size_t(T * ld), 8), bias = randn(size_t(n), 9);
      infer::CpuBackend cpu(1);
      std::vector<float> add_want = a;
      cpu.add(add_want.data(), ld, b.data(), ld, T, n);
      std::vector<float> bias_want = a;
      cpu.add_bias(bias_want.data(), ld, tensor(bias.data(), DType::F32, {n}), T);
      std::vector<float> sw_want = a;
      cpu.swiglu(sw_want.data(), ld, b.data(), ld, sw_want.data(), ld, T, n);
      for_each_schedule([&] {
        simt::Capture cap;
        std::vector<float> x = a;
        infer::launch_add(x.data(), ld, b.data(), ld, T, n, nullptr);
        EXPECT_EQ(x, add_want);
        x = a;
        infer::launch_add_bias(x.data(), ld, bias.data(), T, n, nullptr);
        EXPECT_EQ(x, bias_want);
        x = a;
        infer::launch_swiglu(x.data(), ld, b.data(), ld, x.data(), ld, T, n, nullptr);  // in place, as the model does
        expect_rows_near(x, sw_want, T, n, ld, 1e-7, 2e-6, "swiglu");  // expf vs std::exp: a few ulp
        EXPECT_CLEAN(cap);
      });
    }
}

// Part 0 is bf16(x) exactly as the CPU rounds; parts 0 + 1 are within 2^-16 relative of x, all three exact
// (to fp32's last bit) for values in the normal range.
TEST(SimtKernels, F32ToBf16SplitsExactly) {
  const int64_t T = 3, K = 70, ld = 75;
  const auto x = randn(size_t(T * ld), 10, 10.0f);
  for_each_schedule([&] {
    for (int parts : {1, 3}) {
      simt::Capture cap;
      std::vector<uint16_t> out(size_t(parts * T * K));
      simt::expect_written(out.data(), out.size(), "out");
      infer::launch_f32_to_bf16(x.data(), ld, T, K, out.data(), parts, nullptr);
      EXPECT_CLEAN(cap);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < K; ++k) {
          const float v = x[size_t(t * ld + k)];
          const size_t i = size_t(t * K + k), n = size_t(T * K);
          ASSERT_EQ(out[i], infer::f32_to_bf16(v));
          if (parts == 3) {
            const float p0 = infer::bf16_to_f32(out[i]), p1 = infer::bf16_to_f32(out[n + i]);
            const float p2 = infer::bf16_to_f32(out[2 * n + i]);
            ASSERT_LE(std::fabs(p0 + p1 - v), std::ldexp(std::fabs(v), -16));
            ASSERT_EQ(double(p0) + double(p1) + double(p2), double(v));
          }
        }
    }
  });
}

// ------------------------------------------------------------------ rope

// Per-head norm + NeoX RoPE vs the CPU (which takes cos/sin in double): fp32 sincosf is within 2 ulp.
TEST(SimtKernels, HeadNormRopeMatchesCpu) {
  infer::RopeScaling yarn;
  yarn.type = "yarn";
  yarn.factor = 4.0;
  yarn.original_max_position_embeddings = 32;
  struct Case {
    int64_t d, heads, T, pos0;
    bool norm, yarn;
  };
  const Case cases[] = {{8, 3, 2, 0, true, false},    {16, 5, 3, 17, false, true}, {64, 2, 1, 1000, true, true},
                        {128, 1, 2, 4095, true, false}, {32, 4, 1, 5, false, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE("d " + std::to_string(c.d) + " heads " + std::to_string(c.heads) + " T " + std::to_string(c.T) +
                 " pos0 " + std::to_string(c.pos0));
    const infer::RopeTable rope = infer::make_rope_table(c.d, 1e6, c.yarn ? yarn : infer::RopeScaling{}, 128);
    const int64_t ld = c.heads * c.d + 4;
    const auto x0 = randn(size_t(c.T * ld), 11);
    const auto nw = randn(size_t(c.d), 12);
    const auto nb = to_bf16(nw);
    std::vector<float> nf(static_cast<size_t>(c.d));
    infer::cpu::row_to_f32(nb.data(), DType::BF16, nf.data(), c.d);
    const auto norm = tensor(nb.data(), DType::BF16, {c.d});
    std::vector<float> want = x0;
    infer::CpuBackend cpu(1);
    cpu.head_norm_rope(want.data(), ld, c.T, c.heads, c.d, c.norm ? &norm : nullptr, 1e-6f, c.pos0, rope);
    for_each_schedule([&] {
      for (bool dev_pos : {false, true}) {
        simt::Capture cap;
        std::vector<float> x = x0;
        const int32_t pos_dev = int32_t(c.pos0);
        infer::launch_head_norm_rope(x.data(), ld, c.T, c.heads, c.d, c.norm ? nf.data() : nullptr, 1e-6f,
                                     rope.inv_freq.data(), rope.attention_scaling, dev_pos ? -1 : c.pos0,
                                     dev_pos ? &pos_dev : nullptr, nullptr);
        EXPECT_CLEAN(cap);
        expect_rows_near(x, want, c.T, c.heads * c.d, ld, 2e-6, 2e-6, "head_norm_rope");
      }
    });
  }
}

// ------------------------------------------------------------------ kv cache

TEST(SimtKernels, KvWriteMatchesCpu) {
  const int64_t n_ctx = 9, width = 40, T = 3, lds = 45;
  const auto src = randn(size_t(T * lds), 13);
  for (int64_t pos0 : {0, 6}) {
    std::vector<float> want(size_t(n_ctx * width), -1.0f);
    infer::CpuBackend cpu(1);
    cpu.kv_write(want.data(), width, pos0, src.data(), lds, T);
    for_each_schedule([&] {
      for (bool dev_pos : {false, true}) {
        simt::Capture cap;
        std::vector<float> cache(want.size(), -1.0f);
        const int32_t pd = int32_t(pos0);
        infer::launch_kv_write(cache.data(), n_ctx, width, dev_pos ? 0 : pos0, dev_pos ? &pd : nullptr, src.data(), lds, T,
                               nullptr);
        EXPECT_CLEAN(cap);
        EXPECT_EQ(cache, want);
      }
    });
  }
  // Writing past the cache is caught (a position bug in the host code would be).
  simt::Capture cap;
  std::vector<float> cache(size_t(n_ctx * width));
  infer::launch_kv_write(cache.data(), n_ctx, width, n_ctx - 1, nullptr, src.data(), lds, T, nullptr);
  EXPECT_TRUE(cap.has(simt::DiagKind::kOutOfBounds));
}

// ------------------------------------------------------------------ gemv

// fp32 accumulation in another order than the CPU's: error <= ~K * 2^-24 * sum |w x|.
TEST(SimtKernels, GemvMatchesCpu) {
  struct Case {
    int64_t N, K;
    DType dt;
    int64_t x_offset;  // floats: 1 makes x unaligned (scalar path)
  };
  const Case cases[] = {{1, 8, DType::BF16, 0},   {17, 64, DType::BF16, 0}, {33, 72, DType::BF16, 0},
                        {5, 65, DType::BF16, 0},  {16, 64, DType::BF16, 1}, {9, 36, DType::F32, 0},
                        {20, 37, DType::F32, 0},  {100, 256, DType::BF16, 0}};
  for (const Case& c : cases) {
    SCOPED_TRACE("N " + std::to_string(c.N) + " K " + std::to_string(c.K) + " " + infer::dtype_name(c.dt) + " offset " +
                 std::to_string(c.x_offset));
    const auto wf = randn(size_t(c.N * c.K), 14);
    const auto wb = to_bf16(wf);
    const void* w = c.dt == DType::BF16 ? static_cast<const void*>(wb.data()) : wf.data();
    std::vector<float> xbuf(size_t(c.K + 4));
    const auto xr = randn(size_t(c.K), 15);
    std::copy(xr.begin(), xr.end(), xbuf.begin() + c.x_offset);
    const float* x = xbuf.data() + c.x_offset;
    std::vector<float> want(size_t(c.N));
    infer::CpuBackend cpu(1);
    cpu.matmul(x, c.K, infer::cpu::Matrix{c.dt, w, c.N, c.K}, want.data(), c.N, 1);
    for_each_schedule([&] {
      simt::Capture cap;
      std::vector<float> y(size_t(c.N));
      simt::expect_written(y.data(), y.size(), "y");
      infer::launch_gemv(w, c.dt == DType::BF16 ? infer::KType::kBF16 : infer::KType::kF32, c.N, c.K, x, y.data(), nullptr);
      EXPECT_CLEAN(cap);
      expect_rows_near(y, want, 1, c.N, c.N, 1e-5, 1e-5, "gemv");
    });
  }
}

// ------------------------------------------------------------------ attention

struct AttnCase {
  int64_t nh, nkv, d, T, pos0;
};

struct AttnData {
  std::vector<float> q, k, v, want;
  int64_t ldq, n_ctx;
};

AttnData attn_data(const AttnCase& c, uint32_t seed) {
  AttnData a;
  a.ldq = c.nh * c.d + 8;  // strided rows
  a.n_ctx = c.pos0 + c.T + 3;
  a.q = randn(size_t(c.T * a.ldq), seed);
  a.k = randn(size_t(a.n_ctx * c.nkv * c.d), seed + 1);
  a.v = randn(size_t(a.n_ctx * c.nkv * c.d), seed + 2);
  a.want.assign(size_t(c.T * a.ldq), 0.0f);
  infer::CpuBackend cpu(1);
  cpu.attention(a.q.data(), a.ldq, a.k.data(), a.v.data(), a.want.data(), a.ldq, c.T, c.pos0, c.nh, c.nkv, c.d,
                1.0f / std::sqrt(float(c.d)));
  return a;
}

infer::AttentionArgs attn_args(const AttnCase& c, const AttnData& a, float* out, const int32_t* pos_dev) {
  return infer::AttentionArgs{a.q.data(), a.ldq, a.k.data(), a.v.data(), a.n_ctx, out, a.ldq, c.T, pos_dev ? 0 : c.pos0,
                              pos_dev, c.nh, c.nkv, c.d, 1.0f / std::sqrt(float(c.d))};
}

std::string attn_name(const AttnCase& c) {
  return "nh " + std::to_string(c.nh) + " nkv " + std::to_string(c.nkv) + " d " + std::to_string(c.d) + " T " +
         std::to_string(c.T) + " pos0 " + std::to_string(c.pos0);
}

// Split-K decode (and the same kernel on several rows, the prefill fallback): only fp32 reordering.
TEST(SimtKernels, AttentionDecodeMatchesCpu) {
  const AttnCase cases[] = {{4, 2, 16, 1, 0},  {4, 2, 16, 1, 6},  {8, 2, 32, 1, 69}, {4, 4, 8, 1, 130},
                            {6, 3, 64, 1, 40}, {2, 1, 128, 1, 9}, {4, 2, 8, 3, 5},   {3, 1, 24, 2, 70}};
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(attn_name(c));
    const AttnData a = attn_data(c, 20);
    for (int splits : {1, 2, 8}) {
      if (c.T > 1 && splits > 1) continue;  // the backend splits single rows only
      SCOPED_TRACE("splits " + std::to_string(splits));
      std::vector<float> partial(size_t(c.T * c.nh * splits * (c.d + 2)));
      for_two_schedules(kScheduleSeed, [&] {
        for (bool dev_pos : {false, true}) {
          simt::Capture cap;
          std::vector<float> out(a.want.size(), 0.0f);
          const int32_t pd = int32_t(c.pos0);
          infer::launch_attention_decode(attn_args(c, a, out.data(), dev_pos ? &pd : nullptr), splits, partial.data(),
                                         nullptr);
          EXPECT_CLEAN(cap);
          expect_rows_near(out, a.want, c.T, c.nh * c.d, a.ldq, 1e-5, 1e-4, "attention_decode");
        }
      });
    }
  }
}

// Flash attention on tensor cores (mma.m16n8k16 through the emulated fragments). bf16 rounds Q, K, V and P to 8
// significant bits (relative 2^-9): observed max |error| 5e-3..1e-2 on outputs of O(1) (printed); tolerance 2e-2.
TEST(SimtKernels, AttentionPrefillMatchesCpu) {
  const AttnCase cases[] = {{2, 1, 16, 5, 0}, {4, 2, 16, 24, 0}, {2, 2, 32, 17, 9}, {2, 1, 64, 70, 3}, {1, 1, 128, 20, 13}};
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(attn_name(c));
    ASSERT_TRUE(infer::attention_prefill_supported(c.d));
    const AttnData a = attn_data(c, 30);
    auto run = [&] {
      simt::Capture cap;
      std::vector<float> out(a.want.size(), 0.0f);
      infer::launch_attention_prefill(attn_args(c, a, out.data(), nullptr), nullptr);
      EXPECT_CLEAN(cap);
      double worst = 0;
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t i = 0; i < c.nh * c.d; ++i)
          worst = std::max(worst, std::fabs(double(out[size_t(t * a.ldq + i)]) - a.want[size_t(t * a.ldq + i)]));
      std::printf("[%s] max |out - cpu| = %.3g\n", attn_name(c).c_str(), worst);
      expect_rows_near(out, a.want, c.T, c.nh * c.d, a.ldq, 2e-2, 2e-2, "attention_prefill");
    };
    if (c.d <= 32)
      for_each_schedule(run);
    else
      run();  // the large tiles: one schedule keeps the suite fast (the small ones cover the schedules)
  }
  EXPECT_FALSE(infer::attention_prefill_supported(8));
  EXPECT_FALSE(infer::attention_prefill_supported(96));
}

// ------------------------------------------------------------------ sampling

// The uniform draw infer::Sampler makes from its seed: libstdc++'s uniform_real_distribution(0, mass) is
// generate_canonical * mass.
double sampler_u(uint64_t seed) {
  std::mt19937_64 rng(seed);
  return std::generate_canonical<double, std::numeric_limits<double>::digits>(rng);
}

TEST(SimtKernels, SampleMatchesCpuSampler) {
  const int64_t V = 300;
  auto logits = randn(size_t(V), 40, 2.0f);
  logits[17] = logits[250] = 9.0f;  // a tie at the top: the lower index wins
  logits[30] = logits[31] = logits[32] = 1.25f;  // ties inside the candidates
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p, min_p;
  };
  const Case cases[] = {{0.0f, 0, 1.0f, 0.0f},  {0.7f, 40, 0.9f, 0.0f}, {1.0f, 5, 1.0f, 0.0f},
                        {1.3f, 0, 0.95f, 0.05f}, {0.9f, 64, 1.0f, 0.1f}, {2.0f, 1, 1.0f, 0.0f}};
  int32_t token = -1;
  for (const Case& c : cases) {
    SCOPED_TRACE("T " + std::to_string(c.temperature) + " top_k " + std::to_string(c.top_k) + " top_p " +
                 std::to_string(c.top_p) + " min_p " + std::to_string(c.min_p));
    for (uint64_t seed : {1u, 2u, 3u, 77u, 1234u}) {
      infer_sampler_params p{};
      p.temperature = c.temperature;
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.min_p = c.min_p;
      p.repetition_penalty = 1.0f;
      p.seed = seed;
      infer::Sampler cpu(p);
      const int32_t want = cpu.sample(logits.data(), int32_t(V));
      infer::SampleArgs a;
      a.temperature = c.temperature;
      a.top_k = c.top_k;
      a.top_p = c.top_p;
      a.min_p = c.min_p;
      a.u = sampler_u(seed);
      auto run = [&] {
        simt::Capture cap;
        infer::launch_sample(logits.data(), V, a, &token, nullptr);
        EXPECT_CLEAN(cap);
        EXPECT_EQ(token, want) << "seed " << seed;
      };
      if (seed == 1)
        for_two_schedules(kScheduleSeed, run);
      else
        run();
    }
  }
}

}  // namespace
