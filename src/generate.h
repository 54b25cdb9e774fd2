// generate.h — the generation loop behind infer_generate: prompt prefill with prefix reuse, sampling,
// streaming detokenization, stop strings held back until they can no longer match, eos, length, logprobs.
#pragma once
#include <functional>
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

infer_generate_result generate(Session& ctx, const int32_t* prompt, int64_t n_prompt, Sampler& sampler,
                               const GenerateOptions& opts,
                               const std::function<bool(const infer_token_info&)>& on_token);

}  // namespace infer
