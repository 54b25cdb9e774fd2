// session.h — one sequence's runtime state: the model's KV cache and scratch, the thread pool, the tokens
// in the cache (for prefix reuse), and the logits of the last eval.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/backend_cpu.h"
#include "model.h"

namespace infer {

class Session {
 public:
  Session(const Transformer& model, int64_t n_ctx, std::unique_ptr<Backend> backend, int64_t n_batch);
  // CPU backend with n_threads threads.
  Session(const Transformer& model, int64_t n_ctx, int n_threads, int64_t n_batch)
      : Session(model, n_ctx, std::make_unique<CpuBackend>(n_threads), n_batch) {}

  const Transformer& model() const { return model_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_past() const { return int64_t(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  Backend& backend() { return *backend_; }

  // Evaluates ids at the end of the cache (split into n_batch steps). Throws INFER_ERR_CONTEXT_FULL /
  // INFER_ERR_INVALID_ARG before touching the cache if the tokens do not fit or an id is out of range.
  void eval(const int32_t* ids, int64_t n, bool all_logits, const DumpFn* dump = nullptr);
  void truncate(int64_t n_keep);
  const float* logits() const { return logits_.data(); }
  int64_t logits_rows() const { return logits_rows_; }
  // Host logits off: eval() leaves the logits in backend memory only (device_logits(), the last row; logits_rows()
  // is 0) — for sampling on the device (Backend::sample). On by default.
  void set_host_logits(bool on) { host_logits_ = on; }
  bool host_logits() const { return host_logits_; }
  const float* device_logits() const { return state_->last_logits; }

  // The model's MTP draft head (DeepSeek): on by default when the model has one. draft() proposes up to n tokens
  // after `next` (the sampled token that follows the cached ones) → out[0..k), optionally with their logits
  // [k, vocab]; returns k (0 when off). speculative.h runs the verification.
  void set_mtp(bool on);
  bool mtp() const { return mtp_ && model_.mtp_layers() > 0; }
  int64_t draft(int32_t next, int64_t n, int32_t* out, float* logits = nullptr);

 private:
  const Transformer& model_;
  int64_t n_ctx_, n_batch_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ForwardState> state_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  int64_t logits_rows_ = 0;
  bool mtp_ = true;
  bool host_logits_ = true;
};

}  // namespace infer
