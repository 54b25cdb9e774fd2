// generate.h — the generation loop behind infer_generate: prompt prefill with prefix reuse, sampling,
// streaming detokenization, stop strings held back until they can no longer match, eos, length, logprobs.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "session.h"
#include "infer/infer.h"
#include "sampler.h"

namespace infer {

struct GenerateOptions {
  int32_t max_tokens = 0;
  std::vector<std::string> stop;
  int32_t n_logprobs = 0;
  bool logprob = true;  // fill infer_token_info.logprob (with n_logprobs = 0 it may be skipped: a pass over the vocab)
  bool ignore_eos = false;
  std::vector<int32_t> eos_ids;
  int32_t thinking_budget = -1;  // < 0: unlimited
  int32_t n_draft = 1;           // tokens drafted per round when the context runs an MTP head (speculative.h)
  // Sample on the device when the backend can (Backend::can_sample) and nothing needs the host logits (no
  // penalties, no top-N logprobs, no MTP): the logits then never leave the device. Same tokens either way.
  bool device_sampling = true;
};

// The text inserted when the thinking budget runs out (model-spec.md §7.3, the Qwen docs' form, byte for byte).
extern const char* const kThinkingCutText;

// Holds back output text while it could still be the start of a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends text; returns the text that is now safe to emit. Sets *stopped when a stop string occurred
  // (the returned text then ends right before it).
  std::string push(const std::string& text, bool* stopped);
  // The held-back text (at the end of generation).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

using TokenFn = std::function<bool(const infer_token_info&)>;

// The per-token half of generation, apart from how the forward passes are run (one Session in generate(), a batch
// of sequences in the server's engine): sampling, the phase of each token (<think> tracking), the thinking-budget
// cut, eos, stop strings, streaming detokenization, logprobs, the counts of the result. Made once the prompt is
// known (it feeds the prompt to the sampler's penalties); then, each time the logits of the next position are
// ready, next() hands out the tokens to evaluate after them, until it reports the end.
class TokenGenerator {
 public:
  TokenGenerator(const Transformer& model, Sampler& sampler, const GenerateOptions& opts, const int32_t* prompt,
                 int64_t n_prompt, TokenFn on_token);
  // Tokens to append to the cache next: one sampled token, or the thinking-budget cut text (forced, several).
  struct Feed {
    const int32_t* ids = nullptr;
    int64_t n = 0;
    bool forced = false;
  };
  // logits: of the position after the n_past cached tokens (a context of n_ctx). Emits the next token(s) to
  // on_token and returns true with *feed set, or false when generation has ended (result().finish_reason says why).
  // Device sampling (Backend::can_sample said yes for the sampler's parameters): `logits` is not read; the backend
  // samples from its own copy and returns the token's logprob with it.
  struct DeviceSampling {
    Backend* backend = nullptr;
    const float* logits = nullptr;  // backend memory, (vocab,)
  };
  bool next(const float* logits, int64_t n_past, int64_t n_ctx, Feed* feed, const DeviceSampling* dev = nullptr);
  // At the end: releases the text still held back (partial UTF-8, a partial stop string) unless a stop string matched.
  void finish();
  infer_generate_result& result() { return res_; }

 private:
  bool budget_left() const { return opts_.max_tokens <= 0 || res_.gen_tokens < opts_.max_tokens; }
  bool emit(int32_t id, const float* logits, bool forced, float lp = 0.0f);

  const GenerateOptions& opts_;
  Sampler& sampler_;
  TokenFn on_token_;
  int32_t V_;
  int32_t think_open_ = -1, think_close_ = -1;
  std::vector<int32_t> cut_ids_;
  bool in_think_ = false, stop_hit_ = false, done_ = false;
  int32_t think_count_ = 0;
  int32_t sampled_ = 0;
  std::unique_ptr<StreamDecoder> dec_;
  StopMatcher stop_;
  std::vector<int32_t> top_ids_;
  std::vector<float> top_lp_;
  infer_generate_result res_{};
};

infer_generate_result generate(Session& ctx, const int32_t* prompt, int64_t n_prompt, Sampler& sampler,
                               const GenerateOptions& opts,
                               const std::function<bool(const infer_token_info&)>& on_token);

}  // namespace infer
