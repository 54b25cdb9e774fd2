// test_hf_config.cpp — config.json / generation_config.json parsing: HF defaults, 4.x and v5 rope keys,
// and one test per error, checking the status code and that the message names the file and field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common.h"
#include "hf_config.h"

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using nlohmann::json;
using namespace infer;

namespace {

infer::Error capture_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const infer::Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected an infer::Error";
  return infer::Error(INFER_OK, "");
}

std::string msg(const infer::Error& e) { return e.what(); }

// Qwen/Qwen3-0.6B config.json as published on the Hub.
const char* kQwen3_0_6B = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// The smallest config that parses: required fields only.
json minimal() {
  return json{{"model_type", "qwen3"},         {"vocab_size", 64},          {"hidden_size", 32},
              {"intermediate_size", 48},       {"num_hidden_layers", 2},   {"num_attention_heads", 4}};
}

ModelConfig parse(const json& j) { return parse_model_config(j.dump(), "/m/config.json"); }
infer::Error parse_error(const json& j) {
  return capture_error([&] { parse_model_config(j.dump(), "/m/config.json"); });
}

class ConfigDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "infer_cfg_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(dir_ / name, std::ios::binary);
    out << text;
    ASSERT_TRUE(out.good());
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------------
// config.json: positive cases

TEST(HfConfig, SupportedModelTypes) { EXPECT_THAT(supported_model_types(), ElementsAre("qwen3", "llama", "qwen2", "qwen3_moe", "deepseek_v3")); }

TEST(HfConfig, ParsesQwen3_0_6B) {
  ModelConfig c = parse_model_config(kQwen3_0_6B, "config.json");
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.num_hidden_layers, 28);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // ≠ hidden/heads = 64
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(151645));
  EXPECT_FALSE(c.random_weights);
  EXPECT_EQ(c.raw_json, kQwen3_0_6B);
}

TEST(HfConfig, DefaultsWhenOptionalKeysAreAbsent) {
  ModelConfig c = parse(minimal());
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 128);  // transformers Qwen3Config(head_dim=128) when the key is absent
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(HfConfig, NullHeadDimAndKvHeadsFallBackToHiddenOverHeadsAndHeads) {
  json j = minimal();
  j["head_dim"] = nullptr;
  j["num_key_value_heads"] = nullptr;
  ModelConfig c = parse(j);
  EXPECT_EQ(c.head_dim, 8);  // 32 / 4
  EXPECT_EQ(c.num_key_value_heads, 4);
}

TEST(HfConfig, EosListBosNullAndRandomWeights) {
  json j = minimal();
  j["eos_token_id"] = {151645, 151643};
  j["bos_token_id"] = nullptr;
  j["infer_random_weights"] = true;
  ModelConfig c = parse(j);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(151645, 151643));
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.random_weights);
}

TEST(HfConfig, IntegralFloatAcceptedForIntegerField) {
  json j = minimal();
  j["max_position_embeddings"] = 4096.0;
  EXPECT_EQ(parse(j).max_position_embeddings, 4096);
}

// transformers v5 writes rope_theta and the scaling into rope_parameters, and "dtype" for "torch_dtype".
TEST(HfConfig, ParsesV5RopeParameters) {
  json j = minimal();
  j["max_position_embeddings"] = 131072;
  j["rope_parameters"] = {{"rope_type", "yarn"},
                          {"rope_theta", 1000000.0},
                          {"factor", 4.0},
                          {"original_max_position_embeddings", 32768}};
  j["dtype"] = "float16";
  ModelConfig c = parse(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, 0.0);
  EXPECT_TRUE(c.rope_scaling.truncate);
  EXPECT_EQ(c.torch_dtype, "float16");
}

TEST(HfConfig, ParsesV5DefaultRopeParameters) {
  json j = minimal();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  ModelConfig c = parse(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 1.0);
}

// DeepSeek-V3's rope_scaling (4.x style, "type" instead of "rope_type").
TEST(HfConfig, ParsesYarnRopeScalingWithTypeKey) {
  json j = minimal();
  j["rope_scaling"] = json::parse(R"({"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
      "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0, "truncate": false,
      "attention_factor": 1.25})");
  ModelConfig c = parse(j);
  const RopeScaling& r = c.rope_scaling;
  EXPECT_EQ(r.type, "yarn");
  EXPECT_DOUBLE_EQ(r.factor, 40.0);
  EXPECT_EQ(r.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(r.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(r.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(r.mscale, 1.0);
  EXPECT_DOUBLE_EQ(r.mscale_all_dim, 1.0);
  EXPECT_DOUBLE_EQ(r.attention_factor, 1.25);
  EXPECT_FALSE(r.truncate);
}

// Llama-3.1's rope_scaling; rope_type wins over type when both are present.
TEST(HfConfig, ParsesLlama3RopeScaling) {
  json j = minimal();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = json::parse(R"({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192, "rope_type": "llama3", "type": "linear"})");
  ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
}

TEST(HfConfig, RopeTypeDefaultMeansNoScaling) {
  json j = minimal();
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(j).rope_scaling.type, "default");
}

TEST_F(ConfigDirTest, LoadModelConfigSetsDir) {
  write("config.json", kQwen3_0_6B);
  ModelConfig c = load_model_config(dir_.string());
  EXPECT_EQ(c.dir, dir_.string());
  EXPECT_EQ(c.hidden_size, 1024);
}

// ---------------------------------------------------------------------------------------------------
// config.json: errors

TEST_F(ConfigDirTest, MissingConfigJson) {
  auto e = capture_error([&] { load_model_config(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr(path("config.json")));
}

TEST_F(ConfigDirTest, MalformedConfigJson) {
  write("config.json", R"({"model_type": "qwen3",)");
  auto e = capture_error([&] { load_model_config(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr(path("config.json") + ": malformed JSON"));
  EXPECT_THAT(msg(e), HasSubstr("parse_error"));  // the parser's message
}

TEST(HfConfig, TopLevelNotAnObject) {
  auto e = capture_error([] { parse_model_config("[1, 2]", "/m/config.json"); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("/m/config.json: expected a JSON object"));
}

TEST(HfConfig, MissingModelType) {
  json j = minimal();
  j.erase("model_type");
  auto e = parse_error(j);
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("/m/config.json: missing required field 'model_type'"));
}

TEST(HfConfig, ModelTypeNotAString) {
  json j = minimal();
  j["model_type"] = 3;
  auto e = parse_error(j);
  EXPECT_THAT(msg(e), HasSubstr("field 'model_type' must be a string, got 3"));
}

TEST(HfConfig, UnknownModelType) {
  json j = minimal();
  j["model_type"] = "xyz";
  auto e = parse_error(j);
  EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
  EXPECT_THAT(msg(e), HasSubstr("config.json: model_type 'xyz' is not supported; supported: qwen3, llama, qwen2, qwen3_moe, deepseek_v3"));
}

TEST(HfConfig, RequiredFieldMissing) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
    SCOPED_TRACE(field);
    json j = minimal();
    j.erase(field);
    auto e = parse_error(j);
    EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
    EXPECT_THAT(msg(e), HasSubstr(std::string("/m/config.json: missing required field '") + field + "'"));
    j[field] = nullptr;  // null counts as missing
    EXPECT_THAT(msg(parse_error(j)), HasSubstr(std::string("missing required field '") + field + "'"));
  }
}

TEST(HfConfig, RequiredFieldNotPositive) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
    SCOPED_TRACE(field);
    json j = minimal();
    j[field] = 0;
    EXPECT_THAT(msg(parse_error(j)), HasSubstr(std::string("field '") + field + "' must be a positive integer, got 0"));
    j[field] = -3;
    EXPECT_THAT(msg(parse_error(j)), HasSubstr(std::string("field '") + field + "' must be a positive integer, got -3"));
  }
}

TEST(HfConfig, RequiredFieldNotAnInteger) {
  json j = minimal();
  j["hidden_size"] = "1024";
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'hidden_size' must be an integer, got \"1024\""));
  j["hidden_size"] = 32.5;
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'hidden_size' must be an integer, got 32.5"));
  j["hidden_size"] = true;
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'hidden_size' must be an integer, got true"));
}

TEST(HfConfig, HeadsNotDivisibleByKvHeads) {
  json j = minimal();
  j["num_key_value_heads"] = 3;
  auto e = parse_error(j);
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("num_attention_heads (4) is not divisible by num_key_value_heads (3)"));
}

TEST(HfConfig, NullHeadDimWithIndivisibleHidden) {
  json j = minimal();
  j["hidden_size"] = 30;
  j["head_dim"] = nullptr;
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("hidden_size (30) is not divisible by num_attention_heads (4)"));
}

TEST(HfConfig, WrongTypeBoolean) {
  json j = minimal();
  j["tie_word_embeddings"] = "true";
  auto e = parse_error(j);
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("/m/config.json: field 'tie_word_embeddings' must be a boolean, got \"true\""));
}

TEST(HfConfig, WrongTypeNumber) {
  json j = minimal();
  j["rms_norm_eps"] = "1e-6";
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'rms_norm_eps' must be a number, got \"1e-6\""));
}

TEST(HfConfig, WrongTypeString) {
  json j = minimal();
  j["hidden_act"] = 1;
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'hidden_act' must be a string, got 1"));
}

TEST(HfConfig, WrongTypeEosTokenId) {
  json j = minimal();
  j["eos_token_id"] = {1, "two"};
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'eos_token_id' must be an integer or a list of integers"));
}

TEST(HfConfig, RopeScalingNotAnObject) {
  json j = minimal();
  j["rope_scaling"] = "yarn";
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'rope_scaling' must be an object or null, got \"yarn\""));
}

TEST(HfConfig, RopeScalingWithoutType) {
  json j = minimal();
  j["rope_scaling"] = {{"factor", 4.0}};
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'rope_scaling' has neither 'rope_type' nor 'type'"));
}

TEST(HfConfig, RopeTypeUnsupported) {
  json j = minimal();
  j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 4.0}};
  auto e = parse_error(j);
  EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
  EXPECT_THAT(msg(e), HasSubstr("rope_type 'longrope' is not supported; supported: default, linear, dynamic, yarn, llama3"));
}

TEST(HfConfig, RopeScalingMissingFactor) {
  json j = minimal();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"original_max_position_embeddings", 4096}};
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'rope_scaling.factor' is required for rope_type 'yarn'"));
}

TEST(HfConfig, RopeScalingFieldWrongType) {
  json j = minimal();
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", "32"}};
  EXPECT_THAT(msg(parse_error(j)), HasSubstr("field 'rope_parameters.beta_fast' must be a number, got \"32\""));
}

// ---------------------------------------------------------------------------------------------------
// generation_config.json

TEST_F(ConfigDirTest, GenerationConfigAbsent) {
  GenerationConfig g = load_generation_config(dir_.string());
  EXPECT_FALSE(g.present);
  EXPECT_EQ(g.top_k, 50);
  EXPECT_DOUBLE_EQ(g.temperature, 1.0);
}

// Qwen/Qwen3-0.6B generation_config.json as published on the Hub.
TEST_F(ConfigDirTest, GenerationConfigWithEosList) {
  write("generation_config.json", R"({
  "bos_token_id": 151643,
  "do_sample": true,
  "eos_token_id": [151645, 151643],
  "pad_token_id": 151643,
  "temperature": 0.6,
  "top_k": 20,
  "top_p": 0.95,
  "transformers_version": "4.51.0"
})");
  GenerationConfig g = load_generation_config(dir_.string());
  EXPECT_TRUE(g.present);
  EXPECT_TRUE(g.do_sample);
  EXPECT_DOUBLE_EQ(g.temperature, 0.6);
  EXPECT_EQ(g.top_k, 20);
  EXPECT_DOUBLE_EQ(g.top_p, 0.95);
  EXPECT_DOUBLE_EQ(g.min_p, 0.0);
  EXPECT_DOUBLE_EQ(g.repetition_penalty, 1.0);
  EXPECT_THAT(g.eos_token_ids, ElementsAre(151645, 151643));
  EXPECT_EQ(g.bos_token_id, 151643);
}

TEST_F(ConfigDirTest, GenerationConfigScalarEosAndNullTopK) {
  write("generation_config.json",
        R"({"eos_token_id": 2, "top_k": null, "min_p": 0.05, "repetition_penalty": 1.1, "bos_token_id": null})");
  GenerationConfig g = load_generation_config(dir_.string());
  EXPECT_THAT(g.eos_token_ids, ElementsAre(2));
  EXPECT_EQ(g.top_k, 0);  // null disables top-k
  EXPECT_DOUBLE_EQ(g.min_p, 0.05);
  EXPECT_DOUBLE_EQ(g.repetition_penalty, 1.1);
  EXPECT_EQ(g.bos_token_id, -1);
}

TEST_F(ConfigDirTest, GenerationConfigMalformed) {
  write("generation_config.json", R"({"temperature": 0.6,,})");
  auto e = capture_error([&] { load_generation_config(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr(path("generation_config.json") + ": malformed JSON"));
  EXPECT_THAT(msg(e), HasSubstr("parse_error"));
}

TEST_F(ConfigDirTest, GenerationConfigWrongType) {
  write("generation_config.json", R"({"top_k": "20"})");
  auto e = capture_error([&] { load_generation_config(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr(path("generation_config.json") + ": field 'top_k' must be an integer, got \"20\""));
}

TEST_F(ConfigDirTest, GenerationConfigOutOfRange) {
  write("generation_config.json", R"({"top_p": 1.5})");
  auto e = capture_error([&] { load_generation_config(dir_.string()); });
  EXPECT_THAT(msg(e), HasSubstr("generation_config.json: field 'top_p' must be in [0, 1]"));
}

}  // namespace
