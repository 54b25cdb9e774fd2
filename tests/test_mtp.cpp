// test_mtp.cpp — DeepSeek MTP (multi-token prediction) and self-speculative decoding.
//
//   - the MTP draft logits against the torch reference of the module (tools/mtp_reference.py, vLLM's layout; HF has
//     no MTP), token by token and after a batched prefill;
//   - speculative decoding gives exactly the tokens of plain decoding (greedy over 72 tokens, chained drafts,
//     sampling with a seed), exercising both the accept path (the dsv3_mtp fixture's MTP block is a copy of its only
//     layer, so drafts are often right) and the reject path, and reports the acceptance rate;
//   - accept/reject and rollback unit tests on a scripted fake model;
//   - the MTP cache size, dump names and the C API switch.
//
// Tolerance for the draft logits: the reference is float32 torch on the bf16 weights, the engine float32 with a
// different summation order (as in test_models.cpp): 1e-4 on logits of |x| <= ~10 (observed ~1e-5). Speculative
// and plain decoding must agree exactly: the verification batch computes each row with the same kernels in the
// same order as a one-token step.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixtures.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "common.h"
#include "generate.h"
#include "infer/infer.h"
#include "model.h"
#include "models/deepseek_v3.h"
#include "safetensors.h"
#include "sampler.h"
#include "session.h"
#include "speculative.h"

using ::testing::HasSubstr;
using namespace infer;
using namespace infer::testutil;

namespace {

constexpr float kTol = 1e-4f;
const std::string kMtp = "dsv3_mtp";

float max_diff(const float* a, const float* b, size_t n) {
  float w = 0;
  for (size_t i = 0; i < n; ++i) w = std::max(w, std::fabs(a[i] - b[i]));
  return w;
}

// MTP logits at position i (main hidden h_i after the final norm, token i+1) equal the torch reference, whether the
// MTP cache was filled one position at a time (eval one token, draft) or by a 24-token prefill.
TEST(Mtp, DraftLogitsMatchTorchReference) {
  auto m = Transformer::load(model_dir(kMtp), LoadOptions{}, false);
  ASSERT_EQ(m->mtp_layers(), 1);
  auto ref = SafeTensors::open_file(model_dir(kMtp) + "/reference.safetensors");
  const auto ids = read_vec<int32_t>(*ref, "prompt_ids");
  const auto next = read_vec<int32_t>(*ref, "mtp_next_ids");
  const auto want = read_vec<float>(*ref, "mtp_logits");
  const int64_t V = m->vocab_size(), T = int64_t(ids.size());
  ASSERT_EQ(want.size(), size_t(T * V));
  std::vector<float> got(static_cast<size_t>(V));
  float worst = 0;
  Session s(*m, 64, 2, 64);
  for (int64_t i = 0; i < T; ++i) {
    s.eval(&ids[size_t(i)], 1, false);
    int32_t d = -1;
    ASSERT_EQ(s.draft(next[size_t(i)], 1, &d, got.data()), 1);
    const float e = max_diff(got.data(), want.data() + i * V, size_t(V));
    EXPECT_LE(e, kTol) << "position " << i;
    EXPECT_EQ(d, argmax(got.data(), int32_t(V)));
    worst = std::max(worst, e);
  }
  std::printf("[%s] max |MTP logit - torch reference| over %lld positions: %.3g\n", kMtp.c_str(), (long long)T, worst);
  // Batched prefill: the MTP cache of positions 0..22 is filled inside the forward; the draft at 23 must agree.
  Session b(*m, 64, 2, 8);  // 3 chunks of 8: each chunk's last position is fed at the start of the next one
  b.eval(ids.data(), T, false);
  int32_t d = -1;
  ASSERT_EQ(b.draft(next[size_t(T - 1)], 1, &d, got.data()), 1);
  EXPECT_LE(max_diff(got.data(), want.data() + (T - 1) * V, size_t(V)), kTol);
}

struct GenOut {
  std::vector<int32_t> tokens;
  infer_generate_result res;
  std::vector<int32_t> cached;
};

GenOut run_generate(Session& s, const std::vector<int32_t>& prompt, int n, const infer_sampler_params& sp,
                    int32_t n_draft = 1) {
  Sampler sampler(sp);
  GenerateOptions o;
  o.max_tokens = n;
  o.ignore_eos = true;
  o.n_draft = n_draft;
  GenOut g;
  g.res = generate(s, prompt.data(), int64_t(prompt.size()), sampler, o, [&](const infer_token_info& t) {
    if (t.id >= 0) g.tokens.push_back(t.id);
    return true;
  });
  g.cached = s.tokens();
  return g;
}

infer_sampler_params greedy_params() {
  infer_sampler_params p{};
  p.temperature = 0;
  p.top_p = 1;
  p.repetition_penalty = 1;
  return p;
}

// Greedy over 72 tokens after the 24-token prompt: speculative == plain, token for token, and the cache ends up the
// same; the acceptance rate is reported (the torch reference measured a greedy draft agreement of 0.65 over 64
// tokens after this prompt; drafts are only made at round starts, so the rate differs somewhat).
TEST(Mtp, SpeculativeGreedyEqualsPlain) {
  auto m = Transformer::load(model_dir(kMtp), LoadOptions{}, false);
  auto ref = SafeTensors::open_file(model_dir(kMtp) + "/reference.safetensors");
  const auto prompt = read_vec<int32_t>(*ref, "prompt_ids");
  Session plain(*m, 128, 2, 64);
  plain.set_mtp(false);
  EXPECT_FALSE(plain.mtp());
  const GenOut a = run_generate(plain, prompt, 72, greedy_params());
  EXPECT_EQ(a.res.draft_tokens, 0);
  // HF's greedy continuation of the 8-token greedy prompt, with and without drafts.
  const auto gp = read_vec<int32_t>(*ref, "greedy_prompt");
  const auto hf = read_vec<int32_t>(*ref, "greedy_tokens");
  Session p2(*m, 128, 2, 64), s2(*m, 128, 2, 64);
  p2.set_mtp(false);
  EXPECT_EQ(run_generate(p2, gp, 40, greedy_params()).tokens, hf);
  EXPECT_EQ(run_generate(s2, gp, 40, greedy_params()).tokens, hf);

  for (int32_t n_draft : {1, 3}) {
    Session spec(*m, 128, 2, 64);
    EXPECT_TRUE(spec.mtp());
    const GenOut b = run_generate(spec, prompt, 72, greedy_params(), n_draft);
    EXPECT_EQ(b.tokens, a.tokens) << "n_draft " << n_draft;
    EXPECT_EQ(b.cached, a.cached) << "n_draft " << n_draft;
    const double rate = b.res.draft_tokens ? double(b.res.draft_accepted) / b.res.draft_tokens : 0;
    std::printf("[%s] n_draft %d: %d of %d drafts accepted (acceptance rate %.3f), 72 tokens\n", kMtp.c_str(),
                n_draft, b.res.draft_accepted, b.res.draft_tokens, rate);
    EXPECT_GT(b.res.draft_accepted, 0) << "the accept path never ran";
    EXPECT_LT(b.res.draft_accepted, b.res.draft_tokens) << "the reject path never ran";
    if (n_draft == 1) EXPECT_GT(rate, 0.4);
  }
}

// With sampling (temperature, top-k/top-p, a seed), drafts are checked against the sampled token: the same random
// stream gives the same text with and without speculation.
TEST(Mtp, SpeculativeSamplingEqualsPlain) {
  auto m = Transformer::load(model_dir(kMtp), LoadOptions{}, false);
  const std::vector<int32_t> prompt = {17, 300, 45, 99, 210, 8, 77, 400};
  infer_sampler_params sp = greedy_params();
  sp.temperature = 0.7f;
  sp.top_k = 20;
  sp.top_p = 0.95f;
  sp.seed = 1234;
  Session plain(*m, 128, 2, 64);
  plain.set_mtp(false);
  Session spec(*m, 128, 2, 64);
  const GenOut a = run_generate(plain, prompt, 64, sp), b = run_generate(spec, prompt, 64, sp);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_GT(b.res.draft_tokens, 0);
}

// Prefix reuse across generate calls cuts the cache back (and the MTP cache with it); generating again from a
// longer prompt that shares a prefix gives what a fresh session gives. Also near a full context the drafts shrink.
TEST(Mtp, PrefixReuseAndFullContext) {
  auto m = Transformer::load(model_dir(kMtp), LoadOptions{}, false);
  const std::vector<int32_t> p1 = {17, 300, 45, 99, 210, 8, 77, 400};
  std::vector<int32_t> p2 = p1;
  p2.resize(5);
  p2.insert(p2.end(), {12, 13, 14, 15});
  Session s(*m, 64, 2, 64);
  run_generate(s, p1, 20, greedy_params());
  const GenOut again = run_generate(s, p2, 30, greedy_params());
  Session fresh(*m, 64, 2, 64);
  fresh.set_mtp(false);
  const GenOut want = run_generate(fresh, p2, 30, greedy_params());
  EXPECT_EQ(again.tokens, want.tokens);
  EXPECT_EQ(again.res.prompt_tokens, 4);  // the shared prefix of 5 was reused
  // A context of 24 for a 9-token prompt: generation stops at the end ("length") with or without drafts.
  Session small(*m, 24, 2, 64), small_plain(*m, 24, 2, 64);
  small_plain.set_mtp(false);
  const GenOut x = run_generate(small, p2, 100, greedy_params()), y = run_generate(small_plain, p2, 100, greedy_params());
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_EQ(x.res.finish_reason, INFER_FINISH_LENGTH);
  EXPECT_EQ(x.cached, y.cached);
}

TEST(Mtp, CacheSizesAndDump) {
  auto m = Transformer::load(model_dir(kMtp), LoadOptions{}, false);
  // (kv_lora_rank 32 + qk_rope_head_dim 8) × 1 layer × 4 bytes, and the same apart for the MTP layer.
  EXPECT_EQ(m->kv_bytes_per_token(), 40 * 1 * 4);
  EXPECT_EQ(m->mtp_kv_bytes_per_token(), 40 * 1 * 4);
  EXPECT_THAT(m->describe(), HasSubstr("MTP 1 layer (own cache 160 B/token)"));
  std::map<std::string, int64_t> rows;
  DumpFn fn = [&](const std::string& n, const float*, int64_t r, int64_t) { rows[n] += r; };
  Session s(*m, 64, 2, 64);
  const int32_t ids[] = {5, 6, 7, 8, 9};
  s.eval(ids, 5, true, &fn);
  for (const char* n : {"mtp.eh_proj", "mtp.attn_norm", "mtp.kv_latent", "mtp.router_topk", "mtp.out"})
    EXPECT_EQ(rows[n], 4) << n;  // positions 0..3 (4 has no next token yet)
}

TEST(Mtp, CApiSwitchAndAcceptanceCounts) {
  infer_model* m = nullptr;
  ASSERT_EQ(infer_model_load(model_dir(kMtp).c_str(), nullptr, &m), INFER_OK) << infer_last_error();
  for (bool on : {true, false}) {
    infer_context_params cp = infer_context_default_params();
    EXPECT_TRUE(cp.mtp);
    cp.mtp = on;
    cp.n_ctx = 96;
    infer_context* c = nullptr;
    ASSERT_EQ(infer_context_create(m, &cp, &c), INFER_OK) << infer_last_error();
    EXPECT_EQ(infer_context_mtp_kv_bytes_per_token(c), on ? 160 : 0);
    infer_generate_params gp = infer_generate_default_params();
    gp.max_tokens = 32;
    gp.ignore_eos = true;
    infer_generate_result res{};
    const int32_t prompt[] = {17, 300, 45, 99, 210, 8, 77, 400};
    ASSERT_EQ(infer_generate(c, prompt, 8, &gp, [](const infer_token_info*, void*) { return true; }, nullptr, &res),
              INFER_OK);
    EXPECT_EQ(res.gen_tokens, 32);
    if (on) {
      EXPECT_GT(res.draft_tokens, 0);
      EXPECT_GT(res.draft_accepted, 0);
    } else {
      EXPECT_EQ(res.draft_tokens, 0);
    }
    infer_context_free(c);
  }
  infer_model_free(m);
}

// ---- accept / reject on a scripted model

// A fake model over a vocabulary of 16: the token after x at position p is f(p, x) = (5x + 3p + 1) mod 16 (logit 10,
// the rest 0). Its "draft head" proposes the true continuation except at positions listed in `wrong` (it then
// proposes f + 1), and records every cache rollback.
class FakeModel final : public Transformer {
 public:
  std::set<int64_t> wrong;
  mutable std::vector<int64_t> truncations;
  mutable int64_t forwards = 0;
  FakeModel() { config.vocab_size = 16; }
  static int32_t f(int64_t p, int32_t x) { return int32_t((5 * x + 3 * p + 1) % 16); }
  std::unique_ptr<ForwardState> new_state(Backend& b, int64_t n_ctx, int64_t n_batch) const override {
    auto st = std::make_unique<ForwardState>(b);
    st->n_ctx = n_ctx;
    st->n_batch = n_batch;
    return st;
  }
  void forward(ForwardState& st, const int32_t* ids, int64_t n, float* logits, bool all, const DumpFn*) const override {
    ++forwards;
    for (int64_t t = all ? 0 : n - 1; t < n; ++t) {
      float* row = logits + (all ? t : 0) * 16;
      std::fill(row, row + 16, 0.f);
      row[f(st.n_past + t, ids[t])] = 10.f;
    }
    st.n_past += n;
  }
  int64_t kv_bytes_per_token() const override { return 0; }
  int64_t mtp_layers() const override { return 1; }
  int64_t mtp_draft(ForwardState& st, int32_t next, int64_t n, int32_t* d, float*) const override {
    int32_t x = next;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t p = st.n_past + k;  // the position of x
      x = f(p, x);
      d[k] = wrong.count(p + 1) ? int32_t((x + 1) % 16) : x;
      x = d[k];
    }
    return n;
  }
  void truncate_state(ForwardState&, int64_t n_keep) const override { truncations.push_back(n_keep); }

 protected:
  void bind_weights(const LoadOptions&) override {}
};

TEST(SpeculatorUnit, AcceptRejectAndRollback) {
  FakeModel m;
  // Drafts for positions 11 and 16 are wrong; the rest right.
  m.wrong = {11, 16};
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6};
  Session plain(m, 64, 1, 64);
  plain.set_mtp(false);
  const GenOut a = run_generate(plain, prompt, 12, greedy_params());
  const int64_t plain_forwards = m.forwards;
  m.forwards = 0;
  m.truncations.clear();
  Session spec(m, 64, 1, 64);
  const GenOut b = run_generate(spec, prompt, 12, greedy_params());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.cached, b.cached);
  // Generated tokens sit at positions 8..19. Rounds of one draft: token 8 → draft 9 taken, bonus 10 → draft 11
  // rejected, round from 11 → draft 12 taken, bonus 13 → draft 14 taken, bonus 15 → draft 16 rejected, round from
  // 16 → draft 17 taken, bonus 18 → draft 19, which is never checked (19 is the last token: no advance follows).
  // 6 drafts checked, 4 taken, 2 rejected.
  EXPECT_EQ(b.res.draft_tokens, 6);
  EXPECT_EQ(b.res.draft_accepted, 4);
  EXPECT_LT(m.forwards, plain_forwards);  // fewer main-model forwards than tokens
  // Every rejection rolled the caches back to the last confirmed position.
  EXPECT_GE(m.truncations.size(), 2u);
  std::printf("fake model: %d drafts, %d accepted, %lld forwards (plain %lld)\n", b.res.draft_tokens,
              b.res.draft_accepted, (long long)m.forwards, (long long)plain_forwards);
}

TEST(SpeculatorUnit, ChainedDraftsPartialAcceptance) {
  FakeModel m;
  m.wrong = {11, 18};
  const std::vector<int32_t> prompt = {7, 7, 7};
  Session plain(m, 64, 1, 64);
  plain.set_mtp(false);
  const GenOut a = run_generate(plain, prompt, 20, greedy_params());
  Session spec(m, 64, 1, 64);
  Speculator sp(spec, 4);
  ASSERT_TRUE(sp.active());
  spec.eval(prompt.data(), int64_t(prompt.size()), false);
  std::vector<int32_t> out;
  const float* l = spec.logits();
  for (int i = 0; i < 20; ++i) {
    const int32_t id = argmax(l, 16);
    out.push_back(id);
    if (i + 1 < 20) l = sp.advance(id);
  }
  sp.flush();
  EXPECT_EQ(out, a.tokens);
  EXPECT_EQ(spec.tokens(), a.cached);
  // Rounds of 4 drafts; a wrong draft rejects it and the rest of its round.
  EXPECT_GT(sp.accepted(), 8);
  EXPECT_LT(sp.accepted(), sp.drafted());
  EXPECT_LT(sp.rounds(), 10);
  EXPECT_EQ(sp.n_past(), int64_t(prompt.size()) + 19);
}

TEST(SpeculatorUnit, InactiveWithoutDraftHead) {
  auto m = Transformer::load(model_dir("qwen3_tied_gqa2"), LoadOptions{}, false);
  Session s(*m, 32, 1, 32);
  EXPECT_FALSE(s.mtp());
  Speculator sp(s);
  EXPECT_FALSE(sp.active());
  const int32_t ids[] = {5, 6};
  s.eval(ids, 2, false);
  sp.advance(7);
  EXPECT_EQ(s.n_past(), 3);
  EXPECT_EQ(sp.drafted(), 0);
}

}  // namespace
