// test_serve_engine.cpp — continuous batching (src/server/): the paged KV block pool (free list, reference counts,
// prefix cache, eviction), the CPU paged attention against the contiguous one, the batched forward against
// forward() one sequence at a time, and the engine (scheduler): greedy outputs of concurrent requests equal to
// generate() alone, prefix sharing, cancellation, a full queue, prompts over the context, blocks freed at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "cpu/backend_cpu.h"
#include "generate.h"
#include "model.h"
#include "sampler.h"
#include "server/engine.h"
#include "server/kv_blocks.h"
#include "session.h"

using namespace infer;
using infer::server::BlockPool;
using infer::server::Engine;
using infer::server::EngineOptions;
using infer::server::Request;

namespace {

std::string demo() { return std::string(INFER_MODELS_DIR) + "/qwen3-tiny-random"; }
std::string fixture(const std::string& n) { return std::string(INFER_TEST_DATA) + "/models/" + n; }

// ---------------------------------------------------------------------------------------------------- BlockPool

TEST(BlockPool, AllocatesEveryBlockOnceThenReportsFull) {
  BlockPool p(4, 8);
  std::vector<int32_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(p.allocate());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(p.allocate(), -1);
  EXPECT_EQ(p.n_used(), 4);
  p.release(2);
  EXPECT_EQ(p.n_used(), 3);
  EXPECT_EQ(p.allocate(), 2);
  for (int32_t b : got) p.release(b);
  EXPECT_EQ(p.n_used(), 0);
  EXPECT_EQ(p.n_available(), 4);
  EXPECT_THROW(p.release(0), Error);  // released twice
}

TEST(BlockPool, RefcountsKeepSharedBlocksUntilTheLastRelease) {
  BlockPool p(2, 4);
  const int32_t b = p.allocate();
  p.retain(b);
  EXPECT_EQ(p.refs(b), 2);
  p.release(b);
  EXPECT_EQ(p.n_used(), 1);
  p.release(b);
  EXPECT_EQ(p.n_used(), 0);
}

TEST(BlockPool, PrefixCacheMatchesFullBlocksInOrderAndStopsAtTheFirstDifference) {
  BlockPool p(8, 4);
  std::vector<int32_t> toks(12);
  std::iota(toks.begin(), toks.end(), 100);
  // A sequence fills 3 blocks and publishes them.
  std::vector<int32_t> blocks;
  uint64_t key = BlockPool::kRootKey;
  for (int i = 0; i < 3; ++i) {
    blocks.push_back(p.allocate());
    key = p.publish(blocks.back(), key, toks.data() + 4 * i);
  }
  EXPECT_EQ(p.n_cached(), 3);
  // Same first 9 tokens, then different: the first two blocks match (the third holds 8..11, which differs).
  std::vector<int32_t> q(toks.begin(), toks.end());
  q[9] = 7;
  uint64_t k2 = 0;
  auto m = p.match_prefix(q.data(), int64_t(q.size()), 10, &k2);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], blocks[0]);
  EXPECT_EQ(m[1], blocks[1]);
  EXPECT_EQ(p.refs(blocks[0]), 2);
  EXPECT_EQ(k2, p.chain_key(p.chain_key(BlockPool::kRootKey, toks.data()), toks.data() + 4));
  // max_blocks caps the match.
  auto m1 = p.match_prefix(toks.data(), 12, 1, nullptr);
  ASSERT_EQ(m1.size(), 1u);
  // A different first block matches nothing, even if a later block is equal (keys chain over the whole prefix).
  std::vector<int32_t> r = toks;
  r[0] = 1;
  EXPECT_TRUE(p.match_prefix(r.data(), 12, 3, nullptr).empty());
  for (int32_t b : m) p.release(b);
  for (int32_t b : m1) p.release(b);
  for (int32_t b : blocks) p.release(b);
  EXPECT_EQ(p.n_used(), 0);
  EXPECT_EQ(p.n_cached(), 3);  // still cached: a later sequence can take them back
  auto again = p.match_prefix(toks.data(), 12, 3, nullptr);
  EXPECT_EQ(again, blocks);
  for (int32_t b : again) p.release(b);
}

TEST(BlockPool, EvictsTheLeastRecentlyReleasedCachedBlockWhenNoneIsFree) {
  BlockPool p(2, 2);
  const int32_t a = p.allocate(), b = p.allocate();
  const int32_t ta[2] = {1, 2}, tb[2] = {3, 4};
  p.publish(a, BlockPool::kRootKey, ta);
  p.publish(b, BlockPool::kRootKey, tb);
  p.release(b);  // b released first: the older one
  p.release(a);
  EXPECT_EQ(p.n_available(), 2);
  const int32_t c = p.allocate();
  EXPECT_EQ(c, b);
  EXPECT_EQ(p.n_cached(), 1);
  EXPECT_TRUE(p.match_prefix(tb, 2, 1, nullptr).empty());  // b's old content is gone
  auto m = p.match_prefix(ta, 2, 1, nullptr);              // a's is still there
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], a);
  EXPECT_EQ(p.allocate(), -1);  // a is in use again, c too
}

TEST(BlockPool, DuplicateContentStaysUnregistered) {
  BlockPool p(3, 2);
  const int32_t t[2] = {5, 6};
  const int32_t a = p.allocate(), b = p.allocate();
  const uint64_t ka = p.publish(a, BlockPool::kRootKey, t);
  const uint64_t kb = p.publish(b, BlockPool::kRootKey, t);  // computed concurrently by another sequence
  EXPECT_EQ(ka, kb);
  EXPECT_EQ(p.n_cached(), 1);
  p.release(b);  // unregistered: straight back to the free list
  p.release(a);
  EXPECT_EQ(p.n_available(), 3);
}

// ------------------------------------------------------------------------------------------- paged attention

struct PagedCase {
  int64_t pos0, n;
};

// Each sequence's rows through paged_attention (keys scattered over the blocks of `tables`, all sequences in one
// call) equal the contiguous attention over the same keys, bit for bit.
void paged_equals_contiguous(int64_t nh, int64_t nkv, int64_t d, int64_t bs, int64_t n_blocks,
                             const std::vector<PagedCase>& seqs, const std::vector<std::vector<int32_t>>& tables) {
  CpuBackend be(2);
  const int64_t kvw = nkv * d, qw = nh * d;
  std::mt19937 rng(1);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> kp(size_t(n_blocks * bs * kvw), 0), vp(kp.size(), 0);
  std::vector<float> qall, ref_all;
  std::vector<PagedSeq> ps;
  int64_t row0 = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t nk = seqs[s].pos0 + seqs[s].n;
    std::vector<float> k(size_t(nk * kvw)), v(k.size()), q(size_t(seqs[s].n * qw));
    for (auto& x : k) x = N(rng);
    for (auto& x : v) x = N(rng);
    for (auto& x : q) x = N(rng);
    // Contiguous reference.
    std::vector<float> ref(q.size());
    be.attention(q.data(), qw, k.data(), v.data(), ref.data(), qw, seqs[s].n, seqs[s].pos0, nh, nkv, d, 0.35f);
    // The same keys scattered into the blocks.
    std::vector<int32_t> rows;
    for (int64_t p = 0; p < nk; ++p) rows.push_back(int32_t(tables[s][size_t(p / bs)] * bs + p % bs));
    be.kv_write_rows(kp.data(), kvw, rows.data(), k.data(), kvw, nk);
    be.kv_write_rows(vp.data(), kvw, rows.data(), v.data(), kvw, nk);
    qall.insert(qall.end(), q.begin(), q.end());
    ref_all.insert(ref_all.end(), ref.begin(), ref.end());
    ps.push_back({row0, seqs[s].n, seqs[s].pos0, tables[s].data()});
    row0 += seqs[s].n;
  }
  std::vector<float> out(ref_all.size(), -1.f);
  be.paged_attention(qall.data(), qw, kp.data(), vp.data(), out.data(), qw, ps.data(), int64_t(ps.size()), bs, nh,
                     nkv, d, 0.35f);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], ref_all[i]) << "element " << i;
}

TEST(PagedAttention, CpuEqualsContiguousAttentionBitForBit) {
  // Sequence lengths (cached + new rows): A = 9 cached + 3 new, B = 0 + 5 (a prompt), C = 6 + 1 (decode).
  paged_equals_contiguous(4, 2, 8, 4, 16, {{9, 3}, {0, 5}, {6, 1}}, {{7, 2, 11}, {5, 0}, {15, 3}});
}

TEST(PagedAttention, CpuEqualsContiguousAttentionBitForBitVectorPath) {
  // head_dim 64 (the AVX-512 kernel where the CPU has it), 4 query heads per KV head, several 32-key blocks per
  // sequence, a block size (5) that does not divide them, work items of 16 query vectors (transposed scores) and of
  // fewer (decode).
  std::vector<std::vector<int32_t>> tables(3);
  for (int32_t b = 0; b < 16; ++b) tables[0].push_back(39 - b);       // 76 keys
  for (int32_t b = 0; b < 8; ++b) tables[1].push_back(2 * b);         // 40 keys
  for (int32_t b = 0; b < 7; ++b) tables[2].push_back(2 * b + 1);     // 34 keys
  paged_equals_contiguous(8, 2, 64, 5, 40, {{70, 6}, {0, 40}, {33, 1}}, tables);
}

// ------------------------------------------------------------------------------------------- batched forward

// Logits of the last token of `ids` after forward() alone, prefilling `split` tokens first then the rest one by one.
std::vector<float> single_logits(const Transformer& m, const std::vector<int32_t>& ids, int64_t split) {
  Session s(m, 64, 2, 64);
  s.eval(ids.data(), split, false);
  for (size_t i = size_t(split); i < ids.size(); ++i) s.eval(&ids[i], 1, false);
  return std::vector<float>(s.logits(), s.logits() + m.vocab_size());
}

void batched_forward_equals_single(const std::string& dir) {
  auto m = Transformer::load(dir, LoadOptions{}, false);
  CpuBackend be(2);
  const int64_t bs = 4, V = m->vocab_size();
  auto st = m->new_paged_state(be, 12, bs, 32, 3);
  // Three sequences: A prefills 6 then decodes 2; B prefills 3 in chunks of 2 and 1; C prefills 9 at once.
  std::vector<int32_t> A = {11, 42, 7, 99, 5, 63, 17, 28}, B = {3, 77, 1}, C = {9, 8, 7, 6, 5, 4, 3, 2, 1};
  std::vector<int32_t> ta = {2, 9}, tb = {5}, tc = {0, 11, 7};
  std::vector<float> logits(size_t(3 * V));
  // Step 1: A[0..6), B[0..2), C[0..9)
  BatchSeq s1[3] = {{A.data(), 6, 0, ta.data()}, {B.data(), 2, 0, tb.data()}, {C.data(), 9, 0, tc.data()}};
  m->forward_batch(*st, s1, 3, logits.data());
  auto refC = single_logits(*m, C, 9);
  for (int64_t i = 0; i < V; ++i) ASSERT_EQ(logits[size_t(2 * V + i)], refC[size_t(i)]) << "C, logit " << i;
  // Step 2: A[6], B[2]
  BatchSeq s2[2] = {{A.data() + 6, 1, 6, ta.data()}, {B.data() + 2, 1, 2, tb.data()}};
  m->forward_batch(*st, s2, 2, logits.data());
  auto refB = single_logits(*m, B, 2);
  for (int64_t i = 0; i < V; ++i) ASSERT_EQ(logits[size_t(V + i)], refB[size_t(i)]) << "B, logit " << i;
  // Step 3: A[7] alone
  BatchSeq s3[1] = {{A.data() + 7, 1, 7, ta.data()}};
  m->forward_batch(*st, s3, 1, logits.data());
  auto refA = single_logits(*m, A, 6);
  for (int64_t i = 0; i < V; ++i) ASSERT_EQ(logits[size_t(i)], refA[size_t(i)]) << "A, logit " << i;
}

TEST(ForwardBatch, Qwen3EqualsForwardOneSequenceAtATime) { batched_forward_equals_single(fixture("qwen3_tied_gqa2")); }
TEST(ForwardBatch, Qwen2BiasEqualsForwardOneSequenceAtATime) { batched_forward_equals_single(fixture("qwen2_bias")); }
TEST(ForwardBatch, Qwen3MoeEqualsForwardOneSequenceAtATime) {
  batched_forward_equals_single(fixture("qwen3_moe_top2"));
}

TEST(ForwardBatch, DeepSeekIsRefusedWithAClearError) {
  auto m = Transformer::load(fixture("dsv3_v2lite"), LoadOptions{}, false);
  EXPECT_FALSE(m->has_batched_forward());
  try {
    Engine e(*m, std::make_unique<CpuBackend>(1), EngineOptions{});
    FAIL() << "expected INFER_ERR_UNSUPPORTED";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("deepseek_v3"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------------------------------------ the engine

struct Outcome {
  std::vector<int32_t> ids;
  std::vector<int32_t> phases;
  std::string text;
  infer_generate_result res{};
  infer_status status = INFER_OK;
  bool done = false;
};

// Collects the requests' outcomes; waits for all of them.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Outcome> out;
  explicit Collector(size_t n) : out(n) {}
  Request make(size_t i, std::vector<int32_t> prompt, int32_t max_tokens, int32_t budget = -1) {
    Request r;
    r.prompt = std::move(prompt);
    r.sampling = infer_sampler_default_params();  // greedy
    r.gen.max_tokens = max_tokens;
    r.gen.thinking_budget = budget;
    r.on_token = [this, i](const infer_token_info& t) {
      std::lock_guard<std::mutex> lk(mu);
      if (t.id >= 0) out[i].ids.push_back(t.id), out[i].phases.push_back(t.phase);
      out[i].text.append(t.text, t.text_len);
      return true;
    };
    r.on_done = [this, i](const infer_generate_result& res, infer_status st, const std::string&) {
      std::lock_guard<std::mutex> lk(mu);
      out[i].res = res;
      out[i].status = st;
      out[i].done = true;
      cv.notify_all();
    };
    return r;
  }
  bool wait(std::chrono::seconds limit = std::chrono::seconds(60)) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, limit, [&] {
      return std::all_of(out.begin(), out.end(), [](const Outcome& o) { return o.done; });
    });
  }
};

// What generate() gives for the prompt alone (a fresh Session).
Outcome alone(const Transformer& m, const std::vector<int32_t>& prompt, int32_t max_tokens, int32_t budget = -1) {
  Session s(m, 256, 2, 64);
  Sampler sampler(infer_sampler_default_params());
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.thinking_budget = budget;
  Outcome r;
  r.res = generate(s, prompt.data(), int64_t(prompt.size()), sampler, o, [&](const infer_token_info& t) {
    if (t.id >= 0) r.ids.push_back(t.id), r.phases.push_back(t.phase);
    r.text.append(t.text, t.text_len);
    return true;
  });
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = Transformer::load(demo(), LoadOptions{}, true).release(); }
  static void TearDownTestSuite() { delete model_; }
  static Transformer* model_;
  std::vector<int32_t> enc(const std::string& s) { return model_->tokenizer->encode(s, false); }
};
Transformer* EngineTest::model_ = nullptr;

TEST_F(EngineTest, ConcurrentGreedyRequestsEqualGenerateAlone) {
  EngineOptions o;
  o.n_parallel = 4;
  o.n_ctx = 256;
  o.n_batch = 16;  // prompts are prefilled in chunks alongside the other requests' decoding
  o.block_size = 4;
  Engine e(*model_, std::make_unique<CpuBackend>(2), o);
  const std::vector<std::string> prompts = {"Hello, world", "The quick brown fox jumps over the lazy dog and keeps running",
                                            "1 2 3", "Why is the sky blue?", "x", "A longer prompt: " + std::string(60, 'z')};
  Collector c(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) e.submit(c.make(i, enc(prompts[i]), 12 + int32_t(i)));
  ASSERT_TRUE(c.wait());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Outcome ref = alone(*model_, enc(prompts[i]), 12 + int32_t(i));
    EXPECT_EQ(c.out[i].status, INFER_OK);
    EXPECT_EQ(c.out[i].ids, ref.ids) << "prompt " << i;
    EXPECT_EQ(c.out[i].text, ref.text) << "prompt " << i;
    EXPECT_EQ(c.out[i].res.finish_reason, ref.res.finish_reason);
    EXPECT_EQ(c.out[i].res.gen_tokens, ref.res.gen_tokens);
  }
  const auto st = e.stats();
  EXPECT_GE(st.max_step_seqs, 2) << "requests were never batched together";
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.requests_done, int64_t(prompts.size()));
}

TEST_F(EngineTest, SharedPrefixReusesCachedBlocksAndGivesTheSameTokens) {
  EngineOptions o;
  o.n_parallel = 2;
  o.n_ctx = 256;
  o.block_size = 4;
  Engine e(*model_, std::make_unique<CpuBackend>(2), o);
  const std::string sys = "You are a helpful assistant. Answer briefly and precisely, with care.";
  const auto p1 = enc(sys + " Question one?"), p2 = enc(sys + " What about two?");
  {
    Collector c(1);
    e.submit(c.make(0, p1, 8));
    ASSERT_TRUE(c.wait());
    EXPECT_EQ(c.out[0].res.prompt_cached_tokens, 0);
  }
  Collector c(1);
  e.submit(c.make(0, p2, 8));
  ASSERT_TRUE(c.wait());
  size_t common = 0;
  while (common < p1.size() && common < p2.size() && p1[common] == p2[common]) ++common;
  EXPECT_EQ(c.out[0].res.prompt_cached_tokens, int32_t(common / 4 * 4));
  EXPECT_GT(c.out[0].res.prompt_cached_tokens, 0);
  EXPECT_EQ(c.out[0].res.prompt_tokens + c.out[0].res.prompt_cached_tokens, int32_t(p2.size()));
  EXPECT_EQ(c.out[0].ids, alone(*model_, p2, 8).ids);
  // A prompt equal to a cached one still evaluates its last token (for the logits) and gives the same output.
  Collector c3(1);
  e.submit(c3.make(0, p1, 8));
  ASSERT_TRUE(c3.wait());
  EXPECT_GT(c3.out[0].res.prompt_cached_tokens, 0);
  EXPECT_GE(c3.out[0].res.prompt_tokens, 1);
  EXPECT_EQ(c3.out[0].ids, alone(*model_, p1, 8).ids);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_GT(e.stats().kv_blocks_cached, 0);
}

TEST_F(EngineTest, ThinkingBudgetAndPhasesEqualGenerate) {
  EngineOptions o;
  o.n_ctx = 256;
  Engine e(*model_, std::make_unique<CpuBackend>(2), o);
  // R1 style: the prompt ends inside <think>, so the output starts as reasoning until the budget cut.
  const auto p = enc("<|im_start|>user\nThink about it<|im_end|>\n<|im_start|>assistant\n<think>\n");
  Collector c(2);
  e.submit(c.make(0, p, 40, 5));
  e.submit(c.make(1, p, 20, -1));
  ASSERT_TRUE(c.wait());
  const Outcome ref = alone(*model_, p, 40, 5);
  EXPECT_TRUE(c.out[0].res.thinking_cut);
  EXPECT_EQ(c.out[0].ids, ref.ids);
  EXPECT_EQ(c.out[0].phases, ref.phases);
  EXPECT_EQ(c.out[0].res.reasoning_tokens, ref.res.reasoning_tokens);
  EXPECT_EQ(c.out[1].ids, alone(*model_, p, 20).ids);
}

TEST_F(EngineTest, CancelEndsARunningRequestAndFreesItsBlocks) {
  EngineOptions o;
  o.n_ctx = 512;
  o.block_size = 4;
  Engine e(*model_, std::make_unique<CpuBackend>(2), o);
  Collector c(1);
  Request r = c.make(0, enc("Tell me a long story"), 0);  // no max_tokens: runs until the context is full
  r.gen.ignore_eos = true;
  const uint64_t id = e.submit(std::move(r));
  // Wait for a few tokens, then cancel.
  for (int i = 0; i < 2000; ++i) {
    {
      std::lock_guard<std::mutex> lk(c.mu);
      if (c.out[0].ids.size() >= 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  e.cancel(id);
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.out[0].res.finish_reason, INFER_FINISH_CANCELLED);
  EXPECT_LT(c.out[0].res.gen_tokens, 500);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_EQ(e.stats().running, 0);
}

TEST_F(EngineTest, CallbackReturningFalseCancels) {
  Engine e(*model_, std::make_unique<CpuBackend>(1), EngineOptions{});
  Collector c(1);
  Request r = c.make(0, enc("Hi"), 50);
  int n = 0;
  r.on_token = [&n](const infer_token_info&) { return ++n < 3; };
  e.submit(std::move(r));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.out[0].res.finish_reason, INFER_FINISH_CANCELLED);
  EXPECT_EQ(c.out[0].res.gen_tokens, 3);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, RejectsBadRequestsBeforeQueueing) {
  EngineOptions o;
  o.n_ctx = 512;
  o.max_queue = 1;
  o.n_parallel = 1;
  Engine e(*model_, std::make_unique<CpuBackend>(1), o);
  auto code = [&](Request r) {
    try {
      e.submit(std::move(r));
    } catch (const Error& err) {
      return err.code();
    }
    return INFER_OK;
  };
  Collector c(3);
  EXPECT_EQ(code(c.make(0, {}, 4)), INFER_ERR_INVALID_ARG);
  EXPECT_EQ(code(c.make(0, std::vector<int32_t>(513, 5), 4)), INFER_ERR_CONTEXT_FULL);
  EXPECT_EQ(code(c.make(0, {1, 2, int32_t(model_->vocab_size())}, 4)), INFER_ERR_INVALID_ARG);
  EXPECT_EQ(code(c.make(0, {1, 2, -1}, 4)), INFER_ERR_INVALID_ARG);
  // One running (ignores eos, no max_tokens: runs until cancelled), one queued, the third is refused.
  Request r0 = c.make(0, {1, 2, 3}, 0);
  r0.gen.ignore_eos = true;
  uint64_t id0 = 0;
  try {
    id0 = e.submit(std::move(r0));
  } catch (const Error& err) {
    FAIL() << err.what();
  }
  for (int i = 0; i < 1000 && e.stats().running == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(code(c.make(1, {4, 5}, 2)), INFER_OK);
  EXPECT_EQ(code(c.make(2, {6, 7}, 2)), INFER_ERR_BUSY);
  c.out[2].done = true;  // never accepted
  e.cancel(id0);
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.out[0].res.finish_reason, INFER_FINISH_CANCELLED);
  EXPECT_EQ(c.out[1].res.gen_tokens, 2);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, ContextFullEndsWithLength) {
  EngineOptions o;
  o.n_ctx = 16;
  Engine e(*model_, std::make_unique<CpuBackend>(1), o);
  Collector c(1);
  Request r = c.make(0, {1, 2, 3}, 0);
  r.gen.ignore_eos = true;
  e.submit(std::move(r));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.out[0].res.finish_reason, INFER_FINISH_LENGTH);
  // Tokens are sampled after 3, 4, …, 16 cached positions: 14 of them (the last one is not evaluated).
  EXPECT_EQ(c.out[0].res.gen_tokens, 14);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, ShutdownCancelsQueuedAndRunningRequests) {
  EngineOptions o;
  o.n_parallel = 1;
  o.n_ctx = 4096;
  auto e = std::make_unique<Engine>(*model_, std::make_unique<CpuBackend>(1), o);
  Collector c(2);
  Request r0 = c.make(0, {1, 2, 3}, 0), r1 = c.make(1, {4, 5}, 0);
  r0.gen.ignore_eos = r1.gen.ignore_eos = true;
  e->submit(std::move(r0));
  e->submit(std::move(r1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  e->shutdown();
  ASSERT_TRUE(c.wait(std::chrono::seconds(5)));
  EXPECT_EQ(c.out[0].res.finish_reason, INFER_FINISH_CANCELLED);
  EXPECT_EQ(c.out[1].res.finish_reason, INFER_FINISH_CANCELLED);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, SmallPoolAdmitsWhatFitsAndEndsStarvedSequencesWithLength) {
  EngineOptions o;
  o.n_parallel = 3;
  o.n_ctx = 64;
  o.block_size = 4;
  o.n_blocks = 6;  // 24 tokens for everyone
  Engine e(*model_, std::make_unique<CpuBackend>(1), o);
  Collector c(3);
  for (size_t i = 0; i < 3; ++i) {
    Request r = c.make(i, {int32_t(10 + i), 20, 30, 40, 50}, 30);
    r.gen.ignore_eos = true;
    e.submit(std::move(r));
  }
  ASSERT_TRUE(c.wait());
  int64_t total = 0;
  for (const auto& out : c.out) {
    EXPECT_EQ(out.status, INFER_OK);
    EXPECT_EQ(out.res.finish_reason, INFER_FINISH_LENGTH);
    total += out.res.gen_tokens;
  }
  EXPECT_GT(total, 0);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

}  // namespace
