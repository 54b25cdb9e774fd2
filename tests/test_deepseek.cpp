// test_deepseek.cpp — DeepSeek-V3 / R1 beyond the generic HF parity tests in test_models.cpp (which run
// dsv3_qlora_yarn and dsv3_v2lite through the automatic MLA path: naive for the 24-token prefill, absorbed for
// decode): both MLA forms forced against HF and against each other, several key blocks, the cache size, YaRN,
// group-limited routing, dump names and the config errors.
//
// Tolerances: the references are HF float32 on the bf16 weights; the engine is float32 with fp32 accumulation
// (test_models.cpp explains the 1e-4 bound on logits). The absorbed form computes the same attention with the
// matrix products re-associated (q·(W_UK·c) = (q·W_UK)·c, Σ p·(W_UV·c) = W_UV·Σ p·c) and the blocked naive
// form uses a running softmax; both only reorder fp32 sums (observed ~1e-5 on logits of |x| <= 10), so 1e-4
// holds for them as well while a wrong scale, rope layout or missing norm moves logits by >= 1e-2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixtures.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "common.h"
#include "model.h"
#include "models/deepseek_v3.h"
#include "models/moe.h"
#include "rope.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using namespace infer;
using namespace infer::testutil;
using infer::models::DeepseekV3;
using infer::models::MlaMode;

namespace {

constexpr float kTol = 1e-4f;
const char* kDsModels[] = {"dsv3_qlora_yarn", "dsv3_v2lite"};

DeepseekV3& ds(Transformer& m) { return dynamic_cast<DeepseekV3&>(m); }

float max_diff(const float* a, const float* b, size_t n) {
  float w = 0;
  for (size_t i = 0; i < n; ++i) w = std::max(w, std::fabs(a[i] - b[i]));
  return w;
}

class DsParity : public ::testing::TestWithParam<const char*> {};

// Prompt logits with each MLA form forced (and the naive form split into 5-key blocks, so the running softmax
// spans several blocks) all match HF.
TEST_P(DsParity, EveryMlaFormMatchesHF) {
  auto m = Transformer::load(model_dir(GetParam()), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir(GetParam()) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  const auto want = read_vec<float>(*ref, "logits");
  struct Case {
    MlaMode mode;
    int64_t key_block, absorb_rows;
    const char* what;
  };
  for (const Case& c : {Case{MlaMode::Naive, 256, 64, "naive"}, Case{MlaMode::Naive, 5, 64, "naive, 5-key blocks"},
                        Case{MlaMode::Absorbed, 256, 64, "absorbed"},
                        Case{MlaMode::Absorbed, 256, 7, "absorbed, 7-row steps"}}) {
    ds(*m).mla_mode = c.mode;
    ds(*m).mla_key_block = c.key_block;
    ds(*m).mla_absorb_rows = c.absorb_rows;
    Session s(*m, 64, 2, 64);
    s.eval(ids.data(), int64_t(ids.size()), true);
    const float d = max_diff(s.logits(), want.data(), want.size());
    std::printf("[%s] %s: max |logit - HF| %.3g\n", GetParam(), c.what, d);
    EXPECT_LE(d, kTol) << c.what;
  }
}

// Decoding token by token with the absorbed form (the automatic choice for T = 1) gives the logits of the naive
// full-prompt forward at every position.
TEST_P(DsParity, AbsorbedDecodeEqualsNaivePrefill) {
  auto m = Transformer::load(model_dir(GetParam()), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir(GetParam()) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  const int64_t V = m->vocab_size(), T = int64_t(ids.size());
  ds(*m).mla_mode = MlaMode::Naive;
  Session full(*m, 64, 2, 64);
  full.eval(ids.data(), T, true);
  ds(*m).mla_mode = MlaMode::Auto;
  EXPECT_EQ(ds(*m).choose_mla(1, 10), MlaMode::Absorbed);
  EXPECT_EQ(ds(*m).choose_mla(24, 0), MlaMode::Naive);
  Session inc(*m, 64, 2, 64);
  for (int64_t t = 0; t < T; ++t) {
    inc.eval(&ids[size_t(t)], 1, false);
    const float d = max_diff(inc.logits(), full.logits() + t * V, size_t(V));
    EXPECT_LE(d, kTol) << "position " << t;
  }
}

// 100 tokens prefilled in chunks of 16 (later chunks attend to a cached prefix), with the automatic choice, all
// naive with 7-key blocks, and all absorbed: the same logits for every position.
TEST_P(DsParity, ChunkedPrefillFormsAgree) {
  auto m = Transformer::load(model_dir(GetParam()), LoadOptions{}, false);
  std::mt19937 rng(7);
  std::vector<int32_t> ids(100);
  for (auto& x : ids) x = int32_t(4 + rng() % uint32_t(m->vocab_size() - 4));
  std::vector<std::vector<float>> out;
  for (MlaMode mode : {MlaMode::Auto, MlaMode::Naive, MlaMode::Absorbed}) {
    ds(*m).mla_mode = mode;
    ds(*m).mla_key_block = 7;
    Session s(*m, 128, 2, 16);
    s.eval(ids.data(), int64_t(ids.size()), true);
    out.emplace_back(s.logits(), s.logits() + ids.size() * size_t(m->vocab_size()));
  }
  EXPECT_LE(max_diff(out[0].data(), out[1].data(), out[0].size()), kTol);
  EXPECT_LE(max_diff(out[0].data(), out[2].data(), out[0].size()), kTol);
}

// The experts HF chose for every prompt token (exact: the fixture guarantees routing gaps >= 2e-4).
TEST_P(DsParity, RouterChoicesMatchHF) {
  auto m = Transformer::load(model_dir(GetParam()), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir(GetParam()) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  std::map<std::string, std::vector<float>> got;
  DumpFn fn = [&](const std::string& n, const float* d, int64_t r, int64_t c) { got[n].assign(d, d + r * c); };
  Session s(*m, 64, 2, 64);
  s.eval(ids.data(), int64_t(ids.size()), true, &fn);
  for (int64_t l = 0; l < m->config.num_hidden_layers; ++l) {
    const std::string key = "router_topk_L" + std::to_string(l), dkey = "layers." + std::to_string(l) + ".router_topk";
    if (!ref->find(key)) {
      EXPECT_EQ(got.count(dkey), 0u) << "layer " << l << " is dense";
      continue;
    }
    const auto want = read_vec<int32_t>(*ref, key);
    ASSERT_EQ(got[dkey].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(int32_t(got[dkey][i]), want[i]) << dkey << "[" << i << "]";
  }
  for (const char* n : {"layers.0.q", "layers.0.kv_latent", "layers.0.attn", "layers.0.attn_out", "layers.0.ffn_out",
                        "layers.1.router_logits", "layers.1.router_weights", "layers.1.shared_out", "final_norm"})
    EXPECT_EQ(got.count(n), 1u) << n;
  const auto& c = m->config;
  EXPECT_EQ(got["layers.0.kv_latent"].size(), ids.size() * size_t(ds(*m).kv_bytes_per_token() / 4 / c.num_hidden_layers));
}

INSTANTIATE_TEST_SUITE_P(Tiny, DsParity, ::testing::ValuesIn(kDsModels),
                         [](const auto& info) { return std::string(info.param); });

// Group-limited routing really restricted the choice: every token's experts lie in at most topk_group (2) groups
// of the 4, and for some tokens the unrestricted top-4 of the biased scores would have used an excluded group.
TEST(Deepseek, GroupLimitedRoutingExcludesGroups) {
  const std::string name = "dsv3_qlora_yarn";
  auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  std::map<std::string, std::vector<float>> got;
  DumpFn fn = [&](const std::string& n, const float* d, int64_t r, int64_t c) { got[n].assign(d, d + r * c); };
  Session s(*m, 64, 2, 64);
  s.eval(ids.data(), int64_t(ids.size()), true, &fn);
  const int64_t E = 16, k = 4, gsize = 4;
  int excluded_wins = 0;
  for (int64_t l = 1; l < 3; ++l) {
    const auto& logits = got["layers." + std::to_string(l) + ".router_logits"];
    const auto& topk = got["layers." + std::to_string(l) + ".router_topk"];
    const auto bias = read_vec<float>(*m->weights, "model.layers." + std::to_string(l) + ".mlp.gate.e_score_correction_bias");
    for (size_t t = 0; t < ids.size(); ++t) {
      std::set<int64_t> groups;
      for (int64_t j = 0; j < k; ++j) groups.insert(int64_t(topk[t * k + j]) / gsize);
      EXPECT_LE(groups.size(), 2u);
      std::vector<std::pair<float, int64_t>> sc;
      for (int64_t e = 0; e < E; ++e) sc.push_back({1.0f / (1.0f + std::exp(-logits[t * E + e])) + bias[e], e});
      std::sort(sc.rbegin(), sc.rend());
      for (int64_t j = 0; j < k; ++j)
        if (!groups.count(sc[j].second / gsize)) {
          ++excluded_wins;
          break;
        }
    }
  }
  std::printf("tokens whose unrestricted top-4 would reach an excluded group: %d of 48\n", excluded_wins);
  EXPECT_GT(excluded_wins, 0);
}

// The YaRN table (factor 4 taken as given although max_position_embeddings / original = 8: transformers 4.57),
// its cos/sin scale get_mscale(4, 1.0) / get_mscale(4, 0.8), and the softmax scale.
TEST(Deepseek, YarnMatchesHF) {
  auto m = Transformer::load(model_dir("dsv3_qlora_yarn"), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir("dsv3_qlora_yarn") + "/reference.safetensors");
  const auto want = read_vec<float>(*ref, "rope_inv_freq");
  const auto& c = m->config;
  const RopeTable t = make_rope_table(8, c.rope_theta, c.rope_scaling, c.max_position_embeddings);
  ASSERT_EQ(t.inv_freq.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_LE(std::fabs(t.inv_freq[i] - want[i]), 1.2e-7f * want[i]) << i;
  const double ms = [](double f, double m) { return 0.1 * m * std::log(f) + 1.0; }(4.0, 1.0) /
                    [](double f, double m) { return 0.1 * m * std::log(f) + 1.0; }(4.0, 0.8);
  EXPECT_NEAR(t.attention_scaling, ms, 1e-6);
  EXPECT_NEAR(std::stod(ref->metadata().at("rope_attention_scaling")), ms, 1e-12);  // HF's Python double
}

TEST(Deepseek, KvBytesPerTokenIsTheLatent) {
  for (const char* name : kDsModels) {
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    const int64_t L = m->config.num_hidden_layers;
    const int64_t rope = std::string(name) == "dsv3_v2lite" ? 16 : 8;
    // (kv_lora_rank + qk_rope_head_dim) × layers × 4 bytes (fp32 cache).
    EXPECT_EQ(m->kv_bytes_per_token(), (32 + rope) * L * 4) << name;
    EXPECT_EQ(ds(*m).mtp_kv_bytes_per_token(), 0) << name;
    EXPECT_THAT(m->describe(), HasSubstr("KV cache " + std::to_string(32 + rope) + " values/token/layer")) << name;
  }
}

// ---- config errors

TEST(DeepseekLoad, ConfigErrors) {
  struct Case {
    const char* tag;
    std::function<void(nlohmann::json&)> edit;
    infer_status code;
    const char* needle;
  };
  const Case cases[] = {
      {"scoring", [](auto& j) { j["scoring_func"] = "softmax"; }, INFER_ERR_UNSUPPORTED, "scoring_func 'softmax'"},
      {"method", [](auto& j) { j["topk_method"] = "greedy"; }, INFER_ERR_UNSUPPORTED, "topk_method 'greedy'"},
      {"bias", [](auto& j) { j["attention_bias"] = true; }, INFER_ERR_UNSUPPORTED, "attention_bias"},
      {"ngroup", [](auto& j) { j["n_group"] = 3; }, INFER_ERR_FORMAT, "'n_group'"},
      {"topkgroup", [](auto& j) { j["topk_group"] = 5; }, INFER_ERR_FORMAT, "'topk_group'"},
      {"topk", [](auto& j) { j["num_experts_per_tok"] = 9; }, INFER_ERR_FORMAT, "'num_experts_per_tok'"},
      {"rope", [](auto& j) { j["qk_rope_head_dim"] = 7; }, INFER_ERR_FORMAT, "qk_rope_head_dim"},
      {"experts", [](auto& j) { j["n_routed_experts"] = 12; }, INFER_ERR_FORMAT, "n_routed_experts"},
      {"lora", [](auto& j) { j["q_lora_rank"] = nullptr; }, INFER_ERR_FORMAT, "self_attn.q_proj.weight"},
      {"kvlora", [](auto& j) { j["kv_lora_rank"] = 16; }, INFER_ERR_FORMAT, "kv_lora_rank"},
  };
  for (const Case& c : cases) {
    FixtureCopy d("dsv3_qlora_yarn", c.tag);
    d.edit(c.edit);
    infer_status code{};
    const std::string e = load_error(d.dir, &code);
    EXPECT_EQ(code, c.code) << c.tag << ": " << e;
    EXPECT_THAT(e, HasSubstr(c.needle)) << c.tag;
  }
}

}  // namespace
