// test_model_load.cpp — loading a model directory: config ↔ weights consistency errors, each specific, and the
// public C API (status codes, last error, lifetimes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixtures.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "cpu/ops.h"
#include "infer/infer.h"
#include "model.h"
#include "safetensors.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using namespace infer;
using namespace infer::testutil;

namespace {

std::string tiny() { return std::string(INFER_TEST_DATA) + "/models/qwen3_tied_gqa2"; }

// A writable copy of the tiny model whose weights are rewritten as F32 (so tests can edit them).
struct ModelCopy {
  fs::path dir;
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
  explicit ModelCopy(const std::string& tag) {
    dir = fs::temp_directory_path() / ("infer_load_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "generation_config.json"}) fs::copy(fs::path(tiny()) / f, dir / f);
    auto st = SafeTensors::open_dir(tiny());
    for (const auto& [name, t] : st->tensors()) {
      std::vector<float> v(size_t(t.numel()));
      cpu::row_to_f32(t.data, t.dtype, v.data(), t.numel());
      tensors[name] = {t.shape, std::move(v)};
    }
  }
  ~ModelCopy() { fs::remove_all(dir); }
  void write() {
    std::vector<WriteTensor> w;
    for (auto& [name, t] : tensors) w.push_back({name, DType::F32, t.first, t.second.data()});
    write_safetensors((dir / "model.safetensors").string(), w);
  }
  nlohmann::json config() { return nlohmann::json::parse(std::ifstream(dir / "config.json")); }
  void set_config(const nlohmann::json& j) { std::ofstream(dir / "config.json") << j.dump(2); }
};

TEST(ModelLoad, F32CopyLoadsAndMatchesBf16) {
  ModelCopy m("ok");
  m.write();
  EXPECT_EQ(load_error(m.dir), "");
}

TEST(ModelLoad, MissingTensor) {
  ModelCopy m("missing");
  m.tensors.erase("model.layers.1.mlp.up_proj.weight");
  m.write();
  infer_status code{};
  const std::string e = load_error(m.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("model.layers.1.mlp.up_proj.weight"));
  EXPECT_THAT(e, HasSubstr("missing"));
}

TEST(ModelLoad, UnexpectedTensor) {
  ModelCopy m("unexpected");
  m.tensors["model.layers.2.mlp.up_proj.weight"] = {{128, 64}, std::vector<float>(128 * 64)};
  m.write();
  infer_status code{};
  const std::string e = load_error(m.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("unexpected tensor model.layers.2.mlp.up_proj.weight"));
  EXPECT_THAT(e, HasSubstr("num_hidden_layers=2"));
}

TEST(ModelLoad, ShapeDisagreesWithConfig) {
  ModelCopy m("shape");
  m.write();
  auto c = m.config();
  c["intermediate_size"] = 96;  // the weights have 128
  m.set_config(c);
  infer_status code{};
  const std::string e = load_error(m.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_THAT(e, HasSubstr("[128, 64]"));
  EXPECT_THAT(e, HasSubstr("[96, 64]"));
  EXPECT_THAT(e, HasSubstr("intermediate_size"));
}

TEST(ModelLoad, UntiedConfigWithoutLmHead) {
  ModelCopy m("untied");
  m.write();
  auto c = m.config();
  c["tie_word_embeddings"] = false;
  m.set_config(c);
  const std::string e = load_error(m.dir);
  EXPECT_THAT(e, HasSubstr("lm_head.weight"));
  EXPECT_THAT(e, HasSubstr("tie_word_embeddings"));
}

TEST(ModelLoad, UnsupportedWeightDtype) {
  ModelCopy m("dtype");
  m.write();
  // Rewrite one tensor as I32: a dtype no weight may have.
  std::vector<WriteTensor> w;
  std::vector<int32_t> junk(64, 1);
  for (auto& [name, t] : m.tensors) {
    if (name == "model.norm.weight") w.push_back({name, DType::I32, t.first, junk.data()});
    else w.push_back({name, DType::F32, t.first, t.second.data()});
  }
  write_safetensors((m.dir / "model.safetensors").string(), w);
  infer_status code{};
  const std::string e = load_error(m.dir, &code);
  EXPECT_EQ(code, INFER_ERR_UNSUPPORTED);
  EXPECT_THAT(e, HasSubstr("model.norm.weight"));
  EXPECT_THAT(e, HasSubstr("I32"));
}

// ---- the C API

TEST(CApi, StatusAndLastError) {
  infer_model* m = nullptr;
  EXPECT_EQ(infer_model_load("/nonexistent", nullptr, &m), INFER_ERR_IO);
  EXPECT_EQ(m, nullptr);
  EXPECT_THAT(infer_last_error(), HasSubstr("/nonexistent"));
  EXPECT_STREQ(infer_status_name(INFER_ERR_IO), "INFER_ERR_IO");
  EXPECT_EQ(infer_model_load(nullptr, nullptr, &m), INFER_ERR_INVALID_ARG);
}

TEST(CApi, LoadEvalGenerateFree) {
  infer_model* m = nullptr;
  infer_model_params mp = infer_model_default_params();
  ASSERT_EQ(infer_model_load(tiny().c_str(), &mp, &m), INFER_OK) << infer_last_error();
  EXPECT_STREQ(infer_model_arch(m), "qwen3");
  EXPECT_EQ(infer_model_vocab_size(m), 512);
  EXPECT_TRUE(infer_model_is_random(m));
  EXPECT_FALSE(infer_model_has_tokenizer(m));
  int32_t eos[4];
  EXPECT_EQ(infer_model_eos_ids(m, eos, 4), 2);

  infer_context_params cp = infer_context_default_params();
  cp.n_ctx = 32;
  infer_context* c = nullptr;
  ASSERT_EQ(infer_context_create(m, &cp, &c), INFER_OK) << infer_last_error();
  EXPECT_EQ(infer_context_n_ctx(c), 32);
  const int32_t ids[] = {5, 6, 7};
  ASSERT_EQ(infer_context_eval(c, ids, 3, true), INFER_OK);
  int32_t rows = 0;
  EXPECT_NE(infer_context_logits(c, &rows), nullptr);
  EXPECT_EQ(rows, 3);
  EXPECT_EQ(infer_context_n_past(c), 3);
  const int32_t bad[] = {512};
  EXPECT_EQ(infer_context_eval(c, bad, 1, false), INFER_ERR_INVALID_ARG);
  EXPECT_EQ(infer_context_n_past(c), 3);  // nothing was appended

  infer_generate_params gp = infer_generate_default_params();
  gp.max_tokens = 5;
  gp.ignore_eos = true;
  int count = 0;
  infer_generate_result res{};
  ASSERT_EQ(infer_generate(c, ids, 3, &gp, [](const infer_token_info* t, void* u) { ++*static_cast<int*>(u); return t != nullptr; },
                           &count, &res),
            INFER_OK);
  EXPECT_EQ(res.gen_tokens, 5);
  EXPECT_EQ(count, 5);
  EXPECT_EQ(res.finish_reason, INFER_FINISH_LENGTH);
  // The prompt was cached already: only its last token is re-evaluated.
  EXPECT_EQ(res.prompt_tokens, 1);
  infer_context_free(c);
  infer_model_free(m);
}

}  // namespace
