// test_simt_backend.cpp — the whole CUDA backend (src/cuda/backend_cuda.cpp: uploads, KV cache, op queue, fusion,
// cuBLAS calls, CUDA-graph capture and replay) run end to end on the SIMT emulator through the runtime shim, on the
// tiny random-weight models of tests/data/models (HF references made by tools/make_tiny_models.py).
//
// Tolerances, against the HF float32 reference logits (|logit| up to ~10):
//   - CudaPrecision::kFp32: prefill activations enter cuBLAS as three exact bf16 parts (fp32 accumulation) and
//     prefill attention runs the fp32 kernel; decode is fp32 throughout. The remaining differences are fp32
//     summation orders, as for the CPU backend: observed max |logit - HF| ~1e-5 (printed); kFp32Tol = 1e-4 as
//     tests/test_models.cpp, far below the fixtures' greedy margins (>= 0.05): greedy tokens must be equal.
//   - CudaPrecision::kFast: bf16 activations into the prefill GEMM and tensor-core attention (relative 2^-9 per
//     activation, compounding over the layers): observed max |logit - HF| ~0.1 (printed); kFastTol = 0.25. Top-1
//     tokens must agree wherever HF's top-1/top-2 margin exceeds 2 * kFastTol.
//   - decode steps are fp32 in both modes, but in kFast they attend to K/V rows that a bf16 prefill wrote.
#include <gtest/gtest.h>

#include "fixtures.h"
#include "simt_backend_util.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_shim.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"
#include "generate.h"

using namespace infer;
using namespace infer::testutil;

namespace {

constexpr float kFp32Tol = 1e-4f;
constexpr float kFastTol = 0.25f;

const char* kModels[] = {"qwen3_tied_gqa2", "qwen3_untied_gqa1", "qwen3_gqa4_hd", "qwen3_yarn"};

using Fixture = SimtFixture;
Fixture load(const std::string& name) { return load_fixture(name); }

std::unique_ptr<CudaBackend> cuda(CudaPrecision p, bool graphs = true) {
  CudaOptions o;
  o.precision = p;
  o.graphs = graphs;
  return std::make_unique<CudaBackend>(o);
}

// ------------------------------------------------------------------ device errors

void expect_unsupported(const cuda_shim::FakeDevice& d, int device, const std::string& needle) {
  FakeDeviceScope scope(d);
  CudaOptions o;
  o.device = device;
  try {
    CudaBackend b(o);
    ADD_FAILURE() << "expected INFER_ERR_UNSUPPORTED containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(SimtCudaBackend, ClearErrorWithoutUsableGpu) {
  const uint64_t live0 = cuda_shim::stats().live_allocations;
  cuda_shim::FakeDevice d;
  d.count_error = cudaErrorInsufficientDriver;
  expect_unsupported(d, 0, "no usable GPU (CUDA driver version is insufficient");
  d.count_error = cudaErrorNoDevice;
  expect_unsupported(d, 0, "no usable GPU (no CUDA-capable device");
  d = cuda_shim::FakeDevice{};
  d.major = 7;
  d.minor = 5;
  expect_unsupported(d, 0, "compute capability 7.5) is too old; the CUDA backend needs compute capability 8.0");
  expect_unsupported(cuda_shim::FakeDevice{}, 2, "there is no GPU 2 (this machine has 1)");
  EXPECT_EQ(cuda_shim::stats().live_allocations, live0) << "a failed construction leaks nothing";
  EXPECT_NO_THROW(CudaBackend{});
}

// make_backend (the real build's): "auto" never fails; "cuda" either works or says why.
TEST(SimtCudaBackend, MakeBackendAutoFallsBack) {
  auto b = make_backend("auto", 1);
  EXPECT_TRUE(b->name() == "cpu" || b->name() == "cuda");
  try {
    EXPECT_EQ(make_backend("cuda", 1)->name(), "cuda");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("--device cpu"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_backend("cuda:x", 1), Error);
}

// ------------------------------------------------------------------ HF parity

struct ParityCase {
  const char* model;
  CudaPrecision precision;
};
void PrintTo(const ParityCase& c, std::ostream* os) {
  *os << c.model << (c.precision == CudaPrecision::kFp32 ? " fp32" : " fast");
}
std::string case_name(const ::testing::TestParamInfo<ParityCase>& info) {
  return std::string(info.param.model) + (info.param.precision == CudaPrecision::kFp32 ? "_fp32" : "_fast");
}

class SimtCudaParity : public ::testing::TestWithParam<ParityCase> {
 protected:
  float tol() const { return GetParam().precision == CudaPrecision::kFp32 ? kFp32Tol : kFastTol; }
};

TEST_P(SimtCudaParity, LogitsMatchHF) {
  Fixture f = load(GetParam().model);
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  const auto want = read_vec<float>(*f.ref, "logits");
  const int32_t V = int32_t(f.model->vocab_size());
  Session ctx(*f.model, 64, cuda(GetParam().precision), 64);
  ctx.eval(ids.data(), int64_t(ids.size()), true);
  const float worst = max_diff(ctx.logits(), want.data(), want.size());
  std::printf("[%s] max |logit - HF| over %zu positions: %.3g\n", case_name({GetParam(), 0}).c_str(), ids.size(), worst);
  EXPECT_LE(worst, tol());
  int compared = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* w = want.data() + t * size_t(V);
    const int32_t top = argmax(w, V);
    float second = -INFINITY;
    for (int32_t v = 0; v < V; ++v)
      if (v != top) second = std::max(second, w[v]);
    if (w[top] - second <= 2 * tol()) continue;
    ++compared;
    EXPECT_EQ(argmax(ctx.logits() + t * size_t(V), V), top) << "position " << t;
  }
  EXPECT_GT(compared, 0);
}

// Prefill, then one token at a time (decode graphs on): HF's greedy tokens (fp32 precision: exact agreement).
TEST(SimtCudaBackend, GreedyMatchesHF) {
  for (const char* name : kModels) {
    SCOPED_TRACE(name);
    Fixture f = load(name);
    const auto prompt = read_vec<int32_t>(*f.ref, "greedy_prompt");
    const auto want = read_vec<int32_t>(*f.ref, "greedy_tokens");
    const auto margins = read_vec<float>(*f.ref, "greedy_margins");
    const int n = 12;  // of the fixture's 40: the graph is captured at step 3 and replayed after
    auto backend = cuda(CudaPrecision::kFp32);
    CudaBackend* be = backend.get();
    Session ctx(*f.model, 128, std::move(backend), 64);
    ctx.eval(prompt.data(), int64_t(prompt.size()), false);
    const int32_t V = int32_t(f.model->vocab_size());
    for (int i = 0; i < n; ++i) {
      ASSERT_GT(margins[size_t(i)], 2 * kFp32Tol);
      const int32_t id = argmax(ctx.logits(), V);
      ASSERT_EQ(id, want[size_t(i)]) << "greedy step " << i << " (HF margin " << margins[size_t(i)] << ")";
      if (i + 1 < n) ctx.eval(&id, 1, false);
    }
    EXPECT_EQ(be->stats().graph_captures, 1);
    EXPECT_EQ(be->stats().graph_replays, n - 2);  // n - 1 decode steps, the first eager
  }
}

// Incremental decode (graphs on) equals the full prefill's logits at every position, and the CPU backend's.
TEST_P(SimtCudaParity, DecodeEqualsPrefillAndCpu) {
  Fixture f = load(GetParam().model);
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  const int64_t V = f.model->vocab_size(), T = int64_t(ids.size());
  const int64_t t0 = GetParam().precision == CudaPrecision::kFp32 ? 16 : 20;  // decode the last 8 (4) positions
  Session full(*f.model, 64, cuda(GetParam().precision), 64);
  full.eval(ids.data(), T, true);
  Session cpu(*f.model, 64, 1, 64);
  Session inc(*f.model, 64, cuda(GetParam().precision), 64);
  cpu.eval(ids.data(), t0, false);
  inc.eval(ids.data(), t0, false);
  for (int64_t t = t0; t < T; ++t) {
    cpu.eval(&ids[size_t(t)], 1, false);
    inc.eval(&ids[size_t(t)], 1, false);
    EXPECT_LE(max_diff(inc.logits(), full.logits() + t * V, size_t(V)), tol()) << "position " << t;
    EXPECT_LE(max_diff(inc.logits(), cpu.logits(), size_t(V)), tol()) << "position " << t;
  }
}

std::vector<ParityCase> parity_cases() {
  std::vector<ParityCase> v;
  for (const char* m : kModels) v.push_back({m, CudaPrecision::kFp32});
  for (const char* m : kModels) v.push_back({m, CudaPrecision::kFast});
  return v;
}
INSTANTIATE_TEST_SUITE_P(Tiny, SimtCudaParity, ::testing::ValuesIn(parity_cases()), case_name);

// ------------------------------------------------------------------ decode graphs

// The same decode with and without graphs: bit-identical logits (same kernels, same arguments). The graph is
// captured once the op sequence repeats, replayed after, and re-captured when the attention split count changes
// (the emulated GPU has 4 SMs: 2 KV heads give 4 splits at most, one per 32 keys: 1 -> 2 at 64 keys).
TEST(SimtCudaBackend, DecodeGraphReplayIsExact) {
  Fixture f = load("qwen3_gqa4_hd");
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  std::vector<int32_t> prompt;
  while (prompt.size() < 58) prompt.insert(prompt.end(), ids.begin(), ids.end());
  prompt.resize(58);
  const int32_t V = int32_t(f.model->vocab_size());
  auto with = cuda(CudaPrecision::kFp32, true);
  auto without = cuda(CudaPrecision::kFp32, false);
  CudaBackend* g = with.get();
  CudaBackend* e = without.get();
  Session a(*f.model, 128, std::move(with), 64), b(*f.model, 128, std::move(without), 64);
  a.eval(prompt.data(), int64_t(prompt.size()), false);
  b.eval(prompt.data(), int64_t(prompt.size()), false);
  const auto launches0 = cuda_shim::stats().graph_launches;
  const int steps = 10;  // positions 58..67
  for (int i = 0; i < steps; ++i) {
    ASSERT_EQ(std::memcmp(a.logits(), b.logits(), size_t(V) * sizeof(float)), 0) << "step " << i;
    const int32_t id = argmax(a.logits(), V);
    a.eval(&id, 1, false);
    b.eval(&id, 1, false);
  }
  ASSERT_EQ(std::memcmp(a.logits(), b.logits(), size_t(V) * sizeof(float)), 0);
  EXPECT_EQ(e->stats().graph_captures, 0);
  EXPECT_EQ(e->stats().graph_replays, 0);
  // steps at 58..62 (1 split): eager, capture+run, replay x3; at 63..67 (2 splits): eager, capture+run, replay x3
  EXPECT_EQ(g->stats().graph_captures, 2);
  EXPECT_EQ(g->stats().eager_steps, 2);
  EXPECT_EQ(g->stats().graph_replays, steps - 2);
  EXPECT_EQ(cuda_shim::stats().graph_launches - launches0, uint64_t(g->stats().graph_replays));
}

// Dumping intermediates reads buffers in the middle of a decode step: the step runs eagerly and stays correct.
TEST(SimtCudaBackend, DumpDuringDecode) {
  Fixture f = load("qwen3_tied_gqa2");
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  Session cpu(*f.model, 64, 1, 64), gpu(*f.model, 64, cuda(CudaPrecision::kFp32), 64);
  cpu.eval(ids.data(), 6, false);
  gpu.eval(ids.data(), 6, false);
  for (int step = 0; step < 3; ++step) {
    std::map<std::string, std::vector<float>> got, want;
    DumpFn fg = [&](const std::string& n, const float* d, int64_t r, int64_t c) { got[n].assign(d, d + r * c); };
    DumpFn fc = [&](const std::string& n, const float* d, int64_t r, int64_t c) { want[n].assign(d, d + r * c); };
    gpu.eval(&ids[size_t(6 + step)], 1, false, &fg);
    cpu.eval(&ids[size_t(6 + step)], 1, false, &fc);
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [name, w] : want) {
      ASSERT_EQ(got[name].size(), w.size()) << name;
      EXPECT_LE(max_diff(got[name].data(), w.data(), w.size()), kFp32Tol) << name;
    }
  }
}

// Every device allocation (weights, activations, KV cache, scratch, graph buffers) is freed with the session.
TEST(SimtCudaBackend, ReleasesAllDeviceMemory) {
  Fixture f = load("qwen3_tied_gqa2");
  const auto ids = read_vec<int32_t>(*f.ref, "prompt_ids");
  const uint64_t live0 = cuda_shim::stats().live_allocations;
  {
    Session s(*f.model, 64, cuda(CudaPrecision::kFast), 64);
    s.eval(ids.data(), 6, false);
    for (int i = 6; i < 10; ++i) s.eval(&ids[size_t(i)], 1, false);  // eager, capture, replays
    EXPECT_GT(cuda_shim::stats().live_allocations, live0);
  }
  EXPECT_EQ(cuda_shim::stats().live_allocations, live0);
}

// ------------------------------------------------------------------ sampling through the backend

// generate() samples on the device when it can: the logits never reach the host (logits_rows() == 0 after the
// run), the greedy tokens are HF's, and greedy and seeded sampling give the same tokens and logprobs as the host
// sampler over the same backend (device_sampling off). Penalties fall back to the host sampler.
TEST(SimtCudaBackend, GenerateSamplesOnTheDevice) {
  Fixture f = load("qwen3_tied_gqa2");
  const auto prompt = read_vec<int32_t>(*f.ref, "greedy_prompt");
  const auto want = read_vec<int32_t>(*f.ref, "greedy_tokens");
  struct Run {
    std::vector<int32_t> ids;
    std::vector<float> lps;
    int64_t host_rows;
  };
  auto run = [&](const infer_sampler_params& p, bool device, int n) {
    Session ctx(*f.model, 128, cuda(CudaPrecision::kFp32), 64);
    Sampler s(p);
    GenerateOptions o;
    o.max_tokens = n;
    o.device_sampling = device;
    Run r;
    generate(ctx, prompt.data(), int64_t(prompt.size()), s, o, [&](const infer_token_info& t) {
      if (t.id >= 0) r.ids.push_back(t.id), r.lps.push_back(t.logprob);
      return true;
    });
    r.host_rows = ctx.logits_rows();
    EXPECT_TRUE(ctx.host_logits()) << "generate restores the session's host logits";
    return r;
  };
  infer_sampler_params greedy{};
  greedy.temperature = 0.0f;
  greedy.repetition_penalty = 1.0f;
  greedy.top_p = 1.0f;
  const int n = 10;
  Run dev = run(greedy, true, n), host = run(greedy, false, n);
  EXPECT_EQ(dev.host_rows, 0) << "device sampling copied the logits to the host";
  EXPECT_EQ(host.host_rows, 1);
  ASSERT_EQ(dev.ids.size(), size_t(n));
  for (int i = 0; i < n; ++i) EXPECT_EQ(dev.ids[size_t(i)], want[size_t(i)]) << "greedy step " << i;
  EXPECT_EQ(dev.ids, host.ids);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(dev.lps[size_t(i)], host.lps[size_t(i)], 1e-4) << i;

  infer_sampler_params samp = greedy;
  samp.temperature = 1.3f;
  samp.top_k = 40;
  samp.top_p = 0.95f;
  samp.min_p = 0.01f;
  for (uint64_t seed : {1u, 2u, 3u}) {
    samp.seed = seed;
    Run a = run(samp, true, n), b = run(samp, false, n);
    EXPECT_EQ(a.host_rows, 0);
    EXPECT_EQ(a.ids, b.ids) << "seed " << seed;
    for (size_t i = 0; i < a.lps.size() && i < b.lps.size(); ++i) EXPECT_NEAR(a.lps[i], b.lps[i], 1e-4);
  }
  infer_sampler_params pen = samp;
  pen.repetition_penalty = 1.2f;
  EXPECT_EQ(run(pen, true, 3).host_rows, 1) << "penalties need the host sampler";
}

TEST(SimtCudaBackend, SampleOnDeviceMatchesSampler) {
  CudaBackend be;
  const int64_t V = 512;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(V));
  for (auto& x : logits) x = nd(rng);
  float* d = be.alloc(V);
  be.from_host(logits.data(), d, V);
  EXPECT_EQ(be.argmax(d, V), argmax(logits.data(), int32_t(V)));
  for (uint64_t seed : {3u, 4u}) {
    infer_sampler_params p{};
    p.temperature = 0.8f;
    p.top_k = 50;
    p.top_p = 0.9f;
    p.min_p = 0.02f;
    p.repetition_penalty = 1.0f;
    p.seed = seed;
    Sampler s(p);
    std::mt19937_64 r(seed);
    const double u = std::generate_canonical<double, std::numeric_limits<double>::digits>(r);
    float lp = 0.0f;
    const int32_t id = s.sample(logits.data(), int32_t(V));
    EXPECT_EQ(be.sample(d, V, p.temperature, p.top_k, p.top_p, p.min_p, u, &lp), id);
    // The token's log-softmax over the raw logits.
    double mx = logits[0], sum = 0;
    for (float x : logits) mx = std::max(mx, double(x));
    for (float x : logits) sum += std::exp(double(x) - mx);
    EXPECT_NEAR(lp, logits[size_t(id)] - (mx + std::log(sum)), 1e-5);
  }
  be.release(d);
  float* big = be.alloc(2048);
  EXPECT_EQ(be.sample(big, 2048, 1.0f, 0, 1.0f, 0.0f, 0.5), -1) << "top-k off over a vocabulary > 1024: host sampling";
  be.release(big);
}

}  // namespace
