// test_simt_emulator.cpp — self-tests of the SIMT emulator (src/simt/, kernels/simt.h, kernels/arch.cuh).
//
// Two halves, each under every test schedule (in order, reversed, two random seeds):
//   - correct kernels (kernels/simt_selftest.cu) must match CPU references with no diagnostics:
//     block reduction, tiled transpose, ldmatrix + mma GEMMs in bf16 and e4m3, warp collectives,
//     atomics, dynamic shared memory, cp.async;
//   - deliberately broken kernels must be caught: wrong fragment mapping and wrong shuffle (results
//     differ from the CPU), missing __syncthreads (race), out-of-bounds tile, barrier divergence,
//     deadlock, unwritten output, uninitialized shared memory, missing cp.async wait, …
// The broken-kernel checks assert that the error IS reported, and the correct-kernel checks that
// nothing is, so none of these tests can pass with a detector that does nothing.
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/simt_selftest.h"
#include "simt/runtime.h"

namespace {

namespace simt = infer::simt;
namespace st = infer::simt_selftest;
using simt::DiagKind;

// Runs f under each schedule that kernel tests use.
template <class F>
void for_each_schedule(F&& f) {
  for (const simt::Schedule& s : simt::test_schedules()) {
    SCOPED_TRACE("schedule " + s.to_string());
    simt::ScopedSchedule scoped(s);
    f(s);
  }
}

#define REQUIRE_TRACKING()                                                                   \
  do {                                                                                       \
    if (!simt::access_tracking_enabled()) GTEST_SKIP() << "kernels built without access tracking"; \
  } while (0)

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

uint16_t to_bf16_bits(float f) {
  const __nv_bfloat16 b = __float2bfloat16(f);
  uint16_t bits;
  std::memcpy(&bits, &b, 2);
  return bits;
}
float bf16_bits_to_float(uint16_t bits) {
  const uint32_t u = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint8_t to_e4m3_bits(float f) { return __nv_fp8_e4m3(f).__x; }
float e4m3_bits_to_float(uint8_t bits) {
  __nv_fp8_e4m3 x;
  x.__x = bits;
  return float(x);
}

// C (m, n) = A (m, k) · B with B (n, k) when b_nk else (k, n); double accumulation.
std::vector<float> cpu_gemm(const std::vector<float>& a, const std::vector<float>& b, int m, int n, int k, bool b_nk) {
  std::vector<float> c(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double acc = 0;
      for (int p = 0; p < k; ++p) acc += double(a[size_t(i) * k + p]) * (b_nk ? b[size_t(j) * k + p] : b[size_t(p) * n + j]);
      c[size_t(i) * n + j] = float(acc);
    }
  return c;
}

float max_abs_diff(const std::vector<float>& x, const std::vector<float>& y) {
  float m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::isnan(x[i] - y[i]) ? INFINITY : std::fabs(x[i] - y[i]));
  return m;
}

// ------------------------------------------------------------------ schedules

TEST(SimtSchedule, ParsesAndPrints) {
  EXPECT_EQ(simt::Schedule::parse("inorder").kind, simt::ScheduleKind::kInOrder);
  EXPECT_EQ(simt::Schedule::parse("reverse").kind, simt::ScheduleKind::kReverse);
  const auto r = simt::Schedule::parse("random:42");
  EXPECT_EQ(r.kind, simt::ScheduleKind::kRandom);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_EQ(r.to_string(), "random:42");
  EXPECT_EQ(simt::Schedule::parse("random").seed, 1u);
  EXPECT_THROW(simt::Schedule::parse("sideways"), std::invalid_argument);
  EXPECT_THROW(simt::Schedule::parse("random:x"), std::invalid_argument);
}

// The schedule decides which thread runs next at every switch point.
TEST(SimtSchedule, OrdersThreads) {
  constexpr int kThreads = 64;
  auto probe = [&](const simt::Schedule& s) {
    simt::ScopedSchedule scoped(s);
    std::vector<int> first(kThreads), second(kThreads), counter(2, 0);
    st::launch_schedule_probe(first.data(), second.data(), counter.data(), kThreads);
    std::vector<int> sorted = first;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int> iota(kThreads);
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(sorted, iota) << "each thread arrives exactly once";
    return std::make_pair(first, second);
  };
  std::vector<int> iota(kThreads), rev(kThreads);
  std::iota(iota.begin(), iota.end(), 0);
  for (int t = 0; t < kThreads; ++t) rev[size_t(t)] = kThreads - 1 - t;

  const auto in = probe(simt::Schedule{simt::ScheduleKind::kInOrder, 0});
  EXPECT_EQ(in.first, iota);
  EXPECT_EQ(in.second, iota);
  const auto re = probe(simt::Schedule{simt::ScheduleKind::kReverse, 0});
  EXPECT_EQ(re.first, rev);
  EXPECT_EQ(re.second, rev);
  const auto r1 = probe(simt::Schedule{simt::ScheduleKind::kRandom, 1});
  const auto r1b = probe(simt::Schedule{simt::ScheduleKind::kRandom, 1});
  const auto r2 = probe(simt::Schedule{simt::ScheduleKind::kRandom, 2});
  EXPECT_EQ(r1, r1b) << "a seed reproduces its interleaving";
  EXPECT_NE(r1.first, iota);
  EXPECT_NE(r1.first, rev);
  EXPECT_NE(r1.first, r2.first);
  EXPECT_NE(r1.second, iota);
}

// ------------------------------------------------------------------ correct kernels

TEST(SimtKernels, BlockReduceMatchesCpu) {
  const int n = 5000, blocks = 7;
  const auto x = random_floats(size_t(n), 1);
  for (int threads : {32, 96, 256, 1024}) {
    SCOPED_TRACE("block " + std::to_string(threads));
    std::vector<double> ref(static_cast<size_t>(blocks), 0.0);
    for (int i = 0; i < n; ++i) ref[size_t((i / threads) % blocks)] += x[size_t(i)];
    for_each_schedule([&](const simt::Schedule&) {
      simt::Capture cap;
      std::vector<float> sums(static_cast<size_t>(blocks));
      simt::expect_written(sums.data(), sums.size(), "sums");
      st::launch_block_sum(x.data(), sums.data(), n, blocks, threads);
      EXPECT_EQ(cap.total(), 0u) << cap.summary();
      for (int b = 0; b < blocks; ++b) EXPECT_NEAR(sums[size_t(b)], ref[size_t(b)], 1e-3) << "block " << b;
    });
  }
}

TEST(SimtKernels, TransposeMatchesCpu) {
  const int rows = 40, cols = 72;  // edge tiles on both axes
  const auto in = random_floats(size_t(rows) * cols, 2);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> out(in.size());
    simt::expect_written(out.data(), out.size(), "out");
    st::launch_transpose(in.data(), out.data(), rows, cols, st::TransposeVariant::kCorrect);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) ASSERT_EQ(out[size_t(c) * rows + r], in[size_t(r) * cols + c]);
  });
}

TEST(SimtKernels, TransposeOnSeveralWorkerThreads) {
  const int saved = simt::worker_threads();
  const int rows = 96, cols = 128;
  const auto in = random_floats(size_t(rows) * cols, 3);
  for (int threads : {1, 3}) {
    simt::set_worker_threads(threads);
    simt::Capture cap;
    std::vector<float> out(in.size());
    st::launch_transpose(in.data(), out.data(), rows, cols, st::TransposeVariant::kCorrect);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) ASSERT_EQ(out[size_t(c) * rows + r], in[size_t(r) * cols + c]);
  }
  simt::set_worker_threads(saved);
}

TEST(SimtKernels, WarpScanMatchesCpu) {
  const int n = 256;
  std::vector<int> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) x[size_t(i)] = (i * 37) % 11 - 5;
  std::vector<int> ref(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ref[size_t(i)] = x[size_t(i)] + (i % 32 ? ref[size_t(i - 1)] : 0);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<int> y(static_cast<size_t>(n));
    st::launch_warp_scan(x.data(), y.data(), n, /*broken=*/false);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    EXPECT_EQ(y, ref);
  });
}

struct GemmCase {
  int m, n, k;
};

TEST(SimtKernels, MmaBf16MatchesCpuGemm) {
  for (const GemmCase g : {GemmCase{16, 8, 16}, GemmCase{48, 24, 64}}) {
    SCOPED_TRACE("gemm " + std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k));
    const auto af = random_floats(size_t(g.m) * g.k, 10), bf = random_floats(size_t(g.n) * g.k, 11);
    std::vector<uint16_t> a(af.size()), b_nk(bf.size()), b_kn(bf.size());
    std::vector<float> ar(af.size()), br_nk(bf.size()), br_kn(bf.size());
    for (size_t i = 0; i < af.size(); ++i) ar[i] = bf16_bits_to_float(a[i] = to_bf16_bits(af[i]));
    for (int j = 0; j < g.n; ++j)
      for (int p = 0; p < g.k; ++p) {
        const uint16_t bits = to_bf16_bits(bf[size_t(j) * g.k + p]);
        b_nk[size_t(j) * g.k + p] = b_kn[size_t(p) * g.n + j] = bits;
        br_nk[size_t(j) * g.k + p] = br_kn[size_t(p) * g.n + j] = bf16_bits_to_float(bits);
      }
    const auto ref = cpu_gemm(ar, br_nk, g.m, g.n, g.k, true);
    ASSERT_EQ(ref, cpu_gemm(ar, br_kn, g.m, g.n, g.k, false));
    for_each_schedule([&](const simt::Schedule&) {
      simt::Capture cap;
      std::vector<float> c1(ref.size()), c2(ref.size()), c3(ref.size());
      simt::expect_written(c1.data(), c1.size(), "c");
      st::launch_mma_gemm_bf16(a.data(), b_nk.data(), c1.data(), g.m, g.n, g.k, /*b_nk=*/true);
      simt::expect_written(c2.data(), c2.size(), "c");
      st::launch_mma_gemm_bf16(a.data(), b_kn.data(), c2.data(), g.m, g.n, g.k, /*b_nk=*/false);
      simt::expect_written(c3.data(), c3.size(), "c");
      st::launch_mma_direct_bf16(a.data(), b_nk.data(), c3.data(), g.m, g.n, g.k, /*broken=*/false);
      EXPECT_EQ(cap.total(), 0u) << cap.summary();
      EXPECT_LT(max_abs_diff(c1, ref), 1e-4f) << "ldmatrix + mma, B (n, k)";
      EXPECT_LT(max_abs_diff(c2, ref), 1e-4f) << "ldmatrix.trans + mma, B (k, n)";
      EXPECT_LT(max_abs_diff(c3, ref), 1e-4f) << "fragments from global memory";
    });
  }
}

TEST(SimtKernels, MmaE4m3MatchesCpuGemm) {
  const int m = 32, n = 16, k = 64;
  const auto af = random_floats(size_t(m) * k, 20, -2.0f, 2.0f), bf = random_floats(size_t(n) * k, 21, -2.0f, 2.0f);
  std::vector<uint8_t> a(af.size()), b(bf.size());
  std::vector<float> ar(af.size()), br(bf.size());
  for (size_t i = 0; i < af.size(); ++i) ar[i] = e4m3_bits_to_float(a[i] = to_e4m3_bits(af[i]));
  for (size_t i = 0; i < bf.size(); ++i) br[i] = e4m3_bits_to_float(b[i] = to_e4m3_bits(bf[i]));
  const auto ref = cpu_gemm(ar, br, m, n, k, true);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> c1(ref.size()), c2(ref.size());
    st::launch_mma_gemm_e4m3(a.data(), b.data(), c1.data(), m, n, k);
    st::launch_mma_direct_e4m3(a.data(), b.data(), c2.data(), m, n, k, /*broken=*/false);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    EXPECT_LT(max_abs_diff(c1, ref), 1e-3f) << "ldmatrix + mma.m16n8k32";
    EXPECT_LT(max_abs_diff(c2, ref), 1e-3f) << "fragments from global memory";
  });
}

TEST(SimtKernels, WarpCollectivesFollowCudaSemantics) {
  constexpr int kThreads = 64, P = st::kShuffleProbes;
  unsigned ballot = 0;
  for (unsigned l = 0; l < 32; l += 3) ballot |= 1u << l;
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<int> out(static_cast<size_t>(kThreads) * P);
    st::launch_shuffle_probe(out.data(), kThreads);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int t = 0; t < kThreads; ++t) {
      SCOPED_TRACE("thread " + std::to_string(t));
      const int l = t % 32;
      const int* o = &out[size_t(t) * P];
      EXPECT_EQ(o[0], ((l + 3) % 32) * 10) << "__shfl_sync";
      EXPECT_EQ(o[1], (l & ~7) + 2) << "__shfl_sync width 8";
      EXPECT_EQ(o[2], l - 3 >= (l & ~15) ? l - 3 : l) << "__shfl_up_sync width 16";
      EXPECT_EQ(o[3], l + 5 < (l & ~15) + 16 ? l + 5 : l) << "__shfl_down_sync width 16";
      EXPECT_EQ(o[4], l < 16 ? l : (l ^ 17)) << "__shfl_xor_sync width 16";
      EXPECT_EQ(unsigned(o[5]), ballot) << "__ballot_sync";
      EXPECT_EQ(o[6], 1) << "__any_sync";
      EXPECT_EQ(o[7], 0) << "__all_sync";
      EXPECT_EQ(o[8], 1) << "__all_sync";
      EXPECT_EQ(unsigned(o[9]), 0xffffffffu) << "__activemask";
      EXPECT_EQ(o[10], 31 * 32 / 2) << "__reduce_add_sync";
      EXPECT_EQ(o[11], 12) << "__reduce_max_sync";
      EXPECT_EQ(o[12], l < 16 ? 115 : 216) << "disjoint masks";
      EXPECT_EQ(o[13], l < 31 ? l + 1 : l) << "__shfl_down_sync double";
    }
  });
}

TEST(SimtKernels, AtomicsAreAtomicAndNotRaces) {
  const int n = 1000, bins = 10;
  std::vector<int> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) x[size_t(i)] = (i * 7919) % 100;
  const long long sum = std::accumulate(x.begin(), x.end(), 0LL);
  std::vector<int> ref_hist(static_cast<size_t>(bins), 0);
  for (int v : x) ++ref_hist[size_t(v % bins)];
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<int> g = {0, 0, INT_MIN, INT_MAX, 0, 0, 0}, hist(static_cast<size_t>(bins), 0);
    st::launch_atomics(x.data(), n, g.data(), hist.data(), bins, 5);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    float fsum;
    std::memcpy(&fsum, &g[0], 4);
    EXPECT_EQ(double(fsum), double(sum));
    EXPECT_EQ(g[1], n);
    EXPECT_EQ(g[2], *std::max_element(x.begin(), x.end()));
    EXPECT_EQ(g[3], *std::min_element(x.begin(), x.end()));
    EXPECT_EQ(g[4], n) << "atomicCAS loop";
    EXPECT_EQ(g[5], 12345) << "atomicExch";
    EXPECT_EQ(g[6], sum) << "unsigned atomicAdd";
    EXPECT_EQ(hist, ref_hist);
  });
}

TEST(SimtKernels, DynamicSharedMemory) {
  const int per_block = 100, blocks = 3;
  const auto x = random_floats(size_t(per_block) * blocks, 4);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> y(x.size());
    simt::expect_written(y.data(), y.size(), "y");
    st::launch_dynamic_smem_reverse(x.data(), y.data(), per_block, blocks, /*oob=*/false);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int b = 0; b < blocks; ++b)
      for (int i = 0; i < per_block; ++i)
        ASSERT_EQ(y[size_t(b * per_block + i)], x[size_t(b * per_block + per_block - 1 - i)]);
  });
}

TEST(SimtKernels, SyncthreadsReductions) {
  constexpr int kThreads = 96;
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<int> out(static_cast<size_t>(kThreads) * 3);
    st::launch_sync_reductions(out.data(), kThreads);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_EQ(out[size_t(t) * 3 + 0], 32) << "__syncthreads_count";
      EXPECT_EQ(out[size_t(t) * 3 + 1], 1) << "__syncthreads_and";
      EXPECT_EQ(out[size_t(t) * 3 + 2], 1) << "__syncthreads_or";
    }
  });
}

TEST(SimtKernels, WarpSynchronousExchangeWithSyncwarp) {
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<int> y(64);
    st::launch_warp_exchange(y.data(), /*syncwarp=*/true);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int t = 0; t < 64; ++t) EXPECT_EQ(y[size_t(t)], (t ^ 1) * 3);
  });
}

TEST(SimtKernels, CpAsyncStaging) {
  const int blocks = 3;
  const auto x = random_floats(size_t(blocks) * 64, 5);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> y(x.size());
    st::launch_cp_async_stage(x.data(), y.data(), blocks, /*wait=*/true);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
    for (int b = 0; b < blocks; ++b)
      for (int i = 0; i < 64; ++i) ASSERT_EQ(y[size_t(b * 64 + i)], x[size_t(b * 64 + 63 - i)]);
  });
}

TEST(SimtKernels, AlignedVectorLoads) {
  const int n = 64;
  const auto x = random_floats(size_t(n) + 4, 6);
  simt::Capture cap;
  std::vector<float> y(static_cast<size_t>(n));
  st::launch_vec4_copy(x.data(), y.data(), n, 4);
  EXPECT_EQ(cap.total(), 0u) << cap.summary();
  for (int i = 0; i < n; ++i) ASSERT_EQ(y[size_t(i)], x[size_t(i + 4)]);
}

// ------------------------------------------------------------------ broken kernels must be caught

TEST(SimtCatches, WrongMmaFragmentMapping) {
  const int m = 32, n = 16;
  for (const bool fp8 : {false, true}) {
    SCOPED_TRACE(fp8 ? "e4m3" : "bf16");
    const int k = fp8 ? 64 : 32;
    const auto af = random_floats(size_t(m) * k, 30), bf = random_floats(size_t(n) * k, 31);
    std::vector<float> ar(af.size()), br(bf.size());
    std::vector<uint16_t> a16(af.size()), b16(bf.size());
    std::vector<uint8_t> a8(af.size()), b8(bf.size());
    for (size_t i = 0; i < af.size(); ++i)
      ar[i] = fp8 ? e4m3_bits_to_float(a8[i] = to_e4m3_bits(af[i])) : bf16_bits_to_float(a16[i] = to_bf16_bits(af[i]));
    for (size_t i = 0; i < bf.size(); ++i)
      br[i] = fp8 ? e4m3_bits_to_float(b8[i] = to_e4m3_bits(bf[i])) : bf16_bits_to_float(b16[i] = to_bf16_bits(bf[i]));
    const auto ref = cpu_gemm(ar, br, m, n, k, true);
    for_each_schedule([&](const simt::Schedule&) {
      std::vector<float> good(ref.size()), bad(ref.size());
      if (fp8) {
        st::launch_mma_direct_e4m3(a8.data(), b8.data(), good.data(), m, n, k, false);
        st::launch_mma_direct_e4m3(a8.data(), b8.data(), bad.data(), m, n, k, true);
      } else {
        st::launch_mma_direct_bf16(a16.data(), b16.data(), good.data(), m, n, k, false);
        st::launch_mma_direct_bf16(a16.data(), b16.data(), bad.data(), m, n, k, true);
      }
      EXPECT_LT(max_abs_diff(good, ref), 1e-3f) << "the correct mapping passes";
      EXPECT_GT(max_abs_diff(bad, ref), 0.1f) << "the wrong mapping must give wrong results";
    });
  }
}

TEST(SimtCatches, WrongShuffle) {
  const int n = 128;
  std::vector<int> x(static_cast<size_t>(n), 1), ref(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ref[size_t(i)] = i % 32 + 1;
  for_each_schedule([&](const simt::Schedule&) {
    std::vector<int> good(static_cast<size_t>(n)), bad(static_cast<size_t>(n));
    st::launch_warp_scan(x.data(), good.data(), n, false);
    st::launch_warp_scan(x.data(), bad.data(), n, true);
    EXPECT_EQ(good, ref);
    EXPECT_NE(bad, ref) << "a scan that adds the own value for lanes < offset must differ from the CPU";
  });
}

TEST(SimtCatches, MissingSyncthreadsIsARace) {
  const int rows = 64, cols = 64;
  const auto in = random_floats(size_t(rows) * cols, 7);
  int wrong_schedules = 0;
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> out(in.size());
    st::launch_transpose(in.data(), out.data(), rows, cols, st::TransposeVariant::kNoSync);
    bool wrong = false;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) wrong |= out[size_t(c) * rows + r] != in[size_t(r) * cols + c];
    wrong_schedules += wrong;
    if (simt::access_tracking_enabled()) {
      EXPECT_GT(cap.count(DiagKind::kRace), 0u) << cap.summary();
      const auto d = cap.diagnostics();
      ASSERT_FALSE(d.empty());
      EXPECT_NE(d[0].message.find("'tile'"), std::string::npos) << d[0].message;
      EXPECT_NE(d[0].kernel.find("simt_selftest_transpose_kernel"), std::string::npos) << d[0].kernel;
    }
  });
  EXPECT_GT(wrong_schedules, 0) << "some schedule must also expose the missing barrier in the results";
}

TEST(SimtCatches, MissingSyncwarpIsARace) {
  REQUIRE_TRACKING();
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<int> y(64);
    st::launch_warp_exchange(y.data(), /*syncwarp=*/false);
    EXPECT_GT(cap.count(DiagKind::kRace), 0u) << cap.summary();
  });
}

TEST(SimtCatches, OutOfBoundsTile) {
  const int rows = 40, cols = 40;
  const auto in = random_floats(size_t(rows) * cols, 8);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> out(in.size());
    st::launch_transpose(in.data(), out.data(), rows, cols, st::TransposeVariant::kNoGuard);
    EXPECT_GT(cap.count(DiagKind::kOutOfBounds), 0u) << cap.summary();
  });
}

TEST(SimtCatches, OutOfBoundsDynamicSharedMemory) {
  REQUIRE_TRACKING();
  const auto x = random_floats(200, 9);
  simt::Capture cap;
  std::vector<float> y(x.size());
  st::launch_dynamic_smem_reverse(x.data(), y.data(), 100, 2, /*oob=*/true);
  EXPECT_GT(cap.count(DiagKind::kOutOfBounds), 0u) << cap.summary();
}

TEST(SimtCatches, BarrierDivergence) {
  for_each_schedule([&](const simt::Schedule&) {
    {
      simt::Capture cap;
      std::vector<float> y(32);
      st::launch_early_exit(y.data());
      EXPECT_GT(cap.count(DiagKind::kBarrierDivergence), 0u) << cap.summary();
    }
    {
      simt::Capture cap;
      std::vector<float> y(64);
      st::launch_split_barrier(y.data());
      EXPECT_GT(cap.count(DiagKind::kBarrierDivergence), 0u) << cap.summary();
    }
  });
}

TEST(SimtCatches, DeadlocksEndTheLaunch) {
  for_each_schedule([&](const simt::Schedule&) {
    {
      simt::Capture cap;
      std::vector<float> y(32);
      st::launch_shuffle_deadlock(y.data());  // must return, not hang
      EXPECT_GT(cap.count(DiagKind::kDeadlock), 0u) << cap.summary();
    }
    {
      simt::Capture cap;
      std::vector<int> y(32);
      st::launch_collective_mismatch(y.data());
      EXPECT_GT(cap.count(DiagKind::kWarpCollective), 0u) << cap.summary();
    }
  });
}

TEST(SimtCatches, ShuffleFromLanesThatDoNotExist) {
  simt::Capture cap;
  std::vector<float> y(48);
  st::launch_shuffle_inactive(y.data(), 48);
  EXPECT_GT(cap.count(DiagKind::kWarpCollective), 0u) << cap.summary();
  simt::Capture ok;
  std::vector<float> z(64);
  st::launch_shuffle_inactive(z.data(), 64);
  EXPECT_EQ(ok.total(), 0u) << ok.summary();
  for (float v : z) EXPECT_EQ(v, 32.0f);
}

TEST(SimtCatches, UnwrittenOutput) {
  const int n = 100;
  for_each_schedule([&](const simt::Schedule&) {
    {
      simt::Capture cap;
      std::vector<float> y(static_cast<size_t>(n));
      simt::expect_written(y.data(), y.size(), "y");
      st::launch_off_by_one(y.data(), n);
      ASSERT_EQ(cap.count(DiagKind::kUnwrittenOutput), 1u) << cap.summary();
      const auto d = cap.diagnostics();
      EXPECT_NE(d[0].message.find("1 of 100"), std::string::npos) << d[0].message;
      EXPECT_NE(d[0].message.find("99"), std::string::npos) << d[0].message;
    }
    {
      simt::Capture cap;  // the elements the kernel does write are not reported
      std::vector<float> y(static_cast<size_t>(n));
      simt::expect_written(y.data(), size_t(n - 1), "y");
      st::launch_off_by_one(y.data(), n);
      EXPECT_EQ(cap.total(), 0u) << cap.summary();
    }
  });
}

TEST(SimtCatches, UninitializedSharedMemoryRead) {
  REQUIRE_TRACKING();
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> y(64);
    st::launch_uninit_smem(y.data());
    EXPECT_GE(cap.count(DiagKind::kUninitializedRead), 32u) << cap.summary();
    EXPECT_EQ(cap.count(DiagKind::kRace), 0u) << cap.summary();
  });
}

TEST(SimtCatches, MissingCpAsyncWait) {
  REQUIRE_TRACKING();
  const auto x = random_floats(64, 10);
  for_each_schedule([&](const simt::Schedule&) {
    simt::Capture cap;
    std::vector<float> y(64);
    st::launch_cp_async_stage(x.data(), y.data(), 1, /*wait=*/false);
    EXPECT_GT(cap.count(DiagKind::kUninitializedRead), 0u) << cap.summary();
  });
}

TEST(SimtCatches, LdmatrixFromGlobalMemory) {
  std::vector<uint16_t> g(64, 0x3f80);
  std::vector<uint32_t> out(32);
  simt::Capture cap;
  st::launch_ldmatrix_global(g.data(), out.data());
  EXPECT_GT(cap.count(DiagKind::kNotShared), 0u) << cap.summary();
}

TEST(SimtCatches, MisalignedVectorLoad) {
  const auto x = random_floats(65, 11);
  std::vector<float> y(64);
  simt::Capture cap;
  st::launch_vec4_copy(x.data(), y.data(), 64, 1);
  EXPECT_GT(cap.count(DiagKind::kMisaligned), 0u) << cap.summary();
}

TEST(SimtCatches, TrapAndBadLaunch) {
  {
    simt::Capture cap;
    std::vector<float> y(32);
    st::launch_trap(y.data());
    EXPECT_GT(cap.count(DiagKind::kKernelException), 0u) << cap.summary();
  }
  {
    simt::Capture cap;
    std::vector<float> x(64), sums(1);
    st::launch_block_sum(x.data(), sums.data(), 64, 1, 2048);  // more than 1024 threads per block
    EXPECT_EQ(cap.count(DiagKind::kBadLaunch), 1u) << cap.summary();
  }
}

// A block that spins on a flag only another block sets would hang: the watchdog reports and ends it.
TEST(SimtCatches, SpinningBlockTimesOut) {
  REQUIRE_TRACKING();  // the watchdog runs in the access callbacks
  const int threads = simt::worker_threads();
  const double timeout = simt::block_timeout();
  simt::set_worker_threads(1);
  simt::set_block_timeout(0.2);
  {
    simt::ScopedSchedule in_order(simt::Schedule{simt::ScheduleKind::kInOrder, 0});  // block 0 first
    simt::Capture cap;
    int flag = 0;
    st::launch_spin_on_other_block(&flag);
    EXPECT_EQ(cap.count(DiagKind::kDeadlock), 1u) << cap.summary();
    EXPECT_NE(cap.summary().find("INFER_SIMT_BLOCK_TIMEOUT"), std::string::npos) << cap.summary();
  }
  {
    simt::ScopedSchedule reversed(simt::Schedule{simt::ScheduleKind::kReverse, 0});  // block 1 first: no spin
    simt::Capture cap;
    int flag = 0;
    st::launch_spin_on_other_block(&flag);
    EXPECT_EQ(cap.total(), 0u) << cap.summary();
  }
  simt::set_worker_threads(threads);
  simt::set_block_timeout(timeout);
}

// Without a Capture, a launch with diagnostics throws, naming the kernel and the problem.
TEST(SimtCatches, ThrowsWithoutCapture) {
  std::vector<float> y(32);
  try {
    st::launch_early_exit(y.data());
    FAIL() << "expected LaunchError";
  } catch (const simt::LaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("simt_selftest_early_exit_kernel"), std::string::npos) << e.what();
    ASSERT_FALSE(e.diagnostics().empty());
    EXPECT_EQ(e.diagnostics()[0].kind, DiagKind::kBarrierDivergence);
  }
  EXPECT_GT(simt::stats().switches, 0u);
}

}  // namespace
