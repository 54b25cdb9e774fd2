// test_llama_qwen2.cpp — Llama and Qwen2 (the R1-Distill architectures) beyond the generic HF parity tests in
// test_models.cpp (which run llama_rope3 and qwen2_bias): the llama3 RoPE table against HF's, and the config
// cases these architectures refuse.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixtures.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model.h"
#include "rope.h"
#include "safetensors.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using namespace infer;
using namespace infer::testutil;

namespace {

// The RoPE frequencies the engine uses equal transformers' inv_freq (stored by the fixture script). llama_rope3
// has one frequency of each llama3 kind (kept, smoothed, divided by factor). rope.cpp mirrors torch's fp32 order
// of operations, so the tables agree to the last bit; 1 ulp is allowed for libm differences in pow().
TEST(LlamaQwen2, RopeTableMatchesHF) {
  for (const char* name : {"llama_rope3", "qwen2_bias"}) {
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
    const auto want = read_vec<float>(*ref, "rope_inv_freq");
    const auto& c = m->config;
    const RopeTable t = make_rope_table(c.head_dim, c.rope_theta, c.rope_scaling, c.max_position_embeddings);
    ASSERT_EQ(t.inv_freq.size(), want.size()) << name;
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LE(std::fabs(t.inv_freq[i] - want[i]), std::fabs(want[i]) * 1.2e-7f) << name << " inv_freq[" << i << "]";
    EXPECT_EQ(t.attention_scaling, 1.0f);
  }
  // The three llama3 cases really occur in the fixture: frequency 0 kept, 1 smoothed, 2.. divided by 8.
  auto m = Transformer::load(model_dir("llama_rope3"), LoadOptions{}, false);
  const auto& c = m->config;
  RopeScaling plain;
  const RopeTable base = make_rope_table(c.head_dim, c.rope_theta, plain, c.max_position_embeddings);
  const RopeTable t = make_rope_table(c.head_dim, c.rope_theta, c.rope_scaling, c.max_position_embeddings);
  EXPECT_EQ(t.inv_freq[0], base.inv_freq[0]);
  EXPECT_GT(t.inv_freq[1], base.inv_freq[1] / 8.0f * 1.01f);
  EXPECT_LT(t.inv_freq[1], base.inv_freq[1] * 0.99f);
  for (size_t i = 2; i < t.inv_freq.size(); ++i) EXPECT_FLOAT_EQ(t.inv_freq[i], base.inv_freq[i] / 8.0f);
}

TEST(LlamaQwen2, KvBytesPerToken) {
  auto m = Transformer::load(model_dir("llama_rope3"), LoadOptions{}, false);
  // 2 layers × (K + V) × 2 kv heads × head_dim 16 × fp32.
  EXPECT_EQ(m->kv_bytes_per_token(), 2 * 2 * 2 * 16 * 4);
  EXPECT_THAT(m->describe(), HasSubstr("llama 2L"));
}

// A copy of a fixture directory (config + weights) whose config.json a test may edit.
TEST(LlamaQwen2, LlamaBiasRefused) {
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    FixtureCopy d("llama_rope3", key);
    d.edit([&](nlohmann::json& j) { j[key] = true; });
    infer_status code{};
    const std::string e = load_error(d.dir, &code);
    EXPECT_EQ(code, INFER_ERR_UNSUPPORTED) << e;
    EXPECT_THAT(e, HasSubstr(key));
  }
}

TEST(LlamaQwen2, Qwen2SlidingWindowRefused) {
  FixtureCopy d("qwen2_bias", "swa");
  d.edit([](nlohmann::json& j) { j["use_sliding_window"] = true; });
  infer_status code{};
  EXPECT_THAT(load_error(d.dir, &code), HasSubstr("use_sliding_window"));
  EXPECT_EQ(code, INFER_ERR_UNSUPPORTED);
}

TEST(LlamaQwen2, Qwen2WithoutBiasTensorsIsAFormatError) {
  // A Llama checkpoint relabelled qwen2: the q/k/v biases Qwen2 always has are missing.
  FixtureCopy d("llama_rope3", "nobias");
  d.edit([](nlohmann::json& j) {
    j["model_type"] = "qwen2";
    j.erase("rope_scaling");
  });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("model.layers.0.self_attn.q_proj.bias"));
}

}  // namespace
