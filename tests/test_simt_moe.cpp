// test_simt_moe.cpp — the MoE kernels (kernels/moe.cu) in the SIMT emulator against the host code they replace, and
// the Qwen3-MoE / DeepSeek MoE layers through the emulated CUDA backend against the CPU backend and HF.
//
// Exactness: the device router runs route_tokens' fp32 steps in the same order (the emulator's expf is the host's
// std::exp), so ids and weights must be bit-identical, including on inputs full of ties (scores drawn from a few
// values). The permutation and the weighted un-permute are integer / same-order fp32: bit-identical. The decode
// experts reorder fp32 dot products: relative ~1e-6.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "simt_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "dtype.h"
#include "kernels/kernels.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"
#include "simt/runtime.h"
#include "cuda/cuda_shim.h"
#include "fp8_test_util.h"

using namespace infer;
using namespace infer::testutil;

namespace {

constexpr uint64_t kScheduleSeed = 5;  // the random schedule of for_two_schedules


// Values from a small set, so that many scores (and group sums) tie.
std::vector<float> tied(size_t n, uint32_t seed, int levels) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(int(rng() % uint32_t(levels)) - levels / 2) * 0.5f;
  return v;
}

// ------------------------------------------------------------------ router

struct RouteCase {
  MoeRouter r;
  int64_t T;
  bool bias, ties;
  std::string what;
};

RouteCase softmax_case(int64_t E, int64_t k, bool norm, int64_t T, bool ties) {
  RouteCase c;
  c.r.scoring = MoeRouter::Scoring::Softmax;
  c.r.n_experts = E;
  c.r.top_k = k;
  c.r.norm_topk_prob = norm;
  c.T = T;
  c.bias = false;
  c.ties = ties;
  c.what = "softmax E" + std::to_string(E) + " k" + std::to_string(k) + (norm ? " norm" : "") + (ties ? " ties" : "");
  return c;
}
RouteCase sigmoid_case(int64_t E, int64_t k, int64_t G, int64_t tg, bool norm, float scale, int64_t T, bool bias,
                       bool ties) {
  RouteCase c;
  c.r.scoring = MoeRouter::Scoring::Sigmoid;
  c.r.n_experts = E;
  c.r.top_k = k;
  c.r.n_group = G;
  c.r.topk_group = tg;
  c.r.norm_topk_prob = norm;
  c.r.routed_scaling_factor = scale;
  c.T = T;
  c.bias = bias;
  c.ties = ties;
  c.what = "sigmoid E" + std::to_string(E) + " k" + std::to_string(k) + " G" + std::to_string(G) + "/" +
           std::to_string(tg) + (bias ? " bias" : "") + (ties ? " ties" : "");
  return c;
}

TEST(SimtMoe, RouterMatchesHostExactly) {
  const std::vector<RouteCase> cases = {
      softmax_case(8, 2, false, 5, false),     softmax_case(8, 2, true, 3, true),
      softmax_case(60, 4, true, 4, true),      softmax_case(128, 8, true, 2, false),
      softmax_case(33, 20, false, 1, true),    sigmoid_case(16, 4, 4, 2, true, 2.5f, 5, true, false),
      sigmoid_case(16, 4, 4, 2, true, 2.5f, 4, false, true), sigmoid_case(64, 6, 8, 3, true, 1.0f, 3, true, true),
      sigmoid_case(256, 8, 8, 4, true, 2.5f, 2, true, false), sigmoid_case(20, 3, 1, 1, false, 1.5f, 3, true, true),
      sigmoid_case(40, 5, 5, 5, true, 2.0f, 2, true, true)};
  uint32_t seed = 10;
  for (const RouteCase& c : cases) {
    SCOPED_TRACE(c.what);
    const int64_t E = c.r.n_experts, k = c.r.top_k, T = c.T, ld = E + 3;
    const auto logits = c.ties ? tied(size_t(T * ld), ++seed, 5) : randn(size_t(T * ld), ++seed, 2.0f);
    const auto bias = c.ties ? tied(size_t(E), ++seed, 3) : randn(size_t(E), ++seed, 0.1f);
    std::vector<int32_t> want_ids(size_t(T * k));
    std::vector<float> want_w(size_t(T * k));
    route_tokens(c.r, logits.data(), ld, c.bias ? bias.data() : nullptr, T, want_ids.data(), want_w.data());
    for_two_schedules(kScheduleSeed, [&] {
      simt::Capture cap;
      std::vector<int32_t> ids(want_ids.size(), -1);
      std::vector<float> w(want_w.size(), 0.0f);
      simt::expect_written(ids.data(), ids.size(), "ids");
      MoeRouteArgs a{logits.data(), ld, T, E, k, c.r.scoring == MoeRouter::Scoring::Softmax, c.r.norm_topk_prob,
                     c.r.n_group, c.r.topk_group, c.r.routed_scaling_factor, c.bias ? bias.data() : nullptr,
                     ids.data(), w.data()};
      ASSERT_TRUE(moe_route_supported(E, k, c.r.n_group));
      launch_moe_route(a, nullptr);
      EXPECT_CLEAN(cap);
      EXPECT_EQ(ids, want_ids);
      EXPECT_EQ(std::memcmp(w.data(), want_w.data(), w.size() * 4), 0) << "weights differ from the host's";
    });
  }
}

// ------------------------------------------------------------------ permutation and un-permute

TEST(SimtMoe, PermuteAndUnpermuteMatchHost) {
  struct Case {
    int64_t T, k, E, H;
  };
  for (const Case& c : {Case{1, 2, 8, 16}, Case{7, 3, 10, 33}, Case{40, 8, 64, 20}, Case{300, 4, 300, 5}}) {
    SCOPED_TRACE("T " + std::to_string(c.T) + " k " + std::to_string(c.k) + " E " + std::to_string(c.E));
    const int64_t n = c.T * c.k;
    std::mt19937 rng(uint32_t(c.T * 7 + c.E));
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int64_t t = 0; t < c.T; ++t) {  // k distinct experts per token, in random order
      std::vector<int32_t> all(size_t(c.E));
      for (int64_t e = 0; e < c.E; ++e) all[size_t(e)] = int32_t(e);
      std::shuffle(all.begin(), all.end(), rng);
      if (t % 3 == 0) std::iota(all.begin(), all.end(), 0);  // crowd the low ids
      std::copy(all.begin(), all.begin() + c.k, ids.begin() + t * c.k);
    }
    const auto w = randn(size_t(n), 3);
    // host: the counting sort of the CPU backend's moe_experts
    std::vector<int32_t> off(size_t(c.E + 1), 0), rows(static_cast<size_t>(n));
    for (int32_t e : ids) off[size_t(e) + 1]++;
    for (int64_t e = 0; e < c.E; ++e) off[size_t(e) + 1] += off[size_t(e)];
    std::vector<int32_t> at(off.begin(), off.end() - 1), pos_want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      pos_want[size_t(i)] = at[size_t(ids[size_t(i)])]++;
      rows[size_t(pos_want[size_t(i)])] = int32_t(i / c.k);
    }
    // un-permute: out = 0, then scatter_add_rows per expert in ascending order
    const auto y = randn(size_t(n * c.H), 4);
    const int64_t ldo = c.H + 1;
    std::vector<float> want(size_t(c.T * ldo), 0.0f);
    CpuBackend cpu(1);
    std::vector<float> rw(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rw[size_t(pos_want[size_t(i)])] = w[size_t(i)];
    for (int64_t e = 0; e < c.E; ++e)
      if (off[size_t(e) + 1] > off[size_t(e)])
        cpu.scatter_add_rows(want.data(), ldo, y.data() + off[size_t(e)] * c.H, c.H, rows.data() + off[size_t(e)],
                             rw.data() + off[size_t(e)], off[size_t(e) + 1] - off[size_t(e)], c.H);
    for_two_schedules(kScheduleSeed, [&] {
      simt::Capture cap;
      std::vector<int32_t> goff(off.size()), grows(rows.size()), gpos(static_cast<size_t>(n));
      simt::expect_written(grows.data(), grows.size(), "rows");
      launch_moe_permute(ids.data(), c.T, c.k, c.E, goff.data(), grows.data(), gpos.data(), nullptr);
      EXPECT_CLEAN(cap);
      EXPECT_EQ(goff, off);
      EXPECT_EQ(grows, rows);
      EXPECT_EQ(gpos, pos_want);
      std::vector<float> out(want.size(), 0.0f);
      launch_moe_unpermute(y.data(), c.H, ids.data(), w.data(), gpos.data(), c.T, c.k, out.data(), ldo, c.H, nullptr);
      EXPECT_CLEAN(cap);
      for (int64_t t = 0; t < c.T; ++t)
        EXPECT_EQ(std::memcmp(out.data() + t * ldo, want.data() + t * ldo, size_t(c.H) * 4), 0) << "token " << t;
      // gather: the permuted rows of x
      const auto x = randn(size_t(c.T * (c.H + 2)), 5);
      std::vector<float> xg(size_t(n * c.H));
      launch_gather_rows(x.data(), c.H + 2, c.T, grows.data(), n, xg.data(), c.H, c.H, nullptr);
      EXPECT_CLEAN(cap);
      for (int64_t i = 0; i < n; ++i)
        EXPECT_EQ(std::memcmp(xg.data() + i * c.H, x.data() + rows[size_t(i)] * (c.H + 2), size_t(c.H) * 4), 0);
    });
  }
}

// ------------------------------------------------------------------ batch-1 decode experts

struct ExpertStore {
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<uint16_t>> bf16;
  std::vector<MoeExpert> experts;
};

ExpertStore make_experts(int64_t E, int64_t H, int64_t I, DType t, uint32_t seed) {
  ExpertStore s;
  s.experts.resize(size_t(E));
  for (int64_t e = 0; e < E; ++e) {
    cpu::Matrix* m[3] = {&s.experts[size_t(e)].gate, &s.experts[size_t(e)].up, &s.experts[size_t(e)].down};
    for (int i = 0; i < 3; ++i) {
      const int64_t rows = i < 2 ? I : H, cols = i < 2 ? H : I;
      auto v = randn(size_t(rows * cols), seed++, 0.2f);
      m[i]->dtype = t;
      m[i]->rows = rows;
      m[i]->cols = cols;
      if (t == DType::BF16) {
        std::vector<uint16_t> b(v.size());
        for (size_t j = 0; j < v.size(); ++j) b[j] = f32_to_bf16(v[j]);
        s.bf16.push_back(std::move(b));
      } else {
        s.f32.push_back(std::move(v));
      }
    }
  }
  // pointers after the vectors stop moving
  size_t i32 = 0, i16 = 0;
  for (auto& x : s.experts)
    for (cpu::Matrix* m : {&x.gate, &x.up, &x.down})
      m->data = t == DType::BF16 ? static_cast<const void*>(s.bf16[i16++].data()) : s.f32[i32++].data();
  return s;
}

// FP8 experts (e4m3, 128x128 block scales; BF16 scales for odd e, views inside a scale block for e % 3 == 2): the CPU
// view of each matrix and its device layout (rows padded to 16 bytes, fp32 scales).
struct Fp8ExpertStore {
  std::vector<std::unique_ptr<fp8test::Fp8Case>> m;  // gate, up, down of expert e at 3 e + i
  std::vector<MoeExpert> experts;
  std::vector<MoeWeightPtr> table;  // device table: gate of all experts, then up, then down
};
Fp8ExpertStore make_fp8_experts(int64_t E, int64_t H, int64_t I, uint32_t seed) {
  Fp8ExpertStore s;
  s.experts.resize(size_t(E));
  for (int64_t e = 0; e < E; ++e)
    for (int i = 0; i < 3; ++i) {
      const int64_t rows = i < 2 ? I : H, cols = i < 2 ? H : I, r0 = e % 3 == 2 ? 37 : 0;
      s.m.push_back(std::make_unique<fp8test::Fp8Case>(r0 + rows, cols, r0, rows, e % 2 ? DType::BF16 : DType::F32,
                                                       seed++));
      (i == 0 ? s.experts[size_t(e)].gate : i == 1 ? s.experts[size_t(e)].up : s.experts[size_t(e)].down) =
          s.m.back()->cpu_view;
    }
  s.table.resize(size_t(3 * E));
  for (int64_t e = 0; e < E; ++e)
    for (int i = 0; i < 3; ++i) {
      const auto& w = s.m[size_t(3 * e + i)]->w;
      s.table[size_t(i * E + e)] = MoeWeightPtr{w.w, w.scale, w.row0};
    }
  return s;
}

// Batch-1 experts against the CPU backend's moe_experts, reading only the k selected experts' weights. FP8 experts
// are w8a16 like the FP8 GEMV (fp32 activations): only fp32 summation order differs from the CPU.
TEST(SimtMoe, DecodeExpertsMatchCpuAndReadOnlySelected) {
  struct Case {
    int64_t E, H, I, k;
    DType t;
  };
  for (const Case& c : {Case{8, 64, 24, 2, DType::BF16}, Case{8, 64, 32, 3, DType::F32}, Case{6, 37, 13, 4, DType::BF16},
                        Case{12, 40, 20, 1, DType::F32}, Case{6, 100, 40, 2, DType::F8_E4M3},
                        Case{5, 256, 130, 3, DType::F8_E4M3}}) {
    SCOPED_TRACE("E " + std::to_string(c.E) + " H " + std::to_string(c.H) + " I " + std::to_string(c.I) + " " +
                 dtype_name(c.t));
    const bool fp8 = c.t == DType::F8_E4M3;
    ExpertStore s;
    Fp8ExpertStore f;
    std::vector<MoeWeightPtr> full;
    if (fp8) {
      f = make_fp8_experts(c.E, c.H, c.I, uint32_t(c.H + c.I));
      full = f.table;
    } else {
      s = make_experts(c.E, c.H, c.I, c.t, uint32_t(c.H * 3 + c.I));
      for (int i = 0; i < 3; ++i)
        for (int64_t e = 0; e < c.E; ++e) {
          const MoeExpert& x = s.experts[size_t(e)];
          full.push_back(MoeWeightPtr{(i == 0 ? x.gate : i == 1 ? x.up : x.down).data, nullptr, 0});
        }
    }
    const MoeExpert* experts = fp8 ? f.experts.data() : s.experts.data();
    fp8test::Buf<float> x(size_t(c.H));
    const auto xv = randn(size_t(c.H), 7);
    std::copy(xv.begin(), xv.end(), x.data());
    std::vector<int32_t> ids(size_t(c.k));
    for (int64_t j = 0; j < c.k; ++j) ids[size_t(j)] = int32_t((7 * j + 3) % c.E);  // distinct, not sorted
    const auto w = randn(size_t(c.k), 8);
    CpuBackend cpu(1);
    std::vector<float> want(size_t(c.H)), scratch(size_t(Backend::moe_expert_scratch_floats(1, c.H, c.I)));
    cpu.moe_experts(x.data(), c.H, experts, c.E, c.I, ids.data(), w.data(), 1, c.k, want.data(), c.H, c.H,
                    scratch.data());
    // Only the selected experts' entries are set: reading any other expert's weights (or scales) would dereference
    // null (a fatal out-of-bounds report in the emulator), so this also checks that decode touches k experts only.
    std::vector<MoeWeightPtr> table(size_t(3 * c.E), MoeWeightPtr{nullptr, nullptr, 0});
    for (int64_t e : ids)
      for (int i = 0; i < 3; ++i) table[size_t(i * c.E + e)] = full[size_t(i * c.E + e)];
    const KType kt = fp8 ? KType::kFP8 : c.t == DType::BF16 ? KType::kBF16 : KType::kF32;
    for_two_schedules(kScheduleSeed, [&] {
      simt::Capture cap;
      fp8test::Buf<float> h(size_t(c.k * c.I)), out(size_t(c.H));
      MoeDecodeArgs a{table.data(), kt, c.E, c.H, c.I, c.k, ids.data(), w.data(), x.data(), h.data(), out.data()};
      launch_moe_decode(a, nullptr);
      EXPECT_CLEAN(cap);
      for (int64_t i = 0; i < c.H; ++i) EXPECT_NEAR(out[size_t(i)], want[size_t(i)], 1e-5 + 1e-5 * std::fabs(want[size_t(i)]));
    });
    // The check can fail: with a selected expert's down projection (or, FP8, its scales) missing from the table, the
    // read is reported.
    std::vector<MoeWeightPtr> broken = table;
    if (fp8)
      broken[size_t(2 * c.E + ids[0])].scale = nullptr;
    else
      broken[size_t(2 * c.E + ids[0])].w = nullptr;
    simt::Capture cap;
    fp8test::Buf<float> h(size_t(c.k * c.I)), out(size_t(c.H));
    MoeDecodeArgs a{broken.data(), kt, c.E, c.H, c.I, c.k, ids.data(), w.data(), x.data(), h.data(), out.data()};
    launch_moe_decode(a, nullptr);
    EXPECT_TRUE(cap.has(simt::DiagKind::kOutOfBounds)) << cap.summary();
  }
}

// ------------------------------------------------------------------ moe_experts through the emulated backend

std::unique_ptr<CudaBackend> cuda_opts(CudaPrecision p, CudaFp8Mma path = CudaFp8Mma::kAuto) {
  CudaOptions o;
  o.precision = p;
  o.fp8_mma = path;
  return std::make_unique<CudaBackend>(o);
}

// Routed experts of T > 1 tokens on the CUDA backend (grouped GEMM: device permutation, one launch per projection,
// no read-back) against the CPU backend. bf16 in kFp32 precision: exact operands, fp32 sums in another order
// (1e-5 of the largest output; observed relative L2 error ~4e-7, printed). FP8: w8a8 against the CPU's w8a16, so the activation rounding to e4m3 (2^-4 relative per value,
// twice: before gate/up and before down) shows: held to a relative L2 error of 0.1 (observed, printed: a few %; a
// wrong expert or scale gives ~100 %). Counts: the layer ran grouped, with no host sync but the final read.
TEST(SimtMoe, GroupedExpertsMatchCpuWithoutHostSync) {
  struct Case {
    int64_t E, H, I, k, T;
    DType t;
    CudaFp8Mma path;
    bool grouped;  // else the per-expert path (bf16 widths not a multiple of 8)
  };
  for (const Case& c : {Case{8, 64, 24, 2, 37, DType::BF16, CudaFp8Mma::kAuto, true},
                        Case{6, 40, 16, 3, 30, DType::BF16, CudaFp8Mma::kAuto, true},
                        Case{6, 37, 13, 2, 9, DType::BF16, CudaFp8Mma::kAuto, false},
                        Case{6, 100, 40, 2, 33, DType::F8_E4M3, CudaFp8Mma::kFp8, true},
                        Case{5, 160, 70, 3, 20, DType::F8_E4M3, CudaFp8Mma::kBf16, true}}) {
    SCOPED_TRACE("E " + std::to_string(c.E) + " H " + std::to_string(c.H) + " I " + std::to_string(c.I) + " T " +
                 std::to_string(c.T) + " " + dtype_name(c.t));
    const bool fp8 = c.t == DType::F8_E4M3;
    ExpertStore s;
    Fp8ExpertStore f;
    if (fp8)
      f = make_fp8_experts(c.E, c.H, c.I, uint32_t(c.H + c.T));
    else
      s = make_experts(c.E, c.H, c.I, c.t, uint32_t(c.H + c.T));
    const MoeExpert* experts = fp8 ? f.experts.data() : s.experts.data();
    const auto x = randn(size_t(c.T * c.H), 17);
    // k distinct experts per token, never expert 1 (no rows), expert 0 crowded
    std::mt19937 rng(uint32_t(c.T));
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < c.T; ++t) {
      std::vector<int32_t> all;
      for (int32_t e = 0; e < c.E; ++e)
        if (e != 1) all.push_back(e);
      std::shuffle(all.begin() + (t % 2 ? 0 : 1), all.end(), rng);
      ids.insert(ids.end(), all.begin(), all.begin() + c.k);
    }
    const auto w = randn(ids.size(), 18);
    CpuBackend cpu(1);
    std::vector<float> want(size_t(c.T * c.H)), scratch(size_t(Backend::moe_expert_scratch_floats(c.T, c.H, c.I)));
    cpu.moe_experts(x.data(), c.H, experts, c.E, c.I, ids.data(), w.data(), c.T, c.k, want.data(), c.H, c.H,
                    scratch.data());
    auto be = cuda_opts(CudaPrecision::kFp32, c.path);
    float* dx = be->alloc(c.T * c.H);
    float* dw = be->alloc(c.T * c.k);
    float* did = be->alloc(c.T * c.k);
    float* dout = be->alloc(c.T * c.H);
    be->from_host(x.data(), dx, c.T * c.H);
    be->from_host(w.data(), dw, c.T * c.k);
    be->from_host(reinterpret_cast<const float*>(ids.data()), did, c.T * c.k);
    std::vector<float> got(want.size());
    for (int rep = 0; rep < 2; ++rep) {  // the second run: weights uploaded and scratch grown already
      const uint64_t syncs = cuda_shim::stats().host_syncs;
      be->moe_experts(dx, c.H, experts, c.E, c.I, reinterpret_cast<const int32_t*>(did), dw, c.T, c.k, dout, c.H, c.H,
                      nullptr);
      be->to_host(dout, got.data(), c.T * c.H);
      if (rep == 1 && c.grouped)
        EXPECT_EQ(cuda_shim::stats().host_syncs - syncs, 1u) << "the grouped MoE layer synchronised with the host";
    }
    EXPECT_EQ(be->stats().moe_grouped_layers, c.grouped ? 2 : 0);
    EXPECT_EQ(be->stats().moe_per_expert_layers, c.grouped ? 0 : 2);
    double num = 0, den = 0, worst = 0, ymax = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      num += double(got[i] - want[i]) * (got[i] - want[i]);
      den += double(want[i]) * want[i];
      worst = std::max(worst, double(std::fabs(got[i] - want[i])));
      ymax = std::max(ymax, double(std::fabs(want[i])));
    }
    const double rel = std::sqrt(num / den);
    std::printf("[%s T %lld] relative L2 error vs CPU %.3g\n", dtype_name(c.t), static_cast<long long>(c.T), rel);
    if (fp8) {
      EXPECT_LE(rel, 0.1);
      EXPECT_GT(rel, 1e-4) << "w8a8 cannot match the CPU's w8a16 this closely: are the activations quantised?";
    } else {
      EXPECT_LE(worst, 1e-5 * ymax) << "max |error| over max |y| " << ymax;
    }
  }
}

// ------------------------------------------------------------------ the whole layer through the emulated backend

float max_diff(const float* a, const float* b, size_t n) {
  float w = 0;
  for (size_t i = 0; i < n; ++i) w = std::max(w, std::isnan(a[i] - b[i]) ? INFINITY : std::fabs(a[i] - b[i]));
  return w;
}

std::unique_ptr<CudaBackend> cuda_fp32(bool graphs = true) {
  CudaOptions o;
  o.precision = CudaPrecision::kFp32;
  o.graphs = graphs;
  return std::make_unique<CudaBackend>(o);
}

// Prompt logits of the tiny Qwen3-MoE fixtures (device routing, permutation, per-expert GEMMs, un-permute) match
// HF within the CPU backend's tolerance (1e-4, test_models.cpp), and the experts chosen are HF's.
TEST(SimtMoeModel, Qwen3MoePrefillMatchesHF) {
  for (const char* name : {"qwen3_moe_top2", "qwen3_moe_sparse"}) {
    SCOPED_TRACE(name);
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
    const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
    const auto want = read_vec<float>(*ref, "logits");
    std::map<std::string, std::vector<float>> got;
    DumpFn fn = [&](const std::string& n, const float* d, int64_t r, int64_t c) { got[n].assign(d, d + r * c); };
    Session s(*m, 64, cuda_fp32(), 64);
    s.eval(ids.data(), int64_t(ids.size()), true, &fn);
    const float d = max_diff(s.logits(), want.data(), want.size());
    std::printf("[%s] emulated CUDA, max |logit - HF| %.3g\n", name, d);
    EXPECT_LE(d, 1e-4f);
    for (int64_t l = 0; l < m->config.num_hidden_layers; ++l) {
      const std::string key = "router_topk_L" + std::to_string(l), dkey = "layers." + std::to_string(l) + ".router_topk";
      if (!ref->find(key)) continue;
      const auto w = read_vec<int32_t>(*ref, key);
      ASSERT_EQ(got[dkey].size(), w.size());
      for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(int32_t(got[dkey][i]), w[i]) << dkey << "[" << i << "]";
    }
  }
}

// Decode on the emulated GPU (batch-1 expert kernels, captured in a decode graph after two steps) equals the CPU
// backend's logits step by step, and follows HF's greedy tokens.
TEST(SimtMoeModel, Qwen3MoeDecodeGraphMatchesCpuAndHF) {
  auto m = Transformer::load(model_dir("qwen3_moe_sparse"), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir("qwen3_moe_sparse") + "/reference.safetensors");
  const auto prompt = read_vec<int32_t>(*ref, "greedy_prompt");
  const auto greedy = read_vec<int32_t>(*ref, "greedy_tokens");
  const int32_t V = int32_t(m->vocab_size());
  auto backend = cuda_fp32();
  CudaBackend* be = backend.get();
  Session gpu(*m, 64, std::move(backend), 64), cpu(*m, 64, 1, 64);
  gpu.eval(prompt.data(), int64_t(prompt.size()), false);
  cpu.eval(prompt.data(), int64_t(prompt.size()), false);
  const int n = 6;
  for (int i = 0; i < n; ++i) {
    EXPECT_LE(max_diff(gpu.logits(), cpu.logits(), size_t(V)), 1e-4f) << "step " << i;
    const int32_t id = argmax(gpu.logits(), V);
    ASSERT_EQ(id, greedy[size_t(i)]) << "greedy step " << i;
    gpu.eval(&id, 1, false);
    cpu.eval(&id, 1, false);
  }
  EXPECT_EQ(be->stats().graph_captures, 1);
  EXPECT_EQ(be->stats().graph_replays, n - 1);  // n decode steps: eager, capture + run, replays
}

}  // namespace
