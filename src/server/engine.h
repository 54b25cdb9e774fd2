// engine.h — continuous batching: the scheduler behind `infer serve` (and infer_engine_* in the C API).
//
// Requests are queued (a bounded queue) and admitted while fewer than n_parallel sequences run. Every step, one
// batched forward (Transformer::forward_batch) runs a token budget of n_batch: the next token of every decoding
// sequence first, then chunks of the prompts being prefilled. New requests join between steps, finished ones leave.
// The KV cache is paged (kv_blocks.h): each sequence has a block table over one shared pool; full blocks are
// published to a prefix cache so a prompt that starts like an earlier one (a shared system prompt) takes its blocks
// instead of computing them. The per-token logic (sampling, stop strings, <think> phases, thinking budget,
// logprobs) is generate.h's TokenGenerator, the same as single-sequence generation, so a request gives the same
// tokens served alone, in a batch, or through infer_generate.
//
// Memory: by default the pool holds n_parallel full contexts, so a running sequence never runs out of blocks. With
// a smaller pool (n_blocks), a request is admitted only when its whole prompt fits, and a sequence that finds no
// block for its next token ends with finish reason "length".
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "generate.h"
#include "model.h"
#include "server/kv_blocks.h"

namespace infer::server {

struct EngineOptions {
  int64_t n_parallel = 4;  // sequences decoded together
  int64_t n_ctx = 4096;    // tokens per sequence (prompt + output)
  int64_t n_batch = 512;   // tokens per forward step, all sequences together
  int64_t block_size = 16; // tokens per KV block
  int64_t n_blocks = 0;    // <= 0: n_parallel · ceil(n_ctx / block_size)
  int64_t max_queue = 64;  // requests waiting for a free slot; beyond it submit() fails with INFER_ERR_BUSY
};

// Called on the engine's thread, exactly once per accepted request: the result, and INFER_OK or the error.
using DoneFn = std::function<void(const infer_generate_result&, infer_status, const std::string& message)>;

struct Request {
  std::vector<int32_t> prompt;
  infer_sampler_params sampling{};
  GenerateOptions gen;
  TokenFn on_token;  // on the engine's thread; return false to cancel the request
  DoneFn on_done;
};

struct EngineStats {
  int64_t running = 0, queued = 0;
  int64_t kv_blocks = 0, kv_blocks_used = 0, kv_blocks_cached = 0, block_size = 0;
  int64_t steps = 0;                 // batched forward steps run
  int64_t max_step_seqs = 0;         // the most sequences seen in one step
  int64_t prompt_tokens = 0;         // prompt tokens evaluated
  int64_t prompt_tokens_cached = 0;  // prompt tokens taken from the prefix cache instead
  int64_t generated_tokens = 0;
  int64_t requests_done = 0;
};

class Engine {
 public:
  // Fails with INFER_ERR_UNSUPPORTED when the architecture has no batched forward.
  Engine(const Transformer& model, std::unique_ptr<Backend> backend, const EngineOptions& opts);
  ~Engine();  // shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request and returns its id. Checks it first and throws infer::Error without queueing:
  // INFER_ERR_INVALID_ARG (empty prompt, token id outside the vocabulary, bad option), INFER_ERR_CONTEXT_FULL (the
  // prompt does not fit in n_ctx), INFER_ERR_UNSUPPORTED (a thinking budget without <think> tokens), INFER_ERR_BUSY
  // (the queue is full), INFER_ERR_CANCELLED (shutting down).
  uint64_t submit(Request r);
  // Ends a queued or running request (its on_done then reports INFER_FINISH_CANCELLED). Unknown ids are ignored.
  void cancel(uint64_t id);
  EngineStats stats() const;
  const EngineOptions& options() const { return opts_; }
  const Backend& backend() const { return *backend_; }
  // Stops the scheduler: every queued or running request ends as cancelled. Idempotent.
  void shutdown();

 private:
  struct Seq;
  void loop();
  void step(std::vector<std::unique_ptr<Seq>>& running);
  void finish(Seq& s, infer_status status, const std::string& message);
  bool admit(Seq& s);

  const Transformer& model_;
  std::unique_ptr<Backend> backend_;
  EngineOptions opts_;
  std::unique_ptr<ForwardState> state_;
  BlockPool pool_;
  std::vector<float> logits_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Seq>> queue_;
  std::vector<uint64_t> cancels_;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  EngineStats stats_;  // guarded by mu_ (the pool counts copied in after every step)
  std::thread thread_;
};

}  // namespace infer::server
