// test_models_moe.cpp — Qwen3-MoE beyond the generic HF parity tests in test_models.cpp (which run qwen3_moe_top2
// and qwen3_moe_sparse: logits, layer outputs, greedy, KV cache, threads, CPU paths): the routing itself (unit
// tests of route_tokens, the experts HF chose for every prompt token), that experts run only on the rows routed
// to them, chunked prefill, dump names, and the config/checkpoint disagreements that must fail at load.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixtures.h"

#include "forwarding_backend.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common.h"
#include "cpu/backend_cpu.h"
#include "model.h"
#include "models/moe.h"
#include "safetensors.h"
#include "session.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using namespace infer;
using namespace infer::testutil;
using infer::models::Router;

namespace {

// ---- route_tokens

TEST(MoeRouting, SoftmaxTopKRenormalised) {
  Router r;
  r.scoring = Router::Scoring::Softmax;
  r.n_experts = 4;
  r.top_k = 2;
  const float logits[] = {0.5f, 2.0f, -1.0f, 1.0f};
  int32_t ids[2];
  float w[2];
  route_tokens(r, logits, 4, nullptr, 1, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  double z = 0;
  for (float l : logits) z += std::exp(double(l));
  EXPECT_NEAR(w[0], std::exp(2.0) / z, 1e-6);  // without norm_topk_prob: the softmax probabilities
  EXPECT_NEAR(w[1], std::exp(1.0) / z, 1e-6);
  r.norm_topk_prob = true;
  route_tokens(r, logits, 4, nullptr, 1, ids, w);
  EXPECT_NEAR(w[0], std::exp(2.0) / (std::exp(2.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6);
}

TEST(MoeRouting, SigmoidGroupLimitedBiasChoosesOnly) {
  // 8 experts in 4 groups of 2; 2 groups allowed; top-2. Expert 0 has the best single score, but its group
  // {0, 1} has the worst pair sum, so group routing must exclude it.
  Router r;
  r.scoring = Router::Scoring::Sigmoid;
  r.n_experts = 8;
  r.top_k = 2;
  r.n_group = 4;
  r.topk_group = 2;
  r.norm_topk_prob = true;
  r.routed_scaling_factor = 2.5f;
  auto logit = [](float s) { return std::log(s / (1 - s)); };  // sigmoid^-1
  const float s[8] = {0.95f, 0.05f, 0.6f, 0.55f, 0.7f, 0.5f, 0.4f, 0.45f};
  float logits[8];
  for (int i = 0; i < 8; ++i) logits[i] = logit(s[i]);
  // Group sums: {1.00, 1.15, 1.20, 0.85} → groups 2 and 1 → candidates 2, 3, 4, 5.
  int32_t ids[2];
  float w[2];
  route_tokens(r, logits, 8, nullptr, 1, ids, w);
  EXPECT_EQ(ids[0], 4);
  EXPECT_EQ(ids[1], 2);
  EXPECT_NEAR(w[0], 2.5f * 0.7f / 1.3f, 1e-5);
  EXPECT_NEAR(w[1], 2.5f * 0.6f / 1.3f, 1e-5);
  // Without the group restriction expert 0 wins.
  Router free = r;
  free.n_group = 1;
  free.topk_group = 1;
  route_tokens(free, logits, 8, nullptr, 1, ids, w);
  EXPECT_EQ(ids[0], 0);
  // The score bias changes the choice, not the weight: +0.3 on expert 5 makes it the best (0.8).
  float bias[8] = {0, 0, 0, 0, 0, 0.3f, 0, 0};
  route_tokens(r, logits, 8, bias, 1, ids, w);
  EXPECT_EQ(ids[0], 5);  // 0.5 + 0.3
  EXPECT_EQ(ids[1], 4);
  EXPECT_NEAR(w[0], 2.5f * 0.5f / 1.2f, 1e-5);  // weights from the unbiased sigmoid
  // norm_topk_prob off: plain sigmoid × scaling.
  r.norm_topk_prob = false;
  route_tokens(r, logits, 8, nullptr, 1, ids, w);
  EXPECT_NEAR(w[0], 2.5f * 0.7f, 1e-5);
}

// ---- against the HF fixtures

// The experts chosen for every prompt token in every MoE layer are HF's (reference router_topk_L{l}, best first).
// The fixture script guarantees a gap >= 2e-4 between the last chosen and the first rejected probability, far
// above the ~1e-6 by which fp32 summation orders differ, so the choice must agree exactly.
TEST(MoeParity, RouterChoicesMatchHF) {
  for (const char* name : {"qwen3_moe_top2", "qwen3_moe_sparse"}) {
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
    const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
    std::map<std::string, std::vector<float>> got;
    DumpFn fn = [&](const std::string& n, const float* d, int64_t r, int64_t c) { got[n].assign(d, d + r * c); };
    Session s(*m, 64, 2, 64);
    s.eval(ids.data(), int64_t(ids.size()), true, &fn);
    int n_layers = 0;
    for (int64_t l = 0; l < m->config.num_hidden_layers; ++l) {
      const std::string key = "router_topk_L" + std::to_string(l);
      const std::string dkey = "layers." + std::to_string(l) + ".router_topk";
      if (!ref->find(key)) {
        EXPECT_EQ(got.count(dkey), 0u) << name << ": layer " << l << " is dense in HF but routed here";
        continue;
      }
      ++n_layers;
      const auto want = read_vec<int32_t>(*ref, key);
      ASSERT_EQ(got[dkey].size(), want.size()) << name << " " << dkey;
      for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(int32_t(got[dkey][i]), want[i]) << name << " " << dkey << "[" << i << "]";
      EXPECT_EQ(got.count("layers." + std::to_string(l) + ".router_logits"), 1u);
      EXPECT_EQ(got.count("layers." + std::to_string(l) + ".router_weights"), 1u);
    }
    EXPECT_EQ(n_layers, std::string(name) == "qwen3_moe_top2" ? 2 : 2) << name;
  }
}

// Prefill in chunks of 5 tokens (experts see different row groups) gives the logits of one 24-token chunk: each
// output row is computed by the same kernels in the same order whatever the batch composition.
TEST(MoeParity, ChunkedPrefillEqualsOneChunk) {
  auto m = Transformer::load(model_dir("qwen3_moe_top2"), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir("qwen3_moe_top2") + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  Session a(*m, 64, 2, 64), b(*m, 64, 2, 5);
  a.eval(ids.data(), int64_t(ids.size()), true);
  b.eval(ids.data(), int64_t(ids.size()), true);
  const size_t n = ids.size() * size_t(m->vocab_size());
  float worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(a.logits()[i] - b.logits()[i]));
  EXPECT_LE(worst, 1e-6f);
}

// A backend that counts the rows each weight matrix is multiplied with (everything forwarded to the CPU backend).
class CountingBackend final : public ForwardingBackend {
 public:
  std::map<const void*, int64_t> rows;  // weight data pointer → rows (tokens) it was applied to
  std::string name() const override { return "counting-cpu"; }
  void matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) override {
    rows[w.data] += T;
    ForwardingBackend::matmul(x, ldx, w, y, ldy, T);
  }
};

// Experts run only on the tokens routed to them: over a 24-token prefill every expert's gate/up/down projections
// see exactly the rows routed to it (HF's router choices), T·k rows in all per layer — not T·E.
TEST(MoeParity, ExpertsRunOnlyOnRoutedRows) {
  const std::string name = "qwen3_moe_top2";
  auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  auto be = std::make_unique<CountingBackend>();
  CountingBackend* counter = be.get();
  Session s(*m, 64, std::move(be), 64);
  s.eval(ids.data(), int64_t(ids.size()), true);
  const int64_t E = 8, k = 2, T = int64_t(ids.size());
  for (int64_t l = 0; l < m->config.num_hidden_layers; ++l) {
    const auto want = read_vec<int32_t>(*ref, "router_topk_L" + std::to_string(l));
    std::vector<int64_t> routed(E, 0);
    for (int32_t e : want) routed[size_t(e)]++;
    int64_t total = 0;
    for (int64_t e = 0; e < E; ++e) {
      const std::string p = "model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(e) + ".";
      for (const char* proj : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}) {
        const void* data = m->weights->get(p + proj).data;
        const int64_t n = counter->rows.count(data) ? counter->rows[data] : 0;
        EXPECT_EQ(n, routed[size_t(e)]) << p << proj;
      }
      total += routed[size_t(e)];
    }
    EXPECT_EQ(total, T * k);
    EXPECT_EQ(counter->rows[m->weights->get("model.layers." + std::to_string(l) + ".mlp.gate.weight").data], T);
  }
}

// ---- config ↔ checkpoint disagreements

TEST(MoeLoad, FewerExpertsInConfigThanCheckpoint) {
  FixtureCopy d("qwen3_moe_top2", "fewer");
  d.edit([](nlohmann::json& j) { j["num_experts"] = 6; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  // The router shape catches it first ([8, 64] vs [6, 64]), naming num_experts.
  EXPECT_THAT(e, HasSubstr("model.layers.0.mlp.gate.weight"));
  EXPECT_THAT(e, HasSubstr("num_experts"));
}

TEST(MoeLoad, ExtraExpertTensorsNamed) {
  // Router and experts agree with config (6 experts) but the checkpoint still holds experts 6 and 7.
  FixtureCopy d("qwen3_moe_top2", "extra");
  {
    auto st = SafeTensors::open_dir(model_dir("qwen3_moe_top2"));
    std::vector<WriteTensor> w;
    std::vector<std::vector<float>> keep;
    for (const auto& [n, t] : st->tensors()) {
      keep.emplace_back(static_cast<size_t>(t.numel()));
      cpu::row_to_f32(t.data, t.dtype, keep.back().data(), t.numel());
      std::vector<int64_t> shape = t.shape;
      if (n.ends_with("mlp.gate.weight")) shape[0] = 6;  // the first 6 router rows
      w.push_back({n, DType::F32, shape, keep.back().data()});
    }
    write_safetensors((d.dir / "model.safetensors").string(), w);
  }
  d.edit([](nlohmann::json& j) { j["num_experts"] = 6; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("model.layers.0.mlp.experts.6."));
  EXPECT_THAT(e, HasSubstr("num_experts=6"));
}

TEST(MoeLoad, MoreExpertsInConfigThanCheckpoint) {
  FixtureCopy d("qwen3_moe_top2", "more");
  {
    // Router with 10 rows, experts 0..7 only.
    auto st = SafeTensors::open_dir(model_dir("qwen3_moe_top2"));
    std::vector<WriteTensor> w;
    std::vector<std::vector<float>> keep;
    for (const auto& [n, t] : st->tensors()) {
      std::vector<int64_t> shape = t.shape;
      if (n.ends_with("mlp.gate.weight")) shape[0] = 10;
      keep.emplace_back(static_cast<size_t>(shape[0] * (shape.size() > 1 ? shape[1] : 1)), 0.f);
      cpu::row_to_f32(t.data, t.dtype, keep.back().data(), t.numel());
      w.push_back({n, DType::F32, shape, keep.back().data()});
    }
    write_safetensors((d.dir / "model.safetensors").string(), w);
  }
  d.edit([](nlohmann::json& j) { j["num_experts"] = 10; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("missing tensor model.layers.0.mlp.experts.8.gate_proj.weight"));
  EXPECT_THAT(e, HasSubstr("num_experts=10"));
}

TEST(MoeLoad, TopKAboveExpertCount) {
  FixtureCopy d("qwen3_moe_top2", "topk");
  d.edit([](nlohmann::json& j) { j["num_experts_per_tok"] = 9; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("num_experts_per_tok"));
}

TEST(MoeLoad, Describe) {
  auto m = Transformer::load(model_dir("qwen3_moe_sparse"), LoadOptions{}, false);
  EXPECT_THAT(m->describe(), HasSubstr("MoE 2/6 layers: 8 experts top-4"));
}

}  // namespace
