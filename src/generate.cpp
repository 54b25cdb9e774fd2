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

TokenGenerator::TokenGenerator(const Transformer& model, Sampler& sampler, const GenerateOptions& opts,
                               const int32_t* prompt, int64_t n_prompt, TokenFn on_token)
    : opts_(opts), sampler_(sampler), on_token_(std::move(on_token)), V_(int32_t(model.vocab_size())), stop_(opts.stop) {
  // Reasoning markers, when the tokenizer has them. A prompt that ends inside <think> (R1's forced "<think>\n",
  // or a user prefill) starts generation in the reasoning phase.
  const Tokenizer* tok = model.tokenizer.get();
  think_open_ = tok ? tok->token_id("<think>") : -1;
  think_close_ = tok ? tok->token_id("</think>") : -1;
  if (opts.thinking_budget >= 0) {
    if (think_open_ < 0 || think_close_ < 0)
      fail(INFER_ERR_UNSUPPORTED, "a thinking budget needs a tokenizer with <think> and </think> tokens; this model has none");
    cut_ids_ = tok->encode(kThinkingCutText, false);
  }
  for (int64_t i = 0; i < n_prompt; ++i) {
    if (prompt[i] == think_open_ && think_open_ >= 0) in_think_ = true;
    if (prompt[i] == think_close_ && think_close_ >= 0) in_think_ = false;
  }
  sampler_.reset();
  for (int64_t i = 0; i < n_prompt; ++i) sampler_.accept(prompt[i], true);
  if (tok) dec_ = std::make_unique<StreamDecoder>(*tok);
  res_.finish_reason = INFER_FINISH_LENGTH;
}

// Hands one token to the caller. Returns false when generation must end (cancel, eos, stop string).
bool TokenGenerator::emit(int32_t id, const float* logits, bool forced, float lp) {
  res_.gen_tokens++;
  infer_token_info info{};
  info.id = id;
  info.forced = forced;
  if (id == think_open_ && think_open_ >= 0) {
    info.phase = INFER_PHASE_THINK_TAG;
    in_think_ = true;
    think_count_ = 0;
  } else if (id == think_close_ && think_close_ >= 0) {
    info.phase = INFER_PHASE_THINK_TAG;
    in_think_ = false;
    res_.reasoning_tokens++;
  } else if (in_think_) {
    info.phase = INFER_PHASE_REASONING;
    think_count_++;
    res_.reasoning_tokens++;
  } else {
    info.phase = INFER_PHASE_ANSWER;
  }
  const bool is_eos = !forced && !opts_.ignore_eos &&
                      std::find(opts_.eos_ids.begin(), opts_.eos_ids.end(), id) != opts_.eos_ids.end();
  if (logits && (opts_.logprob || opts_.n_logprobs > 0)) {
    info.logprob = log_softmax_at(logits, V_, id, opts_.n_logprobs, top_ids_, top_lp_);
  } else {
    top_ids_.clear();
    top_lp_.clear();
    info.logprob = lp;  // the device's, when it sampled the token (0 otherwise)
  }
  info.n_top = int32_t(top_ids_.size());
  info.top_ids = top_ids_.data();
  info.top_logprobs = top_lp_.data();
  std::string text;
  bool stopped = false;
  if (dec_ && !is_eos) text = stop_.push(dec_->push(id), &stopped);
  info.text = text.data();
  info.text_len = text.size();
  if (!on_token_(info)) {
    res_.finish_reason = INFER_FINISH_CANCELLED;
    return false;
  }
  if (is_eos || stopped) {
    stop_hit_ = stopped;
    res_.finish_reason = INFER_FINISH_STOP;
    return false;
  }
  return true;
}

bool TokenGenerator::next(const float* logits, int64_t n_past, int64_t n_ctx, Feed* feed,
                          const DeviceSampling* dev) {
  if (done_ || !budget_left()) return done_ = true, false;
  if (in_think_ && opts_.thinking_budget >= 0 && think_count_ >= opts_.thinking_budget) {
    // The budget is spent: insert the stop-thinking text (it ends with </think>), then the model answers.
    if (n_past + int64_t(cut_ids_.size()) > n_ctx) return done_ = true, false;  // no room: "length"
    res_.thinking_cut = true;
    for (int32_t id : cut_ids_)
      if (!budget_left() || !emit(id, nullptr, true)) return done_ = true, false;
    *feed = {cut_ids_.data(), int64_t(cut_ids_.size()), true};
    return true;
  }
  float lp = 0.0f;
  if (dev) {  // the logits stay on the device: the backend samples, with the host sampler's uniform draw
    const infer_sampler_params& sp = sampler_.params();
    const double u = sp.temperature > 0 ? sampler_.draw_uniform() : 0.0;
    sampled_ = dev->backend->sample(dev->logits, V_, sp.temperature, sp.top_k, sp.top_p, sp.min_p, u, &lp);
    if (sampled_ < 0 || sampled_ >= V_)
      fail(INFER_ERR_INTERNAL, dev->backend->name() + " backend: device sampling returned token " +
                                   std::to_string(sampled_));
    logits = nullptr;
  } else {
    sampled_ = sampler_.sample(logits, V_);
  }
  sampler_.accept(sampled_, false);
  if (!emit(sampled_, logits, false, lp) || !budget_left() || n_past >= n_ctx) return done_ = true, false;
  *feed = {&sampled_, 1, false};
  return true;
}

void TokenGenerator::finish() {
  done_ = true;
  if (stop_hit_) return;
  std::string rest = dec_ ? dec_->flush() : std::string();
  bool stopped = false;
  rest = stop_.push(rest, &stopped);
  if (!stopped) rest += stop_.flush();
  if (rest.empty()) return;
  infer_token_info info{};
  info.id = -1;  // no token: trailing text only
  info.phase = in_think_ ? INFER_PHASE_REASONING : INFER_PHASE_ANSWER;
  info.text = rest.data();
  info.text_len = rest.size();
  on_token_(info);
}

infer_generate_result generate(Session& ctx, const int32_t* prompt, int64_t n_prompt, Sampler& sampler,
                               const GenerateOptions& opts,
                               const std::function<bool(const infer_token_info&)>& on_token) {
  if (n_prompt <= 0) fail(INFER_ERR_INVALID_ARG, "the prompt is empty");
  if (n_prompt > ctx.n_ctx())
    fail(INFER_ERR_CONTEXT_FULL, "the prompt has " + std::to_string(n_prompt) + " tokens but the context holds " +
                                     std::to_string(ctx.n_ctx()) + "; use a larger context (-c) or a shorter prompt");
  const int32_t V = int32_t(ctx.model().vocab_size());
  for (int64_t i = 0; i < n_prompt; ++i)
    if (prompt[i] < 0 || prompt[i] >= V)
      fail(INFER_ERR_INVALID_ARG, "prompt token id " + std::to_string(prompt[i]) + " is outside the vocabulary [0, " +
                                      std::to_string(V) + ")");
  TokenGenerator gen(ctx.model(), sampler, opts, prompt, n_prompt, on_token);

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
  infer_generate_result& res = gen.result();
  res.prompt_ms = ms_since(t0);
  res.prompt_tokens = int32_t(n_prompt - common);
  res.prompt_cached_tokens = int32_t(common);

  // Self-speculative decoding when the context runs a draft head (DeepSeek MTP); plain decoding otherwise. Either
  // way `cur` holds the logits of the next position.
  Speculator spec(ctx, opts.n_draft);
  const float* cur = ctx.logits();
  const auto t1 = std::chrono::steady_clock::now();
  TokenGenerator::Feed feed;
  TokenGenerator::DeviceSampling dev{&ctx.backend(), nullptr};
  for (;;) {
    if (on_device) dev.logits = ctx.device_logits();  // this position's logits, in backend memory
    if (!gen.next(on_device ? nullptr : cur, spec.n_past(), ctx.n_ctx(), &feed, on_device ? &dev : nullptr)) break;
    if (feed.forced) {
      spec.flush();
      ctx.eval(feed.ids, feed.n, false);
      cur = ctx.logits();
    } else {
      cur = spec.advance(feed.ids[0]);
    }
  }
  spec.flush();  // the cache keeps what plain decoding would have (no unchecked drafts)
  res.gen_ms = ms_since(t1);
  res.draft_tokens = int32_t(spec.drafted());
  res.draft_accepted = int32_t(spec.accepted());
  gen.finish();
  return res;
}

}  // namespace infer
