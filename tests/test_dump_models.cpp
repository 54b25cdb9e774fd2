// test_dump_models.cpp — `infer dump` (infer_context_dump) covers the architectures beyond Qwen3 dense: every fixture
// writes logits and its named per-layer intermediates, MoE layers their router decisions (layers.L.router_topk:
// expert ids as floats, best first; router_logits; router_weights), DeepSeek its MLA tensors (layers.L.q with
// the rotated rope part, layers.L.kv_latent = the cache row) and the MTP module (mtp.*). The dumped layer outputs
// and router choices are compared with the HF references (same tolerance as test_models.cpp: 1e-4).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "fixtures.h"

#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sys/wait.h>

#include "infer/infer.h"
#include "safetensors.h"

namespace fs = std::filesystem;
using namespace infer;
using namespace infer::testutil;

namespace {

struct Case {
  const char* model;
  std::vector<int> moe_layers;  // layers with a router
  bool mla, mtp;
};

const Case kCases[] = {
    {"llama_rope3", {}, false, false},        {"qwen2_bias", {}, false, false},
    {"qwen3_moe_top2", {0, 1}, false, false}, {"qwen3_moe_sparse", {1, 5}, false, false},
    {"qwen3_moe_fp8", {0, 1}, false, false},  {"dsv3_qlora_yarn", {1, 2}, true, false},
    {"dsv3_v2lite", {1}, true, false},        {"dsv3_fp8", {1}, true, false},
    {"dsv3_mtp", {0}, true, true},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.model; }

class DumpModels : public ::testing::TestWithParam<Case> {};

TEST_P(DumpModels, NamedIntermediatesMatchHF) {
  const Case& c = GetParam();
  infer_model* m = nullptr;
  ASSERT_EQ(infer_model_load(model_dir(c.model).c_str(), nullptr, &m), INFER_OK) << infer_last_error();
  infer_context_params cp = infer_context_default_params();
  cp.n_ctx = 64;
  cp.device = "cpu";
  infer_context* ctx = nullptr;
  ASSERT_EQ(infer_context_create(m, &cp, &ctx), INFER_OK) << infer_last_error();
  auto ref = SafeTensors::open_file(model_dir(c.model) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  const fs::path out = fs::temp_directory_path() / ("infer_dump_" + std::string(c.model) + std::to_string(::getpid()) + ".safetensors");
  ASSERT_EQ(infer_context_dump(ctx, ids.data(), int32_t(ids.size()), out.c_str()), INFER_OK) << infer_last_error();
  auto d = SafeTensors::open_file(out.string());
  const int64_t T = int64_t(ids.size());
  int L = 0;
  while (ref->find("hidden_L" + std::to_string(L))) ++L;
  ASSERT_GT(L, 0);
  auto near = [&](const std::string& dname, const std::string& rname) {
    const auto a = read_vec<float>(*d, dname), b = read_vec<float>(*ref, rname);
    ASSERT_EQ(a.size(), b.size()) << dname;
    float w = 0;
    for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::fabs(a[i] - b[i]));
    EXPECT_LE(w, 1e-4f) << dname << " vs " << rname;
  };
  near("logits", "logits");
  near("embed", "hidden_embed");
  near("final_norm", "hidden_norm");
  for (int l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    near(p + "out", "hidden_L" + std::to_string(l));
    for (const char* n : {"attn_norm", "q", "attn", "attn_out", "ffn_norm", "ffn_out"})
      EXPECT_NE(d->find(p + n), nullptr) << p + n;
    EXPECT_EQ(d->find(p + "kv_latent") != nullptr, c.mla) << p + "kv_latent";
    const bool moe = std::find(c.moe_layers.begin(), c.moe_layers.end(), l) != c.moe_layers.end();
    EXPECT_EQ(d->find(p + "router_topk") != nullptr, moe) << p + "router_topk";
    if (!moe) continue;
    const auto want = read_vec<int32_t>(*ref, "router_topk_L" + std::to_string(l));
    const auto got = read_vec<float>(*d, p + "router_topk");
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(int32_t(got[i]), want[i]) << p << "router_topk[" << i << "]";
    EXPECT_EQ(d->get(p + "router_logits").shape[0], T);
    EXPECT_EQ(d->get(p + "router_weights").shape, d->get(p + "router_topk").shape);
  }
  EXPECT_EQ(d->find("mtp.eh_proj") != nullptr, c.mtp);
  EXPECT_EQ(d->find("mtp.out") != nullptr, c.mtp);
  fs::remove(out);
  infer_context_free(ctx);
  infer_model_free(m);
}

INSTANTIATE_TEST_SUITE_P(Tiny, DumpModels, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.model); });

// The CLI subcommand on a DeepSeek fixture.
TEST(DumpCli, DeepseekRouterChoices) {
  const fs::path out = fs::temp_directory_path() / ("infer_dump_cli_" + std::to_string(::getpid()) + ".safetensors");
  const testutil::CmdResult r =
      testutil::run_infer("dump -m " + model_dir("dsv3_qlora_yarn") + " --ids 5,6,7,8 -o " + out.string());
  ASSERT_TRUE(!r.signaled && r.code == 0) << r.out;
  auto d = SafeTensors::open_file(out.string());
  EXPECT_EQ(d->get("layers.1.router_topk").shape, (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(d->get("layers.0.kv_latent").shape, (std::vector<int64_t>{4, 40}));
  EXPECT_EQ(d->find("layers.0.router_topk"), nullptr);  // layer 0 is dense (first_k_dense_replace 1)
  fs::remove(out);
}

}  // namespace
