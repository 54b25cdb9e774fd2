// test_simt_moe_gemm.cpp — the grouped expert GEMM (kernels/moe_gemm.cu, block_gemm.cuh) in the SIMT emulator against
// CPU references on random routings: experts with no rows, an expert with more than one 64-row tile, odd N, K not a
// multiple of the K tile (bf16: K % 8 == 0 as required; e4m3: any K, rows padded), FP8 views whose first row sits
// inside a scale block, both FP8 tensor-core paths, 1 and 3 bf16 parts; every permuted row written (expect_written)
// and no emulator diagnostics. Then the whole grouped MoE layer (permute, gather, gate/up, SwiGLU, down, un-permute)
// captured into a CUDA graph on the runtime shim and replayed: it reads nothing back to the host.
//
// References and tolerances: the reference is computed in double from the operand the kernel consumed (the packed
// bf16 parts, or the e4m3 activations with their scales, themselves checked byte for byte against host code). The
// kernel's products are exact in fp32 (bf16 × bf16, e4m3 × e4m3); what differs is fp32 summation: at most ~(terms +
// blocks) · 2^-24 · Σ|terms| (bf16: K·parts terms in one accumulator; e4m3: 128 per block plus KB promotions), so
// each output is held to that bound (2^-24 (K·parts + 64) Σ|terms|, e4m3: 1e-5 Σ|terms| as test_simt_fp8.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_shim.h"
#include "dtype.h"
#include "fp8_test_util.h"
#include "kernels/kernels.h"
#include "simt/runtime.h"

namespace {

using namespace infer::fp8test;
namespace simt = infer::simt;
using infer::DType;
using infer::Fp8MmaPath;
using infer::KType;
using infer::MoeWeightPtr;

#define EXPECT_CLEAN(cap) EXPECT_EQ((cap).total(), 0u) << (cap).summary()

template <class F>
void for_schedules(int n, F&& f) {
  const simt::Schedule all[] = {simt::Schedule{simt::ScheduleKind::kRandom, 3}, simt::Schedule{simt::ScheduleKind::kInOrder, 0}};
  for (int i = 0; i < n && i < 2; ++i) {
    SCOPED_TRACE("schedule " + all[i].to_string());
    simt::ScopedSchedule scoped(all[i]);
    f();
  }
}

// A routing of T tokens to k distinct experts each; experts e % 4 == 1 get no rows, expert 0 gets every token (more
// than one 64-row tile when T > 64). Host permutation as the CPU backend's counting sort.
struct Routing {
  int64_t T, k, E, n;
  std::vector<int32_t> ids, off, rows, pos, tiles, expert_of;  // expert_of[i]: the expert of permuted row i
  Routing(int64_t T_, int64_t k_, int64_t E_, uint32_t seed) : T(T_), k(k_), E(E_), n(T_ * k_) {
    std::mt19937 rng(seed);
    std::vector<int32_t> allowed;
    for (int32_t e = 1; e < E; ++e)
      if (e % 4 != 1) allowed.push_back(e);
    for (int64_t t = 0; t < T; ++t) {
      std::shuffle(allowed.begin(), allowed.end(), rng);
      std::vector<int32_t> pick = {0};
      pick.insert(pick.end(), allowed.begin(), allowed.begin() + (k - 1));
      std::shuffle(pick.begin(), pick.end(), rng);
      ids.insert(ids.end(), pick.begin(), pick.end());
    }
    off.assign(size_t(E + 1), 0);
    for (int32_t e : ids) off[size_t(e) + 1]++;
    for (int64_t e = 0; e < E; ++e) off[size_t(e) + 1] += off[size_t(e)];
    std::vector<int32_t> at(off.begin(), off.end() - 1);
    rows.resize(size_t(n));
    pos.resize(size_t(n));
    expert_of.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      const int32_t e = ids[size_t(i)];
      pos[size_t(i)] = at[size_t(e)]++;
      rows[size_t(pos[size_t(i)])] = int32_t(i / k);
      expert_of[size_t(pos[size_t(i)])] = e;
    }
    tiles.assign(size_t(E + 1), 0);
    for (int64_t e = 0; e < E; ++e)
      tiles[size_t(e) + 1] = tiles[size_t(e)] + (off[size_t(e) + 1] - off[size_t(e)] + 63) / 64;
  }
  std::string name() const { return "T " + std::to_string(T) + " k " + std::to_string(k) + " E " + std::to_string(E); }
};

// The device permutation matches the host's, tile offsets included.
void check_permute(const Routing& r, std::vector<int32_t>& off, std::vector<int32_t>& rows, std::vector<int32_t>& pos,
                   std::vector<int32_t>& tiles) {
  off.assign(size_t(r.E + 1), -1);
  rows.assign(size_t(r.n), -1);
  pos.assign(size_t(r.n), -1);
  tiles.assign(size_t(r.E + 1), -1);
  simt::Capture cap;
  infer::launch_moe_permute(r.ids.data(), r.T, r.k, r.E, off.data(), rows.data(), pos.data(), nullptr, tiles.data());
  EXPECT_CLEAN(cap);
  EXPECT_EQ(off, r.off);
  EXPECT_EQ(rows, r.rows);
  EXPECT_EQ(pos, r.pos);
  EXPECT_EQ(tiles, r.tiles);
  EXPECT_LE(int64_t(tiles.back()), infer::moe_max_tiles(r.n, r.E));
}

// ------------------------------------------------------------------ bf16 experts

struct Bf16Experts {
  std::vector<std::vector<uint16_t>> w;  // per entry (N, K)
  std::vector<MoeWeightPtr> table;
  Bf16Experts(int64_t entries, int64_t N, int64_t K, uint32_t seed) {
    for (int64_t e = 0; e < entries; ++e) {
      const auto f = randn(size_t(N * K), seed + uint32_t(e), 0.2f);
      std::vector<uint16_t> b(f.size());
      for (size_t i = 0; i < f.size(); ++i) b[i] = infer::f32_to_bf16(f[i]);
      w.push_back(std::move(b));
    }
    for (auto& m : w) table.push_back(MoeWeightPtr{m.data(), nullptr, 0});
  }
};

// y[z, i, n] against the double reference from the packed operand (sum of its parts).
void check_bf16_gemm(const Routing& r, const Bf16Experts& ex, int64_t table0, int64_t nz, int64_t N, int64_t K,
                     const Buf<uint16_t>& a, int64_t lda, int parts, const Buf<float>& y, int64_t ldy, int64_t yz) {
  double worst = 0;
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t i = 0; i < r.n; ++i) {
      const auto& w = ex.w[size_t(table0 + z * r.E + r.expert_of[size_t(i)])];
      for (int64_t c = 0; c < N; ++c) {
        double want = 0, mag = 0;
        for (int64_t p = 0; p < parts; ++p)
          for (int64_t kk = 0; kk < K; ++kk) {
            const double t = double(infer::bf16_to_f32(a[size_t((p * r.n + i) * lda + kk)])) *
                             infer::bf16_to_f32(w[size_t(c * K + kk)]);
            want += t;
            mag += std::fabs(t);
          }
        const double got = y[size_t(z * yz + i * ldy + c)];
        const double tol = std::ldexp(double(K * parts + 64), -24) * mag + 1e-30;
        ASSERT_LE(std::fabs(got - want), tol) << "z " << z << " row " << i << " col " << c;
        worst = std::max(worst, std::fabs(got - want) / (mag + 1e-30));
      }
    }
  std::printf("[bf16 grouped, %d part%s] max |y - ref| / sum|terms| = %.2g\n", parts, parts > 1 ? "s" : "", worst);
}

TEST(SimtMoeGemm, GroupedBf16MatchesCpu) {
  struct Case {
    int64_t T, k, E, H, I;
  };
  // H (the gate/up K) 72: a full 64-wide K tile and a partial one; I (their N) odd; down: N = H, K = 40.
  for (const Case c : {Case{70, 2, 9, 72, 37}, Case{5, 3, 6, 136, 8}}) {
    Routing r(c.T, c.k, c.E, uint32_t(c.T + c.E));
    SCOPED_TRACE(r.name() + " H " + std::to_string(c.H) + " I " + std::to_string(c.I));
    std::vector<int32_t> off, rows, pos, tiles;
    check_permute(r, off, rows, pos, tiles);
    const int64_t ldx = c.H + 3;
    const auto x = activations(c.T, c.H, ldx, 21);
    Bf16Experts gu(2 * c.E, c.I, c.H, 40);
    const int64_t K2 = 40;
    Bf16Experts down(c.E, c.H, K2, 80);
    const bool big = c.T > 64;  // emulator time: the multi-tile case with 1 part and one schedule
    for (int parts : {1, 3}) {
      if (big && parts == 3) continue;
      SCOPED_TRACE(std::to_string(parts) + " parts");
      // operand: the tokens' rows in expert order, in bf16 parts; columns H..lda-1 zero
      const int64_t lda = (c.H + 7) / 8 * 8 + 8;
      Buf<uint16_t> a(size_t(parts * r.n * lda), 0xabcd);
      {
        simt::Capture cap;
        const infer::MoeActSource src{x.data(), ldx, c.T, rows.data(), nullptr, nullptr, 0};
        infer::launch_moe_act_bf16(src, r.n, c.H, a.data(), lda, parts, nullptr);
        EXPECT_CLEAN(cap);
        for (int64_t i = 0; i < r.n; ++i)
          for (int64_t kk = 0; kk < lda; ++kk) {
            const float v = kk < c.H ? x[size_t(rows[size_t(i)] * ldx + kk)] : 0.0f;
            double sum = 0;
            for (int p = 0; p < parts; ++p) sum += infer::bf16_to_f32(a[size_t((p * r.n + i) * lda + kk)]);
            if (parts == 3)
              ASSERT_EQ(sum, double(v)) << "3 bf16 parts must sum to x exactly (row " << i << ", col " << kk << ")";
            else
              ASSERT_EQ(a[size_t(i * lda + kk)], infer::f32_to_bf16(v)) << "row " << i << ", col " << kk;
          }
      }
      // gate and up of every expert in one launch (nz = 2)
      const int64_t ldy = c.I + 2, yz = r.n * ldy + 5;
      for_schedules(big ? 1 : 2, [&] {
        simt::Capture cap;
        Buf<float> y(size_t(2 * yz), -7.0f);
        for (int64_t z = 0; z < 2; ++z)
          for (int64_t i = 0; i < r.n; ++i) simt::expect_written(y.data() + z * yz + i * ldy, size_t(c.I), "y row");
        infer::MoeGroupedGemmArgs g{a.data(), lda, parts, nullptr, gu.table.data(), 0, 2, c.E, KType::kBF16, c.I, c.H,
                                    off.data(), tiles.data(), r.n, y.data(), ldy, yz, Fp8MmaPath::kBf16};
        infer::launch_moe_grouped_gemm(g, nullptr);
        EXPECT_CLEAN(cap);
        check_bf16_gemm(r, gu, 0, 2, c.I, c.H, a, lda, parts, y, ldy, yz);
      });
      // a down-like launch: N = H, K = 40 (one partial K tile), operand straight from x rows (no gather)
      const auto x2 = activations(r.n, K2, K2, 22);
      Buf<uint16_t> a2(size_t(parts * r.n * 40));
      const infer::MoeActSource src2{x2.data(), K2, r.n, nullptr, nullptr, nullptr, 0};
      infer::launch_moe_act_bf16(src2, r.n, K2, a2.data(), 40, parts, nullptr);
      simt::Capture cap;
      Buf<float> y(size_t(r.n * c.H), -7.0f);
      simt::expect_written(y.data(), y.n, "y");
      infer::MoeGroupedGemmArgs g{a2.data(), 40, parts, nullptr, down.table.data(), 0, 1, c.E, KType::kBF16, c.H, K2,
                                  off.data(), tiles.data(), r.n, y.data(), c.H, 0, Fp8MmaPath::kBf16};
      infer::launch_moe_grouped_gemm(g, nullptr);
      EXPECT_CLEAN(cap);
      check_bf16_gemm(r, down, 0, 1, c.H, K2, a2, 40, parts, y, c.H, 0);
    }
  }
}

// ------------------------------------------------------------------ FP8 experts

// E FP8 experts (N, K); expert e is rows [r0_e, r0_e + N) of a larger matrix for e % 3 == 2 (a view inside a scale
// block), BF16 scales for odd e.
struct Fp8Experts {
  std::vector<std::unique_ptr<Fp8Case>> m;
  std::vector<MoeWeightPtr> table;
  Fp8Experts(int64_t E, int64_t N, int64_t K, uint32_t seed) {
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = e % 3 == 2 ? 37 + 50 * (e % 2) : 0;
      m.push_back(std::make_unique<Fp8Case>(r0 + N, K, r0, N, e % 2 ? DType::BF16 : DType::F32, seed + uint32_t(e)));
      table.push_back(MoeWeightPtr{m.back()->w.w, m.back()->w.scale, m.back()->w.row0});
    }
  }
};

TEST(SimtMoeGemm, GroupedFp8MatchesCpuOnBothPaths) {
  struct Case {
    int64_t T, k, E, N, K;
  };
  // K 200: a partial last 128-block; K 100: not a multiple of 16 (rows padded); N odd, and two N tiles
  for (const Case c : {Case{70, 2, 9, 37, 200}, Case{6, 3, 7, 70, 100}}) {
    Routing r(c.T, c.k, c.E, uint32_t(7 * c.T + c.E));
    SCOPED_TRACE(r.name() + " N " + std::to_string(c.N) + " K " + std::to_string(c.K));
    std::vector<int32_t> off, rows, pos, tiles;
    check_permute(r, off, rows, pos, tiles);
    Fp8Experts ex(c.E, c.N, c.K, 500);
    const int64_t ldx = c.K + 1;
    const auto x = activations(c.T, c.K, ldx, 31);
    // the operand: act_quant of the gathered rows, byte for byte as the host formula
    std::vector<float> xg(size_t(r.n * c.K));
    for (int64_t i = 0; i < r.n; ++i)
      std::copy_n(x.data() + rows[size_t(i)] * ldx, c.K, xg.data() + i * c.K);
    const Quant want = quant_ref(xg.data(), c.K, r.n, c.K);
    Buf<uint8_t> q(want.q.n, 0xab);
    Buf<float> s(want.s.n);
    {
      simt::Capture cap;
      simt::expect_written(s.data(), s.n, "s");
      const infer::MoeActSource src{x.data(), ldx, c.T, rows.data(), nullptr, nullptr, 0};
      infer::launch_moe_act_fp8(src, r.n, c.K, q.data(), want.ldq, s.data(), nullptr);
      EXPECT_CLEAN(cap);
      EXPECT_EQ(std::memcmp(q.data(), want.q.data(), q.n), 0) << "quantised bytes differ";
      EXPECT_EQ(std::memcmp(s.data(), want.s.data(), s.n * sizeof(float)), 0) << "scales differ";
    }
    const float* tab = infer::cpu::fp8_e4m3_table();
    for (Fp8MmaPath path : {Fp8MmaPath::kFp8, Fp8MmaPath::kBf16}) {
      SCOPED_TRACE(path == Fp8MmaPath::kFp8 ? "fp8 mma path" : "bf16 mma path");
      simt::Capture cap;
      const int64_t ldy = c.N + 3;
      Buf<float> y(size_t(r.n * ldy), -7.0f);
      for (int64_t i = 0; i < r.n; ++i) simt::expect_written(y.data() + i * ldy, size_t(c.N), "y row");
      infer::MoeGroupedGemmArgs g{want.q.data(), want.ldq, 1, want.s.data(), ex.table.data(), 0, 1, c.E, KType::kFP8,
                                  c.N, c.K, off.data(), tiles.data(), r.n, y.data(), ldy, 0, path};
      infer::launch_moe_grouped_gemm(g, nullptr);
      EXPECT_CLEAN(cap);
      double worst = 0;
      for (int64_t i = 0; i < r.n; ++i) {
        const Fp8Case& w = *ex.m[size_t(r.expert_of[size_t(i)])];
        for (int64_t n = 0; n < c.N; ++n) {
          double ref = 0, mag = 0;
          for (int64_t kk = 0; kk < c.K; ++kk) {
            const double t = double(want.s[size_t(i * want.KB + kk / 128)]) * tab[want.q[size_t(i * want.ldq + kk)]] *
                             w.wv(n, kk);
            ref += t;
            mag += std::fabs(t);
          }
          const double err = std::fabs(y[size_t(i * ldy + n)] - ref);
          ASSERT_LE(err, 1e-5 * mag + 1e-30) << "row " << i << " (expert " << r.expert_of[size_t(i)] << ") col " << n;
          worst = std::max(worst, err / (mag + 1e-30));
        }
      }
      std::printf("[fp8 grouped %s, %s] max |y - ref| / sum|terms| = %.2g\n",
                  path == Fp8MmaPath::kFp8 ? "e4m3 mma" : "bf16 mma", r.name().c_str(), worst);
    }
  }
}

// The SwiGLU operand: silu(g) * u (swiglu_kernel's formula) packed as bf16 parts or quantised, as the host computes.
TEST(SimtMoeGemm, SwigluOperandsMatchHost) {
  const int64_t n = 9, I = 150, ldgu = 151;
  const auto g = randn(size_t(n * ldgu), 41, 3.0f), u = randn(size_t(n * ldgu), 42);
  std::vector<float> h(size_t(n * I));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < I; ++c) {
      const float a = g[size_t(i * ldgu + c)];
      h[size_t(i * I + c)] = a / (1.0f + std::exp(-a)) * u[size_t(i * ldgu + c)];
    }
  const infer::MoeActSource src{nullptr, 0, 0, nullptr, g.data(), u.data(), ldgu};
  simt::Capture cap;
  const Quant want = quant_ref(h.data(), I, n, I);
  Buf<uint8_t> q(want.q.n, 0xab);
  Buf<float> s(want.s.n);
  infer::launch_moe_act_fp8(src, n, I, q.data(), want.ldq, s.data(), nullptr);
  EXPECT_EQ(std::memcmp(q.data(), want.q.data(), q.n), 0);
  EXPECT_EQ(std::memcmp(s.data(), want.s.data(), s.n * sizeof(float)), 0);
  const int64_t ld = 152;
  Buf<uint16_t> b(size_t(3 * n * ld));
  infer::launch_moe_act_bf16(src, n, I, b.data(), ld, 3, nullptr);
  EXPECT_CLEAN(cap);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < ld; ++c) {
      double sum = 0;
      for (int p = 0; p < 3; ++p) sum += infer::bf16_to_f32(b[size_t((p * n + i) * ld + c)]);
      ASSERT_EQ(sum, c < I ? double(h[size_t(i * I + c)]) : 0.0) << "row " << i << " col " << c;
    }
}

// ------------------------------------------------------------------ the whole layer as a CUDA graph

// The grouped MoE layer as the backend issues it, captured on a stream of the runtime shim: every node is deferred
// to the graph launch (nothing runs, nothing is read back during capture; a synchronous copy or a sync would
// invalidate the capture), and the replay gives the eager run's output bit for bit.
TEST(SimtMoeGemm, GroupedLayerIsGraphCapturable) {
  namespace shim = infer::cuda_shim;
  const int64_t T = 11, k = 2, E = 6, H = 64, I = 24;
  Routing r(T, k, E, 5);
  const auto x = randn(size_t(T * H), 51);
  Bf16Experts gu(2 * E, I, H, 60), dn(E, H, I, 70);
  std::vector<MoeWeightPtr> table = gu.table;
  table.insert(table.end(), dn.table.begin(), dn.table.end());
  std::vector<float> w = randn(size_t(T * k), 52);
  const int64_t n = T * k;
  auto run = [&](cudaStream_t stream, std::vector<float>& out, std::vector<int32_t>& buf_i, Buf<uint16_t>& ax,
                 Buf<uint16_t>& ah, std::vector<float>& gu_y, std::vector<float>& y) {
    int32_t* offs = buf_i.data();
    int32_t* tiles = offs + E + 1;
    int32_t* rows = tiles + E + 1;
    int32_t* pos = rows + n;
    infer::launch_moe_permute(r.ids.data(), T, k, E, offs, rows, pos, stream, tiles);
    infer::launch_moe_act_bf16({x.data(), H, T, rows, nullptr, nullptr, 0}, n, H, ax.data(), H, 1, stream);
    infer::launch_moe_grouped_gemm({ax.data(), H, 1, nullptr, table.data(), 0, 2, E, KType::kBF16, I, H, offs, tiles,
                                    n, gu_y.data(), I, n * I, Fp8MmaPath::kBf16},
                                   stream);
    infer::launch_moe_act_bf16({nullptr, 0, 0, nullptr, gu_y.data(), gu_y.data() + n * I, I}, n, I, ah.data(), I, 1,
                               stream);
    infer::launch_moe_grouped_gemm({ah.data(), I, 1, nullptr, table.data(), 2 * E, 1, E, KType::kBF16, H, I, offs,
                                    tiles, n, y.data(), H, 0, Fp8MmaPath::kBf16},
                                   stream);
    infer::launch_moe_unpermute(y.data(), H, r.ids.data(), w.data(), pos, T, k, out.data(), H, H, stream);
  };
  // eager
  std::vector<float> want(size_t(T * H)), gu_y(size_t(2 * n * I)), y(size_t(n * H));
  std::vector<int32_t> bi(size_t(2 * (E + 1) + 2 * n));
  Buf<uint16_t> ax(size_t(n * H)), ah(size_t(n * I));
  run(nullptr, want, bi, ax, ah, gu_y, y);
  // captured: fresh buffers, poisoned
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  std::vector<float> got(size_t(T * H), -1.0f), gu2(gu_y.size(), -1.0f), y2(y.size(), -1.0f);
  std::vector<int32_t> bi2(bi.size(), -1);
  Buf<uint16_t> ax2(ax.n), ah2(ah.n);
  const auto before = shim::stats();
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  run(s, got, bi2, ax2, ah2, gu2, y2);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess) << "the grouped layer broke the capture";
  EXPECT_EQ(got, std::vector<float>(got.size(), -1.0f)) << "a launch ran during capture";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_EQ(shim::stats().graph_nodes_run - before.graph_nodes_run, 6u);  // six launches, no copies
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "replay differs from eager";
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

}  // namespace
