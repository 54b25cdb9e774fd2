// test_simt_mla.cpp — the MLA kernels (kernels/mla.cu) in the SIMT emulator against the CPU backend's ops on random
// inputs (odd sizes, several head groups, split-K, strided rows, key blocks that end before / after the query), and
// the tiny DeepSeek-V3 fixtures (q_lora / plain q_proj, yarn, group routing, MTP) through the emulated CUDA backend
// against HF, the CPU backend and plain greedy decoding.
//
// Tolerances: the kernels compute the CPU's fp32 sums in other orders (observed relative ~1e-6): 2e-5 relative +
// 2e-5 absolute on O(1) outputs. Model logits: 1e-4 as the CPU backend against HF (test_deepseek.cpp explains why).
#include <gtest/gtest.h>

#include "fixtures.h"
#include "simt_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "dtype.h"
#include "generate.h"
#include "kernels/kernels.h"
#include "model.h"
#include "models/deepseek_v3.h"
#include "rope.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"
#include "simt/runtime.h"

using namespace infer;
using namespace infer::testutil;

namespace {

constexpr uint64_t kScheduleSeed = 9;  // the random schedule of for_two_schedules


// max |a - b| / (atol + rtol |b|) <= 1 over rows (T, n) of leading dimension ld.
void expect_rows_near(const std::vector<float>& got, const std::vector<float>& want, int64_t T, int64_t n, int64_t ld,
                      const std::string& what, double atol = 2e-5, double rtol = 2e-5) {
  double w = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) {
      const double a = got[size_t(t * ld + i)], b = want[size_t(t * ld + i)];
      const double r = std::fabs(a - b) / (atol + rtol * std::fabs(b));
      w = std::max(w, std::isnan(r) ? INFINITY : r);
    }
  EXPECT_LE(w, 1.0) << what << " (error / tolerance = " << w << ")";
}

// ------------------------------------------------------------------ rope_strided, kv_read

TEST(SimtMla, RopeStridedMatchesCpu) {
  for (bool interleaved : {true, false})
    for (int64_t d : {8, 64}) {
      const int64_t T = 3, nh = 5, stride = d + 24, ld = nh * stride + 7, pos0 = 11;
      SCOPED_TRACE(std::string(interleaved ? "interleaved" : "neox") + " d " + std::to_string(d));
      RopeScaling sc;
      const RopeTable rope = make_rope_table(d, 10000.0, sc, 4096);
      const auto x0 = randn(size_t(T * ld), uint32_t(d));
      std::vector<float> want = x0;
      CpuBackend cpu(1);
      cpu.rope_strided(want.data() + 3, ld, T, nh, stride, d, interleaved, pos0, rope);
      for_two_schedules(kScheduleSeed, [&] {
        simt::Capture cap;
        std::vector<float> got = x0;
        const int32_t pos_dev = int32_t(pos0);
        launch_rope_strided(got.data() + 3, ld, T, nh, stride, d, interleaved, rope.inv_freq.data(),
                            rope.attention_scaling, 0, &pos_dev, nullptr);
        EXPECT_CLEAN(cap);
        expect_rows_near(got, want, 1, int64_t(got.size()), 0, "rope_strided", 1e-6, 1e-5);
      });
    }
}

TEST(SimtMla, KvReadCopiesRows) {
  const int64_t n_ctx = 20, w = 45, ldd = 50;
  const auto cache = randn(size_t(n_ctx * w), 3);
  for_two_schedules(kScheduleSeed, [&] {
    simt::Capture cap;
    std::vector<float> dst(size_t(7 * ldd), 0.0f);
    launch_kv_read(cache.data(), n_ctx, w, 9, 7, dst.data(), ldd, nullptr);
    EXPECT_CLEAN(cap);
    for (int64_t i = 0; i < 7; ++i)
      EXPECT_EQ(std::memcmp(dst.data() + i * ldd, cache.data() + (9 + i) * w, size_t(w) * 4), 0);
  });
}

// ------------------------------------------------------------------ absorption

struct KvB {
  std::vector<float> f;
  std::vector<uint16_t> b;
  cpu::Matrix m;
};
KvB make_kvb(int64_t nh, int64_t dn, int64_t dv, int64_t r, DType t, uint32_t seed) {
  KvB k;
  k.f = randn(size_t(nh * (dn + dv) * r), seed, 0.3f);
  k.m.dtype = t;
  k.m.rows = nh * (dn + dv);
  k.m.cols = r;
  if (t == DType::BF16) {
    k.b.resize(k.f.size());
    for (size_t i = 0; i < k.f.size(); ++i) k.b[i] = f32_to_bf16(k.f[i]);
    k.m.data = k.b.data();
  } else {
    k.m.data = k.f.data();
  }
  return k;
}

TEST(SimtMla, AbsorbQAndOutMatchCpu) {
  struct Case {
    int64_t nh, dn, dr, dv, r, T;
    DType t;
  };
  for (const Case& c : {Case{4, 16, 8, 16, 32, 1, DType::BF16}, Case{3, 24, 6, 10, 40, 9, DType::F32},
                        Case{2, 20, 4, 12, 300, 3, DType::BF16}}) {
    SCOPED_TRACE("nh " + std::to_string(c.nh) + " r " + std::to_string(c.r) + " T " + std::to_string(c.T));
    const KvB kvb = make_kvb(c.nh, c.dn, c.dv, c.r, c.t, uint32_t(c.r));
    const KType kt = c.t == DType::BF16 ? KType::kBF16 : KType::kF32;
    const int64_t dq = c.dn + c.dr, w = c.r + c.dr, ldq = c.nh * dq + 3, ldqa = c.nh * w + 5;
    const auto q = randn(size_t(c.T * ldq), 4);
    CpuBackend cpu(1);
    std::vector<float> qa_want(size_t(c.T * ldqa), 0.0f);
    cpu.mla_absorb_q(q.data(), ldq, kvb.m, qa_want.data(), ldqa, c.T, c.nh, c.dn, c.dr, c.dv);
    const int64_t ldo = c.nh * c.r + 2, ldout = c.nh * c.dv + 1;
    const auto o = randn(size_t(c.T * ldo), 5);
    std::vector<float> out_want(size_t(c.T * ldout), 0.0f);
    cpu.mla_absorb_out(o.data(), ldo, kvb.m, out_want.data(), ldout, c.T, c.nh, c.dn, c.dv);
    for_two_schedules(kScheduleSeed, [&] {
      simt::Capture cap;
      std::vector<float> qa(qa_want.size(), 0.0f), out(out_want.size(), 0.0f);
      launch_mla_absorb_q(q.data(), ldq, kvb.m.data, kt, qa.data(), ldqa, c.T, c.nh, c.dn, c.dr, c.dv, c.r, nullptr);
      launch_mla_absorb_out(o.data(), ldo, kvb.m.data, kt, out.data(), ldout, c.T, c.nh, c.dn, c.dv, c.r, nullptr);
      EXPECT_CLEAN(cap);
      expect_rows_near(qa, qa_want, c.T, c.nh * w, ldqa, "absorb_q");
      expect_rows_near(out, out_want, c.T, c.nh * c.dv, ldout, "absorb_out");
    });
  }
}

// ------------------------------------------------------------------ absorbed attention, split-K

TEST(SimtMla, AbsorbedAttentionMatchesCpu) {
  struct Case {
    int64_t nh, r, dr, T, pos0;
    int splits;
  };
  for (const Case& c : {Case{4, 32, 16, 1, 0, 1}, Case{4, 32, 16, 1, 40, 4}, Case{10, 40, 8, 3, 13, 1},
                        Case{10, 40, 8, 1, 70, 2}, Case{3, 300, 20, 2, 9, 3}}) {
    SCOPED_TRACE("nh " + std::to_string(c.nh) + " r " + std::to_string(c.r) + " T " + std::to_string(c.T) + " pos0 " +
                 std::to_string(c.pos0) + " splits " + std::to_string(c.splits));
    const int64_t w = c.r + c.dr, n_ctx = c.pos0 + c.T + 5, ldqa = c.nh * w + 3, ldo = c.nh * c.r + 1;
    const float scale = 1.0f / std::sqrt(float(w));
    const auto cache = randn(size_t(n_ctx * w), uint32_t(c.r + c.pos0));
    const auto qa = randn(size_t(c.T * ldqa), 6);
    CpuBackend cpu(1);
    std::vector<float> want(size_t(c.T * ldo), 0.0f);
    cpu.mla_attention_absorbed(qa.data(), ldqa, cache.data(), c.r, c.dr, want.data(), ldo, c.T, c.pos0, c.nh, scale);
    for_two_schedules(kScheduleSeed, [&] {
      simt::Capture cap;
      std::vector<float> o(want.size(), 0.0f), partial(size_t(c.T * c.nh * c.splits * (c.r + 2)));
      const int32_t pos_dev = int32_t(c.pos0);
      MlaAttentionArgs a{qa.data(), ldqa, cache.data(), n_ctx, c.r, c.dr, o.data(), ldo, c.T, c.pos0,
                         c.splits == 3 ? &pos_dev : nullptr, c.nh, scale};
      launch_mla_attention(a, c.splits, partial.data(), nullptr);
      EXPECT_CLEAN(cap);
      expect_rows_near(o, want, c.T, c.nh * c.r, ldo, "mla_attention");
    });
  }
}

// ------------------------------------------------------------------ naive attention, key blocks

TEST(SimtMla, AttentionBlocksMatchCpu) {
  const int64_t nh = 3, dn = 12, dr = 6, dv = 10, T = 5, pos0 = 7, N = pos0 + T;
  const int64_t dq = dn + dr, ldq = nh * dq + 1, dkv = nh * (dn + dv), ldkvb = dkv + 2, ldkr = dr + 3,
                ldo = nh * dv + 4;
  const float scale = 0.3f;
  const auto q = randn(size_t(T * ldq), 1);
  const auto kvb = randn(size_t(N * ldkvb), 2);
  const auto kr = randn(size_t(N * ldkr), 3);
  for (int64_t KB : {5, 12}) {
    SCOPED_TRACE("key block " + std::to_string(KB));
    CpuBackend cpu(1);
    std::vector<float> want(size_t(T * ldo), 0.0f), ml(size_t(2 * T * nh));
    for (int64_t j0 = 0; j0 < N; j0 += KB) {
      const int64_t nb = std::min(KB, N - j0);
      cpu.mla_attention_block(q.data(), ldq, kvb.data() + j0 * ldkvb, ldkvb, kr.data() + j0 * ldkr, ldkr, j0, nb,
                              ml.data(), ml.data() + T * nh, want.data(), ldo, T, pos0, nh, dn, dr, dv, scale, j0 == 0,
                              j0 + nb >= N);
    }
    for_two_schedules(kScheduleSeed, [&] {
      simt::Capture cap;
      std::vector<float> out(want.size(), 0.0f), gml(ml.size(), 0.0f);
      for (int64_t j0 = 0; j0 < N; j0 += KB) {
        const int64_t nb = std::min(KB, N - j0);
        MlaBlockArgs a{q.data(), ldq, kvb.data() + j0 * ldkvb, ldkvb, kr.data() + j0 * ldkr, ldkr, j0, nb,
                       gml.data(), gml.data() + T * nh, out.data(), ldo, T, pos0, nullptr, nh, dn, dr, dv, scale,
                       j0 == 0, j0 + nb >= N};
        launch_mla_attention_block(a, nullptr);
      }
      EXPECT_CLEAN(cap);
      expect_rows_near(out, want, T, nh * dv, ldo, "mla_attention_block");
    });
  }
}

// ------------------------------------------------------------------ DeepSeek-V3 through the emulated backend

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

models::DeepseekV3& ds(Transformer& m) { return dynamic_cast<models::DeepseekV3&>(m); }

// Prompt logits with each MLA form (naive in 5-key blocks, absorbed in 7-row steps) match HF within 1e-4: each form
// on one fixture (the emulator's time; the decode test below runs both fixtures through the absorbed form).
TEST(SimtMlaModel, DeepseekPrefillMatchesHF) {
  struct Case {
    const char* name;
    models::MlaMode mode;
  };
  for (const Case& c : {Case{"dsv3_qlora_yarn", models::MlaMode::Naive}, Case{"dsv3_v2lite", models::MlaMode::Absorbed}}) {
    const char* name = c.name;
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
    const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
    const auto want = read_vec<float>(*ref, "logits");
    {
      const models::MlaMode mode = c.mode;
      const bool naive = mode == models::MlaMode::Naive;
      SCOPED_TRACE(std::string(name) + (naive ? " naive" : " absorbed"));
      ds(*m).mla_mode = mode;
      ds(*m).mla_key_block = naive ? 5 : 256;
      ds(*m).mla_absorb_rows = naive ? 64 : 7;
      Session s(*m, 64, cuda_fp32(), 64);
      s.eval(ids.data(), int64_t(ids.size()), true);
      const float d = max_diff(s.logits(), want.data(), want.size());
      std::printf("[%s, %s] emulated CUDA, max |logit - HF| %.3g\n", name, naive ? "naive" : "absorbed", d);
      EXPECT_LE(d, 1e-4f);
    }
  }
}

// Decode (absorbed MLA, batch-1 experts, decode graphs) equals the CPU backend step by step and HF's greedy tokens.
TEST(SimtMlaModel, DeepseekDecodeGraphMatchesCpuAndHF) {
  for (const char* name : {"dsv3_qlora_yarn", "dsv3_v2lite"}) {
    SCOPED_TRACE(name);
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
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
}

// MTP on the emulated backend: draft logits equal the CPU backend's, and speculative greedy decoding gives plain
// greedy decoding's tokens (HF's greedy continuation), with drafts both accepted and rejected; the MTP steps and the
// main model's steps each replay their own decode graph.
TEST(SimtMlaModel, MtpSpeculativeGreedyEqualsPlain) {
  auto m = Transformer::load(model_dir("dsv3_mtp"), LoadOptions{}, false);
  ASSERT_EQ(m->mtp_layers(), 1);
  auto ref = SafeTensors::open_file(model_dir("dsv3_mtp") + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  const auto next = read_vec<int32_t>(*ref, "mtp_next_ids");
  const auto want = read_vec<float>(*ref, "mtp_logits");
  const int64_t V = m->vocab_size();
  {
    Session gpu(*m, 64, cuda_fp32(), 64);
    std::vector<float> got(static_cast<size_t>(V));
    for (int64_t i = 0; i < 4; ++i) {
      gpu.eval(&ids[size_t(i)], 1, false);
      int32_t d = -1;
      ASSERT_EQ(gpu.draft(next[size_t(i)], 1, &d, got.data()), 1);
      EXPECT_LE(max_diff(got.data(), want.data() + i * V, size_t(V)), 1e-4f) << "position " << i;
    }
  }
  const auto gp = read_vec<int32_t>(*ref, "greedy_prompt");
  const auto hf = read_vec<int32_t>(*ref, "greedy_tokens");
  const int n = 12;
  const std::vector<int32_t> hf_n(hf.begin(), hf.begin() + n);
  infer_sampler_params p{};
  p.temperature = 0;
  p.top_p = 1;
  p.repetition_penalty = 1;
  for (int32_t n_draft : {0, 2}) {
    SCOPED_TRACE("n_draft " + std::to_string(n_draft));
    auto backend = cuda_fp32();
    CudaBackend* be = backend.get();
    Session s(*m, 64, std::move(backend), 64);
    if (n_draft == 0) s.set_mtp(false);
    Sampler sampler(p);
    GenerateOptions o;
    o.max_tokens = n;
    o.ignore_eos = true;
    o.n_draft = std::max(1, n_draft);
    std::vector<int32_t> toks;
    const infer_generate_result res =
        generate(s, gp.data(), int64_t(gp.size()), sampler, o, [&](const infer_token_info& t) {
          if (t.id >= 0) toks.push_back(t.id);
          return true;
        });
    EXPECT_EQ(toks, hf_n);
    if (n_draft > 0) {
      std::printf("[dsv3_mtp] emulated CUDA, n_draft %d: %d of %d drafts accepted; %lld graph captures, %lld replays\n",
                  n_draft, res.draft_accepted, res.draft_tokens, (long long)be->stats().graph_captures,
                  (long long)be->stats().graph_replays);
      EXPECT_GT(res.draft_accepted, 0);
      EXPECT_LT(res.draft_accepted, res.draft_tokens);
      EXPECT_GT(be->stats().graph_replays, 0);
    }
  }
}

}  // namespace
