// test_generate.cpp — the generation loop: thinking budget (exact cut, exact inserted text, phases), stop strings
// held back across tokens, and the sampler's filters and penalties.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "common.h"
#include "chat_template.h"
#include "generate.h"
#include "model.h"
#include "sampler.h"
#include "session.h"

using namespace infer;

namespace {

std::string demo() { return std::string(INFER_MODELS_DIR) + "/qwen3-tiny-random"; }

struct Token {
  int32_t id;
  std::string text;
  int32_t phase;
  bool forced;
};

struct GenRun {
  infer_generate_result res;
  std::vector<Token> toks;
  std::string text_of(int32_t phase, bool forced_only = false) const {
    std::string s;
    for (const auto& t : toks)
      if (t.phase == phase && (!forced_only || t.forced)) s += t.text;
    return s;
  }
};

GenRun run(const Transformer& m, const std::string& prompt, int32_t budget, int32_t max_tokens) {
  Session s(m, 256, 2, 64);
  Sampler sampler(infer_sampler_default_params());  // greedy
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.thinking_budget = budget;
  o.ignore_eos = true;
  const auto ids = m.tokenizer->encode(prompt, false);
  GenRun r;
  r.res = generate(s, ids.data(), int64_t(ids.size()), sampler, o, [&](const infer_token_info& t) {
    r.toks.push_back({t.id, std::string(t.text, t.text_len), t.phase, t.forced});
    return true;
  });
  return r;
}

const char* kThinkingPrompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n";

class ThinkingBudget : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() { model_ = Transformer::load(demo(), LoadOptions{}, true).release(); }
  static void TearDownTestSuite() { delete model_; }
  static Transformer* model_;
};
Transformer* ThinkingBudget::model_ = nullptr;

TEST_P(ThinkingBudget, CutsAtExactlyNTokensWithTheExactText) {
  const int n = GetParam();
  GenRun r = run(*model_, kThinkingPrompt, n, n + 60);
  ASSERT_TRUE(r.res.thinking_cut);
  // Exactly n sampled reasoning tokens, then the forced text, then only answer tokens.
  size_t i = 0;
  int sampled_reasoning = 0;
  for (; i < r.toks.size() && !r.toks[i].forced; ++i) {
    EXPECT_EQ(r.toks[i].phase, INFER_PHASE_REASONING) << "token " << i;
    ++sampled_reasoning;
  }
  EXPECT_EQ(sampled_reasoning, n);
  std::string forced;
  size_t j = i;
  for (; j < r.toks.size() && r.toks[j].forced; ++j) forced += r.toks[j].text;
  EXPECT_EQ(forced, kThinkingCutText);
  EXPECT_EQ(r.toks[j - 2].phase, INFER_PHASE_THINK_TAG);  // "</think>" closes the reasoning
  EXPECT_EQ(r.toks[j - 1].phase, INFER_PHASE_ANSWER);     // "\n\n" after it is answer text
  ASSERT_LT(j, r.toks.size());
  for (size_t k = j; k < r.toks.size(); ++k) {
    EXPECT_FALSE(r.toks[k].forced);
    EXPECT_EQ(r.toks[k].phase, INFER_PHASE_ANSWER) << "token " << k << " after the cut";
  }
  EXPECT_EQ(r.res.gen_tokens, int32_t(r.toks.size()));
  // The reasoning text is the sampled reasoning plus the inserted sentence before </think>.
  EXPECT_THAT(r.text_of(INFER_PHASE_REASONING), ::testing::EndsWith("based on the thinking directly now.\n"));
}

INSTANTIATE_TEST_SUITE_P(Budgets, ThinkingBudget, ::testing::Values(0, 1, 7, 32));

TEST_F(ThinkingBudget, NoBudgetNoCut) {
  GenRun r = run(*model_, kThinkingPrompt, -1, 24);
  EXPECT_FALSE(r.res.thinking_cut);
  for (const auto& t : r.toks) EXPECT_FALSE(t.forced);
}

TEST_F(ThinkingBudget, PromptWithoutThinkIsAnswer) {
  GenRun r = run(*model_, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", 4, 12);
  EXPECT_FALSE(r.res.thinking_cut);
  for (const auto& t : r.toks) EXPECT_EQ(t.phase, INFER_PHASE_ANSWER);
}

TEST_F(ThinkingBudget, MaxTokensStillCounts) {
  GenRun r = run(*model_, kThinkingPrompt, 5, 8);  // 5 reasoning + the first 3 tokens of the forced text
  EXPECT_EQ(r.res.gen_tokens, 8);
  EXPECT_EQ(r.toks.size(), 8u);
  EXPECT_EQ(r.res.finish_reason, INFER_FINISH_LENGTH);
}

TEST(ThinkingBudgetErrors, ModelWithoutThinkTokens) {
  auto m = Transformer::load(std::string(INFER_TEST_DATA) + "/models/qwen3_tied_gqa2", LoadOptions{}, false);
  Session s(*m, 64, 1, 64);
  Sampler sampler(infer_sampler_default_params());
  GenerateOptions o;
  o.thinking_budget = 4;
  const int32_t ids[] = {5, 6};
  try {
    generate(s, ids, 2, sampler, o, [](const infer_token_info&) { return true; });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("<think>"));
  }
}

TEST_F(ThinkingBudget, MultiTurnHistoryAfterACutFollowsTheTemplate) {
  // Generate a cut answer, store it as the REPL does (content = answer, reasoning_content = reasoning), then render the
  // next turn: Qwen3's template drops earlier turns' reasoning, the inserted sentence included.
  GenRun r = run(*model_, kThinkingPrompt, 3, 12);
  ASSERT_TRUE(r.res.thinking_cut);
  const std::string reasoning = r.text_of(INFER_PHASE_REASONING), answer = r.text_of(INFER_PHASE_ANSWER);
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", "What is 2+2?"}});
  msgs.push_back({{"role", "assistant"}, {"content", answer}, {"reasoning_content", reasoning}});
  msgs.push_back({{"role", "user"}, {"content", "And 3+3?"}});
  const std::string prompt =
      ChatTemplate::from_dir(demo()).render(msgs, nullptr, true, nlohmann::ordered_json::object());
  EXPECT_EQ(prompt.find("Considering the limited time"), std::string::npos);
  EXPECT_EQ(prompt.find("<think>"), std::string::npos);
  // The answer's leading newlines are stripped by the template (content.lstrip('\n')).
  std::string stripped = answer;
  stripped.erase(0, stripped.find_first_not_of('\n'));
  EXPECT_NE(prompt.find("<|im_start|>assistant\n" + stripped + "<|im_end|>"), std::string::npos) << prompt;
}

// ---- stop strings

TEST(StopMatcher, HoldsBackPartialMatchesAcrossTokens) {
  StopMatcher m({"STOP"});
  bool stopped = false;
  EXPECT_EQ(m.push("abc S", &stopped), "abc ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.push("T", &stopped), "");
  EXPECT_EQ(m.push("x", &stopped), "STx");  // not a match after all: released
  EXPECT_EQ(m.push("yyST", &stopped), "yy");
  EXPECT_EQ(m.push("OPzz", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcher, EarliestOfSeveral) {
  StopMatcher m({"bc", "abcd"});
  bool stopped = false;
  EXPECT_EQ(m.push("xabcd", &stopped), "x");  // "abcd" starts before "bc"
  EXPECT_TRUE(stopped);
}

TEST(StopMatcher, FlushReleasesHeldText) {
  StopMatcher m({"<end>"});
  bool stopped = false;
  EXPECT_EQ(m.push("hi <en", &stopped), "hi ");
  EXPECT_EQ(m.flush(), "<en");
}

// ---- sampler

std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}

std::map<int, int> histogram(Sampler& s, const std::vector<float>& l, int n) {
  std::map<int, int> h;
  for (int i = 0; i < n; ++i) h[s.sample(l.data(), int32_t(l.size()))]++;
  return h;
}

TEST(Sampler, GreedyIsArgmax) {
  Sampler s(infer_sampler_default_params());
  const auto l = logits_for({0.1, 0.5, 0.4});
  EXPECT_EQ(s.sample(l.data(), 3), 1);
}

TEST(Sampler, TopKKeepsOnlyK) {
  infer_sampler_params p = infer_sampler_default_params();
  p.temperature = 1.0f;
  p.top_k = 2;
  p.seed = 3;
  Sampler s(p);
  auto h = histogram(s, logits_for({0.4, 0.3, 0.2, 0.1}), 2000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_NEAR(h[0] / 2000.0, 0.4 / 0.7, 0.05);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  infer_sampler_params p = infer_sampler_default_params();
  p.temperature = 1.0f;
  p.top_p = 0.65f;  // 0.4 + 0.3 >= 0.65
  p.seed = 4;
  Sampler s(p);
  auto h = histogram(s, logits_for({0.4, 0.3, 0.2, 0.1}), 2000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_GT(h[1], 0);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  infer_sampler_params p = infer_sampler_default_params();
  p.temperature = 1.0f;
  p.min_p = 0.3f;  // threshold 0.3 * 0.5 = 0.15
  p.seed = 5;
  Sampler s(p);
  auto h = histogram(s, logits_for({0.5, 0.3, 0.1, 0.1}), 2000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
}

TEST(Sampler, SeedMakesItReproducible) {
  infer_sampler_params p = infer_sampler_default_params();
  p.temperature = 0.8f;
  p.seed = 42;
  const auto l = logits_for({0.25, 0.25, 0.25, 0.25});
  Sampler a(p), b(p);
  std::vector<int> x, y;
  for (int i = 0; i < 50; ++i) {
    x.push_back(a.sample(l.data(), 4));
    y.push_back(b.sample(l.data(), 4));
  }
  EXPECT_EQ(x, y);
}

TEST(Sampler, PenaltiesApplyToSeenTokens) {
  infer_sampler_params p = infer_sampler_default_params();
  p.presence_penalty = 5.0f;  // greedy, but token 0 was generated already
  Sampler s(p);
  const auto l = logits_for({0.5, 0.3, 0.2});
  s.accept(0, false);
  EXPECT_EQ(s.sample(l.data(), 3), 1);
  infer_sampler_params r = infer_sampler_default_params();
  r.repetition_penalty = 100.0f;  // prompt tokens count for the repetition penalty
  Sampler t(r);
  t.accept(0, true);
  EXPECT_EQ(t.sample(l.data(), 3), 1);
  s.reset();
  EXPECT_EQ(s.sample(l.data(), 3), 0);  // reset forgets
}

}  // namespace
