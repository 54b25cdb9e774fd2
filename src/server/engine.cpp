// engine.cpp — see engine.h.
#include "server/engine.h"

#include <algorithm>
#include <chrono>

#include "common.h"
#include "sampler.h"

namespace infer::server {
namespace {

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

struct Engine::Seq {
  uint64_t id = 0;
  Request req;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TokenGenerator> gen;
  std::vector<int32_t> tokens;   // in the cache, in order
  std::vector<int32_t> blocks;   // block table
  std::vector<int32_t> pending;  // to evaluate next (the rest of the prompt, a sampled token, the budget cut)
  int64_t fed = 0;               // of pending, evaluated so far
  bool prefilling = true;
  bool cancelled = false;  // by the caller (or a shutdown)
  bool done = false;       // finished: leaves the running list
  bool admitted = false;   // left the queue for the running list
  uint64_t key = BlockPool::kRootKey;  // chain key of the published full blocks
  int64_t published = 0;               // full blocks published to the prefix cache
  int64_t cached = 0;                  // prompt tokens taken from the prefix cache
  Clock::time_point t_admit, t_prefilled;
};

Engine::Engine(const Transformer& model, std::unique_ptr<Backend> backend, const EngineOptions& o)
    : model_(model), backend_(std::move(backend)), opts_(o),
      pool_(o.n_blocks > 0 ? o.n_blocks : o.n_parallel * ((o.n_ctx + o.block_size - 1) / std::max<int64_t>(1, o.block_size)),
            o.block_size) {
  if (opts_.n_parallel <= 0 || opts_.n_ctx <= 0 || opts_.n_batch <= 0 || opts_.block_size <= 0 || opts_.max_queue < 0)
    fail(INFER_ERR_INVALID_ARG, "engine: n_parallel, n_ctx, n_batch and block_size must be positive");
  if (!model.has_batched_forward())
    fail(INFER_ERR_UNSUPPORTED, "the " + model.config.model_type +
                                    " architecture has no batched forward over a paged KV cache, which continuous "
                                    "batching needs (supported: the dense decoders qwen3, qwen2, llama and qwen3_moe)");
  opts_.n_blocks = pool_.n_blocks();
  opts_.n_batch = std::max(opts_.n_batch, opts_.n_parallel);  // room for one token of every running sequence
  try {
    state_ = model.new_paged_state(*backend_, opts_.n_blocks, opts_.block_size, opts_.n_batch, opts_.n_parallel);
  } catch (const std::bad_alloc&) {
    fail(INFER_ERR_OUT_OF_MEMORY, "out of memory allocating the KV cache (" + std::to_string(opts_.n_blocks) +
                                      " blocks of " + std::to_string(opts_.block_size) + " tokens, " +
                                      std::to_string(model.kv_bytes_per_token() * opts_.n_blocks * opts_.block_size >> 20) +
                                      " MiB); use a smaller --ctx-size or --parallel");
  }
  logits_.resize(size_t(opts_.n_parallel * model.vocab_size()));
  stats_.kv_blocks = pool_.n_blocks();
  stats_.block_size = pool_.block_size();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t Engine::submit(Request r) {
  const int64_t n = int64_t(r.prompt.size());
  const int64_t V = model_.vocab_size();
  if (n == 0) fail(INFER_ERR_INVALID_ARG, "the prompt is empty");
  if (n > opts_.n_ctx)
    fail(INFER_ERR_CONTEXT_FULL, "the prompt has " + std::to_string(n) + " tokens but the context holds " +
                                     std::to_string(opts_.n_ctx));
  if ((n + opts_.block_size) / opts_.block_size > pool_.n_blocks())
    fail(INFER_ERR_CONTEXT_FULL, "the prompt has " + std::to_string(n) + " tokens but the KV cache holds " +
                                     std::to_string(pool_.n_blocks() * opts_.block_size));
  for (int32_t id : r.prompt)
    if (id < 0 || id >= V)
      fail(INFER_ERR_INVALID_ARG, "prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                      std::to_string(V) + ")");
  if (r.gen.n_logprobs < 0 || r.gen.n_logprobs > 20) fail(INFER_ERR_INVALID_ARG, "logprobs must be in 0..20");
  if (!r.on_token || !r.on_done) fail(INFER_ERR_INVALID_ARG, "a request needs on_token and on_done callbacks");

  auto s = std::make_unique<Seq>();
  s->req = std::move(r);
  s->sampler = std::make_unique<Sampler>(s->req.sampling);
  Seq* sp = s.get();
  // Constructed here so that its errors (a thinking budget on a model without <think>) reach the caller.
  s->gen = std::make_unique<TokenGenerator>(model_, *s->sampler, s->req.gen, s->req.prompt.data(), n,
                                            [sp](const infer_token_info& t) { return sp->req.on_token(t); });
  std::lock_guard<std::mutex> lk(mu_);
  if (stop_) fail(INFER_ERR_CANCELLED, "the server is shutting down");
  // Room: a free slot among the n_parallel running (the request is admitted at the next step), or in the queue.
  if (stats_.running + int64_t(queue_.size()) >= opts_.n_parallel + opts_.max_queue)
    fail(INFER_ERR_BUSY, "all " + std::to_string(opts_.n_parallel) + " slots are busy and the queue is full (" +
                             std::to_string(queue_.size()) + " requests waiting); retry later");
  s->id = next_id_++;
  const uint64_t id = s->id;
  queue_.push_back(std::move(s));
  stats_.queued = int64_t(queue_.size());
  cv_.notify_all();
  return id;
}

void Engine::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

// Takes the cached prefix and the blocks for the rest of the prompt. False (nothing held) when they are not free.
bool Engine::admit(Seq& s) {
  const auto& p = s.req.prompt;
  const int64_t n = int64_t(p.size()), bs = opts_.block_size;
  // The last prompt token is always evaluated (its logits start generation), so its block is never shared.
  s.blocks = pool_.match_prefix(p.data(), n, (n - 1) / bs, &s.key);
  const int64_t need = (n + bs - 1) / bs - int64_t(s.blocks.size());
  if (pool_.n_available() < need) {
    for (int32_t b : s.blocks) pool_.release(b);
    s.blocks.clear();
    s.key = BlockPool::kRootKey;
    return false;
  }
  for (int64_t i = 0; i < need; ++i) s.blocks.push_back(pool_.allocate());
  s.published = int64_t(s.blocks.size()) - need;
  s.cached = s.published * bs;
  s.tokens.assign(p.begin(), p.begin() + s.cached);
  s.pending.assign(p.begin() + s.cached, p.end());
  s.fed = 0;
  s.t_admit = Clock::now();
  stats_.prompt_tokens_cached += s.cached;  // admit() runs under mu_
  return true;
}

void Engine::finish(Seq& s, infer_status status, const std::string& message_in) {
  s.done = true;
  std::string message = message_in;
  try {
    s.gen->finish();
  } catch (const std::exception& e) {
    if (status == INFER_OK) status = INFER_ERR_INTERNAL, message = e.what();
  }
  infer_generate_result& r = s.gen->result();
  const auto now = Clock::now();
  if (s.prefilling) {
    r.prompt_ms = ms_between(s.t_admit, now);
  } else {
    r.gen_ms = ms_between(s.t_prefilled, now);
  }
  r.prompt_cached_tokens = int32_t(s.cached);
  if (s.cancelled) r.finish_reason = INFER_FINISH_CANCELLED;
  for (int32_t b : s.blocks) pool_.release(b);
  s.blocks.clear();
  {
    // The stats say the request is gone before its caller hears that it ended.
    std::lock_guard<std::mutex> lk(mu_);
    stats_.generated_tokens += r.gen_tokens;
    stats_.requests_done++;
    if (s.admitted) stats_.running--;
    stats_.kv_blocks_used = pool_.n_used();
    stats_.kv_blocks_cached = pool_.n_cached();
  }
  try {
    s.req.on_done(r, status, message);
  } catch (...) {  // a callback must not take the scheduler down
  }
}

void Engine::loop() {
  std::vector<std::unique_ptr<Seq>> running;
  for (;;) {
    std::vector<std::unique_ptr<Seq>> dropped;  // cancelled while queued
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !cancels_.empty() || !running.empty() || !queue_.empty(); });
      if (stop_) {
        for (auto& s : queue_) dropped.push_back(std::move(s));
        queue_.clear();
      }
      for (uint64_t id : cancels_) {
        for (auto& s : running)
          if (s->id == id) s->cancelled = true;
        for (auto it = queue_.begin(); it != queue_.end(); ++it)
          if ((*it)->id == id) {
            dropped.push_back(std::move(*it));
            queue_.erase(it);
            break;
          }
      }
      cancels_.clear();
      // Admission, first come first served.
      while (!stop_ && int64_t(running.size()) < opts_.n_parallel && !queue_.empty() && admit(*queue_.front())) {
        queue_.front()->admitted = true;
        stats_.running++;
        running.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = int64_t(queue_.size());
    }
    for (auto& s : dropped) {
      s->cancelled = true;
      s->t_admit = Clock::now();
      finish(*s, INFER_OK, "");
    }
    if (stop_) {
      for (auto& s : running) {
        s->cancelled = true;
        finish(*s, INFER_OK, "");
      }
      running.clear();
      return;
    }
    if (!running.empty()) step(running);
  }
}

void Engine::step(std::vector<std::unique_ptr<Seq>>& running) {
  const int64_t bs = opts_.block_size, V = model_.vocab_size();
  // Cancelled sequences leave first.
  for (auto& s : running)
    if (s->cancelled) finish(*s, INFER_OK, "");
  std::erase_if(running, [](const std::unique_ptr<Seq>& s) { return s->done; });

  // The batch: decoding sequences first (one token each, or the budget cut), then prompt chunks, within n_batch.
  std::vector<Seq*> order;
  for (auto& s : running)
    if (!s->prefilling) order.push_back(s.get());
  for (auto& s : running)
    if (s->prefilling) order.push_back(s.get());
  std::vector<BatchSeq> batch;
  std::vector<Seq*> in_batch;
  std::vector<Seq*> out_of_blocks;
  int64_t budget = opts_.n_batch, prompt_tokens = 0;
  for (Seq* s : order) {
    int64_t n = std::min(int64_t(s->pending.size()) - s->fed, budget);
    if (n <= 0) continue;
    const int64_t pos0 = int64_t(s->tokens.size());
    while (int64_t(s->blocks.size()) * bs < pos0 + n) {
      const int32_t b = pool_.allocate();
      if (b < 0) break;
      s->blocks.push_back(b);
    }
    n = std::min(n, int64_t(s->blocks.size()) * bs - pos0);
    if (n <= 0) {  // only possible with a pool smaller than n_parallel full contexts
      out_of_blocks.push_back(s);
      continue;
    }
    batch.push_back({s->pending.data() + s->fed, n, pos0, s->blocks.data()});
    in_batch.push_back(s);
    budget -= n;
    if (s->prefilling) prompt_tokens += n;
  }
  for (Seq* s : out_of_blocks) {
    s->gen->result().finish_reason = INFER_FINISH_LENGTH;  // the KV pool is full
    finish(*s, INFER_OK, "");
  }
  if (!batch.empty()) {
    try {
      model_.forward_batch(*state_, batch.data(), int64_t(batch.size()), logits_.data());
    } catch (const std::exception& e) {
      for (Seq* s : in_batch) {
        s->gen->result().finish_reason = INFER_FINISH_NONE;
        finish(*s, INFER_ERR_INTERNAL, std::string("forward step failed: ") + e.what());
      }
      in_batch.clear();
    }
  }
  for (size_t i = 0; i < in_batch.size(); ++i) {
    Seq& s = *in_batch[i];
    const BatchSeq& b = batch[i];
    s.tokens.insert(s.tokens.end(), b.ids, b.ids + b.n);
    s.fed += b.n;
    for (; (s.published + 1) * bs <= int64_t(s.tokens.size()); ++s.published)
      s.key = pool_.publish(s.blocks[size_t(s.published)], s.key, s.tokens.data() + s.published * bs);
    if (s.fed < int64_t(s.pending.size())) continue;  // more of the prompt to come
    if (s.prefilling) {
      s.prefilling = false;
      s.t_prefilled = Clock::now();
      auto& r = s.gen->result();
      r.prompt_ms = ms_between(s.t_admit, s.t_prefilled);
      r.prompt_tokens = int32_t(s.req.prompt.size() - size_t(s.cached));
    }
    TokenGenerator::Feed f;
    try {
      if (s.gen->next(logits_.data() + int64_t(i) * V, int64_t(s.tokens.size()), opts_.n_ctx, &f)) {
        s.pending.assign(f.ids, f.ids + f.n);
        s.fed = 0;
      } else {
        finish(s, INFER_OK, "");
      }
    } catch (const std::exception& e) {  // e.g. a sampled id the tokenizer cannot decode: this request ends
      s.gen->result().finish_reason = INFER_FINISH_NONE;
      const Error* err = dynamic_cast<const Error*>(&e);
      finish(s, err ? err->code() : INFER_ERR_INTERNAL, e.what());
    }
  }
  std::erase_if(running, [](const std::unique_ptr<Seq>& s) { return s->done; });
  std::lock_guard<std::mutex> lk(mu_);
  stats_.steps += batch.empty() ? 0 : 1;
  stats_.max_step_seqs = std::max(stats_.max_step_seqs, int64_t(batch.size()));
  stats_.prompt_tokens += prompt_tokens;
  stats_.kv_blocks_used = pool_.n_used();
  stats_.kv_blocks_cached = pool_.n_cached();
}

}  // namespace infer::server
