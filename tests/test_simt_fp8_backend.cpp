// test_simt_fp8_backend.cpp — FP8 (e4m3, 128x128 block scales) checkpoints on the whole CUDA backend, run on the
// SIMT emulator: the weights stay FP8 on the device, the FP8 GEMM path follows the compute capability (and the
// override), and the tiny FP8 model `qwen3_fp8` (tools/make_tiny_models_moe.py: a dense Qwen3 in the
// Qwen3-*-FP8 layout, BF16 scales, partial 128-blocks in every matmul) and the FP8 MoE fixtures `qwen3_moe_fp8` and
// `dsv3_fp8` (grouped expert GEMM, FP8 decode experts, MLA) match the HF reference on both GEMM paths.
//
// Tolerances, against HF float32 on the dequantised weights (|logit| up to ~8):
//   - decode (T = 1: the FP8 GEMV, w8a16 like the CPU backend: fp32 activations, exact dequantisation): only fp32
//     summation order differs, as for bf16 checkpoints: kW8a16Tol = 1e-4 (observed ~1e-5, printed).
//   - prefill (T > 1: w8a8 GEMM): every activation entering an FP8 matmul is rounded to e4m3 (3 mantissa bits,
//     half-ulp 2^-4 relative; DeepSeek's act_quant), which no fp32 reference does. On this random 2-layer model
//     that error is large and chaotic: HF itself with act_quant inserted before each FP8 linear (torch, float32;
//     tools/w8a8_sensitivity.py) differs from the fp32 reference by mean |dlogit| 0.21, max 1.31, and perturbing
//     its activations by 1e-6 (fp32-level noise) before the rounding moves its logits by mean 0.14, max 0.85: e4m3
//     rounding flips on near-ties propagate. So no w8a8 reference can be matched tightly; the engine is held to the same statistics:
//     mean |dlogit| <= kW8a8MeanTol = 0.4, max <= kW8a8MaxTol = 2.0 (observed mean 0.19, max 0.97 on both paths,
//     printed) and top-1 agreement at >= 18 of 24 positions (observed 24; the torch w8a8 run: 20). A wrong
//     scale, block or fragment gives errors of the logits' own size (std 3.4) and random top-1s.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "simt_backend_util.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_shim.h"
#include "kernels/kernels.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"

using namespace infer;
using namespace infer::testutil;

namespace {

constexpr float kW8a16Tol = 1e-4f;
constexpr double kW8a8MeanTol = 0.4;
constexpr float kW8a8MaxTol = 2.0f;
const char* kModel = "qwen3_fp8";

using Fixture = SimtFixture;
Fixture load() { return load_fixture(kModel); }

// Logits of a prefill of ids[0, t0) (all rows) then single-token decode steps to the end; decode step t runs as
// around(t, run) (run() evaluates the token), so a test can observe exactly the step.
template <typename Around>
std::vector<float> prefill_then_decode(Session& ctx, const std::vector<int32_t>& ids, int64_t V, int64_t t0,
                                       Around&& around) {
  const int64_t T = int64_t(ids.size());
  std::vector<float> got(size_t(T * V));
  ctx.eval(ids.data(), t0, true);
  std::copy(ctx.logits(), ctx.logits() + t0 * V, got.begin());
  for (int64_t t = t0; t < T; ++t) {
    around(t, [&] { ctx.eval(&ids[size_t(t)], 1, false); });
    std::copy(ctx.logits(), ctx.logits() + V, got.begin() + t * V);
  }
  return got;
}

// How far T rows of V logits are from the reference: mean and max |dlogit|, rows whose top-1 agrees (printed).
struct LogitStats {
  double mean = 0;
  float worst = 0;
  int agree = 0;
};
LogitStats compare_logits(const std::vector<float>& got, const std::vector<float>& want, int64_t T, int64_t V,
                          const std::string& label) {
  LogitStats st;
  double sum = 0;
  for (int64_t t = 0; t < T; ++t) {
    const float* g = got.data() + t * V;
    const float* w = want.data() + t * V;
    for (int64_t v = 0; v < V; ++v) sum += std::fabs(double(g[v]) - w[v]);
    st.worst = std::max(st.worst, max_diff(g, w, size_t(V)));
    st.agree += argmax(g, int32_t(V)) == argmax(w, int32_t(V));
  }
  st.mean = sum / double(T * V);
  std::printf("[%s] w8a8 prefill + decode vs HF fp32: mean |dlogit| %.3g, max %.3g, top-1 agrees at %d/%lld\n",
              label.c_str(), st.mean, st.worst, st.agree, static_cast<long long>(T));
  return st;
}

std::unique_ptr<CudaBackend> cuda(CudaFp8Mma path, bool graphs = true) {
  CudaOptions o;
  o.fp8_mma = path;
  o.graphs = graphs;
  return std::make_unique<CudaBackend>(o);
}

// ------------------------------------------------------------------ path selection

TEST(SimtFp8Backend, PathFollowsComputeCapability) {
  struct Cc {
    int major, minor;
    bool fp8;
  };
  for (const Cc c : {Cc{8, 0, false}, Cc{8, 6, false}, Cc{8, 9, true}, Cc{9, 0, true}, Cc{12, 0, true}}) {
    SCOPED_TRACE("sm_" + std::to_string(c.major) + std::to_string(c.minor));
    FakeDeviceScope scope(c.major, c.minor);
    EXPECT_EQ(CudaBackend(CudaOptions{}).fp8_mma(), c.fp8);
    CudaOptions bf16;
    bf16.fp8_mma = CudaFp8Mma::kBf16;
    EXPECT_FALSE(CudaBackend(bf16).fp8_mma());
    CudaOptions fp8;
    fp8.fp8_mma = CudaFp8Mma::kFp8;
    if (c.fp8) {
      EXPECT_TRUE(CudaBackend(fp8).fp8_mma());
    } else {
      try {
        CudaBackend b(fp8);
        ADD_FAILURE() << "FP8 mma forced on a GPU without it";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("has no FP8 mma (needs compute capability 8.9)"), std::string::npos)
            << e.what();
      }
    }
  }
}

// The device bytes an FP8 checkpoint needs: the FP8 matrices (rows padded to 16 bytes) with fp32 scales, the bf16
// embedding and lm_head as stored, fp32 norm weights. A dequantised copy of any matrix would exceed it.
int64_t expected_device_bytes(int* n_fp8) {
  auto st = SafeTensors::open_dir(model_dir(kModel));
  int64_t want = 0;
  *n_fp8 = 0;
  for (const auto& [name, t] : st->tensors()) {
    if (name.ends_with("_scale_inv")) continue;
    if (t.dtype == DType::F8_E4M3) {
      const int64_t rows = t.shape[0], cols = t.shape[1];
      want += rows * fp8_padded_k(cols) + fp8_scale_rows(rows, 0) * fp8_scale_cols(cols) * 4;
      ++*n_fp8;
    } else if (t.shape.size() == 2) {
      want += int64_t(t.nbytes);
    } else {
      want += t.numel() * 4;
    }
  }
  return want;
}

// ------------------------------------------------------------------ HF parity

class SimtFp8Parity : public ::testing::TestWithParam<CudaFp8Mma> {};

std::string path_name(const ::testing::TestParamInfo<CudaFp8Mma>& info) {
  return info.param == CudaFp8Mma::kFp8 ? "fp8_mma" : "bf16_mma";
}

// Prefill of 20 tokens (the w8a8 GEMM on every projection), then 4 decode steps (GEMV) attending to the w8a8
// prefill's KV cache: all 24 positions against HF (statistical tolerances above), the weights FP8 on the device.
TEST_P(SimtFp8Parity, PrefillThenDecodeMatchHF) {
  Fixture f = load();
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  const auto want = read_vec<float>(*f.ref, "logits");
  const int64_t V = f.model->vocab_size(), T = int64_t(ids.size()), t0 = 20;
  ASSERT_EQ(T, 24);
  auto backend = cuda(GetParam());
  CudaBackend* be = backend.get();
  Session ctx(*f.model, 64, std::move(backend), 64);
  const std::vector<float> got = prefill_then_decode(ctx, ids, V, t0, [](int64_t, auto&& run) { run(); });
  EXPECT_EQ(be->fp8_mma(), GetParam() == CudaFp8Mma::kFp8);
  int n_fp8 = 0;
  EXPECT_EQ(be->stats().weight_bytes, expected_device_bytes(&n_fp8));
  EXPECT_EQ(n_fp8, 14);  // 7 projections x 2 layers
  EXPECT_EQ(be->stats().fp8_gemm_calls, n_fp8);
  // decode: step 1 eager, step 2 captured into a graph, steps 3-4 replay it (GEMVs issued twice)
  EXPECT_EQ(be->stats().fp8_gemv_calls, n_fp8 * 2);
  EXPECT_EQ(be->stats().graph_replays, T - t0 - 1);

  const LogitStats st = compare_logits(got, want, T, V, path_name({GetParam(), 0}));
  EXPECT_LE(st.mean, kW8a8MeanTol);
  EXPECT_LE(st.worst, kW8a8MaxTol);
  EXPECT_GE(st.agree, 18);
  EXPECT_GT(st.mean, 1e-3) << "w8a8 cannot be as close to fp32 as w8a16: are the activations quantised?";
}

INSTANTIATE_TEST_SUITE_P(Paths, SimtFp8Parity, ::testing::Values(CudaFp8Mma::kFp8, CudaFp8Mma::kBf16), path_name);

// Token by token from the start (decode graphs on): only the FP8 GEMV (w8a16), as tight as a bf16 checkpoint.
// The GEMV does not depend on the GEMM path.
TEST(SimtFp8Backend, DecodeLogitsMatchHF) {
  Fixture f = load();
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  const auto want = read_vec<float>(*f.ref, "logits");
  const int64_t V = f.model->vocab_size(), n = 6;
  auto backend = cuda(CudaFp8Mma::kAuto);
  CudaBackend* be = backend.get();
  Session ctx(*f.model, 64, std::move(backend), 64);
  float worst = 0;
  for (int64_t t = 0; t < n; ++t) {
    ctx.eval(&ids[size_t(t)], 1, false);
    const float d = max_diff(ctx.logits(), want.data() + t * V, size_t(V));
    EXPECT_LE(d, kW8a16Tol) << "position " << t;
    worst = std::max(worst, d);
  }
  std::printf("w8a16 decode: max |logit - HF| over %lld positions = %.3g\n", static_cast<long long>(n), worst);
  EXPECT_EQ(be->stats().fp8_gemm_calls, 0);
  EXPECT_GT(be->stats().fp8_gemv_calls, 0);
  EXPECT_GT(be->stats().graph_replays, 0);
}


// ------------------------------------------------------------------ FP8 MoE / DeepSeek fixtures

// qwen3_moe_fp8 (Qwen3-MoE, 2 MoE layers of 8 experts top-2, BF16 scales) and dsv3_fp8 (DeepSeek-V3: a dense layer,
// then MLA + a MoE layer of 8 experts in 2 groups with a shared expert, F32 scales, partial edge blocks, kv_b views)
// on the emulated backend: experts in the grouped GEMM (prefill) and the FP8 decode kernels (T = 1), dense
// projections in the FP8 GEMM / GEMV, kv_b dequantised for MLA. Tolerances as above: decode (w8a16 everywhere)
// kW8a16Tol (observed ~1e-5, printed). w8a8 prefill: statistical, as above, but on these fixtures HF's own w8a8 moves
// much further from fp32, because a rounded activation can flip a top-k routing decision (the fixtures guarantee
// routing margins only for fp32-level differences): tools/w8a8_sensitivity.py (HF float32 with act_quant before
// every FP8 linear) gives mean |dlogit| 0.37 / max 6.9 / top-1 19 of 24 (qwen3_moe_fp8) and 0.44 / 7.7 / 19
// (dsv3_fp8), and 1e-6 of noise before the rounding moves HF's w8a8 logits by up to 7.0 (a routing flip). The
// engine is held to about twice HF's deviation: mean <= kMoeW8a8MeanTol = 0.8, max <= kMoeW8a8MaxTol = 12, top-1
// at >= 17 of 24 (observed, printed: 0.40 / 7.4 / 20 and 0.41 / 7.7 / 20 on both GEMM paths). A wrong expert,
// scale or fragment moves the mean to the logits' own size (std ~2.9) and the top-1s to chance.
constexpr double kMoeW8a8MeanTol = 0.8;
constexpr float kMoeW8a8MaxTol = 12.0f;
struct MoeFixture {
  const char* model;
  int moe_layers;
  int64_t decode_replays;  // of 5 decode steps from position 0
};
// dsv3_fp8 decodes position 0 with the naive MLA form (cheaper for one key), so its graph is captured one step later.
const MoeFixture kMoeFixtures[] = {{"qwen3_moe_fp8", 2, 4}, {"dsv3_fp8", 1, 3}};

struct MoeParam {
  MoeFixture f;
  CudaFp8Mma path;
};
class SimtFp8MoeParity : public ::testing::TestWithParam<MoeParam> {};
std::string moe_param_name(const ::testing::TestParamInfo<MoeParam>& info) {
  return std::string(info.param.f.model) + (info.param.path == CudaFp8Mma::kFp8 ? "_fp8_mma" : "_bf16_mma");
}

// Prefill of 20 tokens (act_quant + the w8a8 GEMM on every FP8 projection, the grouped FP8 expert GEMM, no host
// sync in the MoE layers), then 4 decode steps (FP8 GEMV and decode expert kernels, graph replays) against HF.
TEST_P(SimtFp8MoeParity, PrefillThenDecodeMatchHF) {
  const MoeParam p = GetParam();
  Fixture f = load_fixture(p.f.model);
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  const auto want = read_vec<float>(*f.ref, "logits");
  const int64_t V = f.model->vocab_size(), T = int64_t(ids.size()), t0 = 20;
  ASSERT_EQ(T, 24);
  auto backend = cuda(p.path);
  CudaBackend* be = backend.get();
  Session ctx(*f.model, 64, std::move(backend), 64);
  const std::vector<float> got = prefill_then_decode(ctx, ids, V, t0, [&](int64_t t, auto&& run) {
    const uint64_t syncs = cuda_shim::stats().host_syncs;
    run();
    if (t > t0 + 1) EXPECT_EQ(cuda_shim::stats().host_syncs - syncs, 1u) << "a replayed decode step synchronised twice";
  });
  EXPECT_EQ(be->fp8_mma(), p.path == CudaFp8Mma::kFp8);
  EXPECT_EQ(be->stats().moe_grouped_layers, p.f.moe_layers);    // the prefill, grouped
  EXPECT_EQ(be->stats().moe_per_expert_layers, 0);
  EXPECT_EQ(be->stats().moe_decode_layers, 2 * p.f.moe_layers);  // decode: eager, capture (then replays)
  EXPECT_EQ(be->stats().graph_replays, T - t0 - 1);

  const LogitStats st = compare_logits(got, want, T, V, moe_param_name({p, 0}));
  EXPECT_LE(st.mean, kMoeW8a8MeanTol);
  EXPECT_LE(st.worst, kMoeW8a8MaxTol);
  EXPECT_GE(st.agree, 17);
  EXPECT_GT(st.mean, 1e-3) << "w8a8 cannot be as close to fp32 as w8a16: are the activations quantised?";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SimtFp8MoeParity,
                         ::testing::Values(MoeParam{kMoeFixtures[0], CudaFp8Mma::kFp8},
                                           MoeParam{kMoeFixtures[0], CudaFp8Mma::kBf16},
                                           MoeParam{kMoeFixtures[1], CudaFp8Mma::kFp8},
                                           MoeParam{kMoeFixtures[1], CudaFp8Mma::kBf16}),
                         moe_param_name);

// Token by token from the start: every FP8 matmul is the GEMV and every MoE layer the FP8 decode expert kernels
// (w8a16), so the logits are as tight as a bf16 checkpoint's; the step replays from a CUDA graph with one host sync
// (its logits). The GEMV and the decode experts do not depend on the GEMM path.
TEST(SimtFp8Backend, MoeDecodeLogitsMatchHFFromGraphs) {
  for (const MoeFixture& f : kMoeFixtures) {
    SCOPED_TRACE(f.model);
    auto m = Transformer::load(model_dir(f.model), LoadOptions{}, false);
    auto ref = SafeTensors::open_file(model_dir(f.model) + "/reference.safetensors");
    const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
    const auto want = read_vec<float>(*ref, "logits");
    const int64_t V = m->vocab_size(), n = 5;
    auto backend = cuda(CudaFp8Mma::kAuto);
    CudaBackend* be = backend.get();
    Session ctx(*m, 64, std::move(backend), 64);
    float worst = 0;
    for (int64_t t = 0; t < n; ++t) {
      const uint64_t syncs = cuda_shim::stats().host_syncs;
      ctx.eval(&ids[size_t(t)], 1, false);
      if (t >= 2) EXPECT_EQ(cuda_shim::stats().host_syncs - syncs, 1u) << "step " << t;  // only its logits
      const float d = max_diff(ctx.logits(), want.data() + t * V, size_t(V));
      EXPECT_LE(d, kW8a16Tol) << "position " << t;
      worst = std::max(worst, d);
    }
    std::printf("[%s] w8a16 decode: max |logit - HF| over %lld positions = %.3g\n", f.model, static_cast<long long>(n),
                worst);
    EXPECT_EQ(be->stats().fp8_gemm_calls, 0);
    EXPECT_EQ(be->stats().moe_grouped_layers, 0);
    EXPECT_EQ(be->stats().moe_per_expert_layers, 0);
    EXPECT_EQ(be->stats().graph_captures, 1);
    EXPECT_EQ(be->stats().graph_replays, f.decode_replays);  // eager, captured and launched, then replays
  }
}

}  // namespace
