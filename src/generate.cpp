// generate.cpp — see generate.h.
#include "generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common.h"
#include "speculative.h"

namespace infer {

std::string StopMatcher::push(const std::string& text, bool* stopped) {
  *stopped = false;
  held_ += text;
  if (stops_.empty()) {
    std::string out;
    out.swap(held_);
    return out;
  }
  // Earliest complete stop string.
  size_t first = std::string::npos;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    const size_t p = held_.find(s);
    if (p != std::string::npos) first = std::min(first, p);
  }
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// log-softmax value of logits[id], and the top n (id, logprob) pairs.
float log_softmax_at(const float* l, int32_t V, int32_t id, int32_t n_top, std::vector<int32_t>& top_ids,
                     std::vector<float>& top_lp) {
  float mx = l[0];
  for (int32_t i = 1; i < V; ++i) mx = std::max(mx, l[i]);
  double sum = 0;
  for (int32_t i = 0; i < V; ++i) sum += std::exp(double(l[i] - mx));
  const float lse = mx + float(std::log(sum));
  top_ids.clear();
  top_lp.clear();
  if (n_top > 0) {
    std::vector<int32_t> idx(V);
    for (int32_t i = 0; i < V; ++i) idx[i] = i;
    const int32_t k = std::min(n_top, V);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    for (int32_t i = 0; i < k; ++i) {
      top_ids.push_back(idx[i]);
      top_lp.push_back(l[idx[i]] - lse);
    }
  }
  return l[id] - lse;
}

}  // namespace

const char* const kThinkingCutText =
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n"
    "</think>\n\n";

infer_generate_result generate(Session& ctx, const int32_t* prompt, int64_t n_prompt, Sampler& sampler,
                               const GenerateOptions& opts,
                               const std::function<bool(const infer_token_info&)>& on_token) {
  infer_generate_result res{};
  if (n_prompt <= 0) fail(INFER_ERR_INVALID_ARG, "the prompt is empty");
  if (n_prompt > ctx.n_ctx())
    fail(INFER_ERR_CONTEXT_FULL, "the prompt has " + std::to_string(n_prompt) + " tokens but the context holds " +
                                     std::to_string(ctx.n_ctx()) + "; use a larger context (-c) or a shorter prompt");
  const int32_t V = int32_t(ctx.model().vocab_size());
  for (int64_t i = 0; i < n_prompt; ++i)
    if (prompt[i] < 0 || prompt[i] >= V)
      fail(INFER_ERR_INVALID_ARG, "prompt token id " + std::to_string(prompt[i]) + " is outside the vocabulary [0, " +
                                      std::to_string(V) + ")");

  // Reasoning markers, when the tokenizer has them. A prompt that ends inside <think> (R1's forced "<think>\n",
  // or a user prefill) starts generation in the reasoning phase.
  const Tokenizer* tok = ctx.model().tokenizer.get();
  const int32_t think_open = tok ? tok->token_id("<think>") : -1;
  const int32_t think_close = tok ? tok->token_id("</think>") : -1;
  std::vector<int32_t> cut_ids;
  if (opts.thinking_budget >= 0) {
    if (think_open < 0 || think_close < 0)
      fail(INFER_ERR_UNSUPPORTED, "a thinking budget needs a tokenizer with <think> and </think> tokens; this model has none");
    cut_ids = tok->encode(kThinkingCutText, false);
  }
  bool in_think = false;
  for (int64_t i = 0; i < n_prompt; ++i) {
    if (prompt[i] == think_open && think_open >= 0) in_think = true;
    if (prompt[i] == think_close && think_close >= 0) in_think = false;
  }
  int32_t think_count = 0;

  // Reuse the cached prefix; always re-evaluate at least the last prompt token to get its logits.
  const auto& cached = ctx.tokens();
  int64_t common = 0;
  while (common < int64_t(cached.size()) && common < n_prompt && cached[common] == prompt[common]) ++common;
  if (common == n_prompt) --common;
  ctx.truncate(common);

  // Sampling on the device: the logits stay in backend memory (the session's host copy is off until we return).
  const infer_sampler_params& sp = sampler.params();
  const bool on_device = opts.device_sampling && opts.n_logprobs == 0 && !sampler.has_penalties() && !ctx.mtp() &&
                         ctx.backend().can_sample(V, sp.temperature, sp.top_k);
  struct HostLogits {
    Session& s;
    bool saved;
    ~HostLogits() { s.set_host_logits(saved); }
  } restore{ctx, ctx.host_logits()};
  if (on_device) ctx.set_host_logits(false);

  const auto t0 = std::chrono::steady_clock::now();
  ctx.eval(prompt + common, n_prompt - common, false);
  res.prompt_ms = ms_since(t0);
  res.prompt_tokens = int32_t(n_prompt - common);

  sampler.reset();
  for (int64_t i = 0; i < n_prompt; ++i) sampler.accept(prompt[i], true);

  std::unique_ptr<StreamDecoder> dec;
  if (tok) dec = std::make_unique<StreamDecoder>(*tok);
  StopMatcher stop(opts.stop);
  std::vector<int32_t> top_ids;
  std::vector<float> top_lp;

  // Self-speculative decoding when the context runs a draft head (DeepSeek MTP); plain decoding otherwise. Either
  // way `cur` holds the logits of the next position.
  Speculator spec(ctx, opts.n_draft);
  const float* cur = ctx.logits();

  const auto t1 = std::chrono::steady_clock::now();
  res.finish_reason = INFER_FINISH_LENGTH;
  bool stop_hit = false, done = false;
  auto budget_left = [&] { return opts.max_tokens <= 0 || res.gen_tokens < opts.max_tokens; };

  // Hands one token to the caller. Returns false when generation must end (cancel, eos, stop string).
  // logits: host logits of this position (for logprobs), or null; lp: the logprob when the device computed it.
  auto emit = [&](int32_t id, const float* logits, bool forced, float lp = 0.0f) {
    res.gen_tokens++;
    infer_token_info info{};
    info.id = id;
    info.forced = forced;
    if (id == think_open && think_open >= 0) {
      info.phase = INFER_PHASE_THINK_TAG;
      in_think = true;
      think_count = 0;
    } else if (id == think_close && think_close >= 0) {
      info.phase = INFER_PHASE_THINK_TAG;
      in_think = false;
      res.reasoning_tokens++;
    } else if (in_think) {
      info.phase = INFER_PHASE_REASONING;
      think_count++;
      res.reasoning_tokens++;
    } else {
      info.phase = INFER_PHASE_ANSWER;
    }
    const bool is_eos = !forced && !opts.ignore_eos &&
                        std::find(opts.eos_ids.begin(), opts.eos_ids.end(), id) != opts.eos_ids.end();
    if (logits) info.logprob = log_softmax_at(logits, V, id, opts.n_logprobs, top_ids, top_lp);
    else top_ids.clear(), top_lp.clear(), info.logprob = lp;
    info.n_top = int32_t(top_ids.size());
    info.top_ids = top_ids.data();
    info.top_logprobs = top_lp.data();
    std::string text;
    bool stopped = false;
    if (dec && !is_eos) text = stop.push(dec->push(id), &stopped);
    info.text = text.data();
    info.text_len = text.size();
    if (!on_token(info)) {
      res.finish_reason = INFER_FINISH_CANCELLED;
      return false;
    }
    if (is_eos || stopped) {
      stop_hit = stopped;
      res.finish_reason = INFER_FINISH_STOP;
      return false;
    }
    return true;
  };

  while (!done && budget_left()) {
    if (in_think && opts.thinking_budget >= 0 && think_count >= opts.thinking_budget) {
      // The budget is spent: insert the stop-thinking text (it ends with </think>), then the model answers.
      spec.flush();
      if (ctx.n_past() + int64_t(cut_ids.size()) > ctx.n_ctx()) break;  // no room: "length"
      res.thinking_cut = true;
      for (int32_t id : cut_ids)
        if (!budget_left() || !emit(id, nullptr, true)) {
          done = true;
          break;
        }
      if (done) break;
      ctx.eval(cut_ids.data(), int64_t(cut_ids.size()), false);
      cur = ctx.logits();
      continue;
    }
    const float* logits = on_device ? nullptr : cur;
    float lp = 0.0f;
    int32_t id = -1;
    if (on_device) {
      const double u = sp.temperature > 0 ? sampler.draw_uniform() : 0.0;
      id = ctx.backend().sample(ctx.device_logits(), V, sp.temperature, sp.top_k, sp.top_p, sp.min_p, u, &lp);
      if (id < 0 || id >= V)
        fail(INFER_ERR_INTERNAL, ctx.backend().name() + " backend: device sampling returned token " +
                                     std::to_string(id));
    } else {
      id = sampler.sample(logits, V);
    }
    sampler.accept(id, false);
    if (!emit(id, logits, false, lp)) break;
    if (!budget_left()) break;
    if (spec.n_past() >= ctx.n_ctx()) break;  // the context is full: finish with "length"
    cur = spec.advance(id);
  }
  spec.flush();  // the cache keeps what plain decoding would have (no unchecked drafts)
  res.gen_ms = ms_since(t1);
  res.draft_tokens = int32_t(spec.drafted());
  res.draft_accepted = int32_t(spec.accepted());
  // Release what was held back (partial UTF-8 or a partial stop string) unless a stop string matched.
  if (!stop_hit) {
    std::string rest = dec ? dec->flush() : std::string();
    bool stopped = false;
    rest = stop.push(rest, &stopped);
    if (!stopped) rest += stop.flush();
    if (!rest.empty()) {
      infer_token_info info{};
      info.id = -1;  // no token: trailing text only
      info.phase = in_think ? INFER_PHASE_REASONING : INFER_PHASE_ANSWER;
      info.text = rest.data();
      info.text_len = rest.size();
      on_token(info);
    }
  }
  return res;
}

}  // namespace infer
