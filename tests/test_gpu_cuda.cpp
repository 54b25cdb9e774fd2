// test_gpu_cuda.cpp — the real CUDA backend on a real GPU (label `gpu`: CI has none and excludes it; the same
// checks run in CI on the emulated backend in test_simt_backend.cpp). Skips when this build has no CUDA backend
// or the machine no usable GPU.
//
// Tolerances as in test_simt_backend.cpp: fp32 precision 1e-4 from HF (the GPU's fp32 accumulation order in
// cuBLAS and the MMAs differs from the emulator's, which the margin covers), fast precision 0.25.
#include <gtest/gtest.h>

#include "fixtures.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend.h"
#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"

using namespace infer;
using namespace infer::testutil;

namespace {

const char* kModels[] = {"qwen3_tied_gqa2", "qwen3_untied_gqa1", "qwen3_gqa4_hd", "qwen3_yarn"};

// The CUDA backend with INFER_CUDA_PRECISION=precision, or a skip reason.
std::unique_ptr<Backend> gpu(const char* precision, std::string* why) {
#if !defined(INFER_HAVE_CUDA)
  *why = "this build has no CUDA backend";
  return nullptr;
#else
  setenv("INFER_CUDA_PRECISION", precision, 1);
  try {
    return make_backend("cuda", 1);
  } catch (const Error& e) {
    *why = e.what();
    return nullptr;
  }
#endif
}

#define GPU_OR_SKIP(var, precision)      \
  std::string why_;                      \
  auto var = gpu(precision, &why_);      \
  if (!var) GTEST_SKIP() << why_

class GpuParity : public ::testing::TestWithParam<const char*> {};

TEST_P(GpuParity, LogitsAndGreedyMatchHF) {
  for (const char* precision : {"fp32", "fast"}) {
    SCOPED_TRACE(precision);
    const float tol = std::string(precision) == "fp32" ? 1e-4f : 0.25f;
    GPU_OR_SKIP(be, precision);
    auto model = Transformer::load(model_dir(GetParam()), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(GetParam()) + "/reference.safetensors");
    const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
    const auto want = read_vec<float>(*ref, "logits");
    Session ctx(*model, 128, std::move(be), 64);
    ctx.eval(ids.data(), int64_t(ids.size()), true);
    float worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(ctx.logits()[i] - want[i]));
    std::printf("[%s %s] max |logit - HF| = %.3g\n", GetParam(), precision, worst);
    EXPECT_LE(worst, tol);

    const auto prompt = read_vec<int32_t>(*ref, "greedy_prompt");
    const auto tokens = read_vec<int32_t>(*ref, "greedy_tokens");
    const auto margins = read_vec<float>(*ref, "greedy_margins");
    ctx.truncate(0);
    ctx.eval(prompt.data(), int64_t(prompt.size()), false);
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (margins[i] <= 2 * tol) break;
      const int32_t id = argmax(ctx.logits(), int32_t(model->vocab_size()));
      ASSERT_EQ(id, tokens[i]) << "greedy step " << i;
      ctx.eval(&id, 1, false);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, GpuParity, ::testing::ValuesIn(kModels),
                         [](const auto& info) { return std::string(info.param); });

// Decode with and without graphs gives the same tokens; prints the per-token time of each.
TEST(Gpu, DecodeGraphsAgreeAndTime) {
  auto model = Transformer::load(model_dir("qwen3_gqa4_hd"), LoadOptions{}, false);
  std::vector<int32_t> out[2];
  for (int graphs = 0; graphs < 2; ++graphs) {
    setenv("INFER_CUDA_GRAPHS", graphs ? "1" : "0", 1);
    GPU_OR_SKIP(be, "fast");
    Session ctx(*model, 256, std::move(be), 64);
    const int32_t first = 1;
    ctx.eval(&first, 1, false);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
      const int32_t id = argmax(ctx.logits(), int32_t(model->vocab_size()));
      out[graphs].push_back(id);
      ctx.eval(&id, 1, false);
    }
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 200;
    std::printf("graphs %d: %.1f us per decode step\n", graphs, us);
  }
  unsetenv("INFER_CUDA_GRAPHS");
  EXPECT_EQ(out[0], out[1]);
}

}  // namespace
