// session.cpp — see session.h.
#include "session.h"

#include <algorithm>

#include "common.h"

namespace infer {

Session::Session(const Transformer& model, int64_t n_ctx, std::unique_ptr<Backend> backend, int64_t n_batch)
    : model_(model), n_ctx_(n_ctx), n_batch_(std::min(n_batch, n_ctx)), backend_(std::move(backend)) {
  if (n_ctx <= 0) fail(INFER_ERR_INVALID_ARG, "context size must be positive");
  auto oom = [&] {
    fail(INFER_ERR_OUT_OF_MEMORY, "out of memory allocating the KV cache for " + std::to_string(n_ctx) + " tokens (" +
                                      std::to_string(model.kv_bytes_per_token() * n_ctx >> 20) +
                                      " MiB); use a smaller context (-c)");
  };
  try {
    state_ = model.new_state(*backend_, n_ctx_, n_batch_);
  } catch (const std::bad_alloc&) {
    oom();
  } catch (const Error& e) {
    if (e.code() == INFER_ERR_OUT_OF_MEMORY) oom();
    throw;
  }
}

void Session::eval(const int32_t* ids, int64_t n, bool all_logits, const DumpFn* dump) {
  if (n <= 0) fail(INFER_ERR_INVALID_ARG, "eval: no tokens");
  if (n_past() + n > n_ctx_)
    fail(INFER_ERR_CONTEXT_FULL, std::to_string(n_past() + n) + " tokens do not fit in the context of " +
                                     std::to_string(n_ctx_) + " tokens (" + std::to_string(n_past()) +
                                     " already cached); use a larger context (-c) or a shorter prompt");
  const int64_t V = model_.vocab_size();
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V)
      fail(INFER_ERR_INVALID_ARG, "token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                                      std::to_string(V) + ")");
  if (dump && n > n_batch_) fail(INFER_ERR_INVALID_ARG, "dump: at most n_batch tokens in one eval");
  const bool host = host_logits_ || all_logits || dump;
  logits_rows_ = !host ? 0 : all_logits ? n : 1;
  logits_.resize(size_t(logits_rows_ * V));
  state_->n_past = n_past();
  for (int64_t b = 0; b < n; b += n_batch_) {
    const int64_t m = std::min(n_batch_, n - b);
    float* out = !host ? nullptr : all_logits ? logits_.data() + b * V : logits_.data();
    // Without all_logits only the final step's last row matters; earlier steps write it and are overwritten.
    model_.forward(*state_, ids + b, m, out, all_logits, dump);
    tokens_.insert(tokens_.end(), ids + b, ids + b + m);
  }
}

void Session::truncate(int64_t n_keep) {
  if (n_keep < 0) n_keep = 0;
  if (n_keep < n_past()) tokens_.resize(size_t(n_keep));
  state_->n_past = n_past();
  model_.truncate_state(*state_, n_past());
}

void Session::set_mtp(bool on) {
  mtp_ = on;
  model_.set_mtp(*state_, on);
}

int64_t Session::draft(int32_t next, int64_t n, int32_t* out, float* logits) {
  if (!out) fail(INFER_ERR_INVALID_ARG, "draft: no output array");
  if (!mtp() || n <= 0) return 0;
  if (next < 0 || next >= model_.vocab_size())
    fail(INFER_ERR_INVALID_ARG, "draft: token id " + std::to_string(next) + " is outside the vocabulary");
  state_->n_past = n_past();
  return model_.mtp_draft(*state_, next, n, out, logits);
}

}  // namespace infer
