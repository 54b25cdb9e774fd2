// session.cpp — see session.h.
#include "session.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common.h"

namespace infer {

namespace {

// Memory the kernel says it can give without swapping (MemAvailable), or -1 if unknown.
int64_t host_memory_available() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %ld kB", &kb) == 1) break;
  std::fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

std::string mib(int64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

// Whether one element of a tensor of this dtype is NaN or ±Inf.
bool non_finite(DType dt, const uint8_t* p) {
  uint32_t u32 = 0;
  uint16_t u16 = 0;
  switch (dt) {
    case DType::F32: std::memcpy(&u32, p, 4); return (u32 & 0x7F800000u) == 0x7F800000u;
    case DType::BF16: std::memcpy(&u16, p, 2); return (u16 & 0x7F80u) == 0x7F80u;
    case DType::F16: std::memcpy(&u16, p, 2); return (u16 & 0x7C00u) == 0x7C00u;
    case DType::F8_E4M3: return (p[0] & 0x7Fu) == 0x7Fu;  // E4M3FN: no Inf, S.1111.111 is NaN
    default: return false;
  }
}

// The floating-point tensors of the checkpoint that hold NaN or Inf, with counts ("" if none), for the error
// raised when a forward pass gives non-finite logits. Reads every weight: only run on that error path.
std::string non_finite_weights(const SafeTensors& w) {
  std::string found;
  int n_found = 0;
  for (const auto& [name, t] : w.tensors()) {
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F8_E4M3) continue;
    const size_t esz = dtype_size(t.dtype);
    int64_t bad = 0;
    for (size_t i = 0; i + esz <= t.nbytes; i += esz) bad += non_finite(t.dtype, t.data + i);
    if (!bad) continue;
    if (++n_found <= 5)
      found += std::string(found.empty() ? "" : ", ") + name + " in " + t.file + " (" + std::to_string(bad) + " of " +
               std::to_string(t.numel()) + " values)";
  }
  if (n_found > 5) found += " and " + std::to_string(n_found - 5) + " more tensors";
  return found;
}

}  // namespace

Session::Session(const Transformer& model, int64_t n_ctx, std::unique_ptr<Backend> backend, int64_t n_batch)
    : model_(model), n_ctx_(n_ctx), n_batch_(std::min(n_batch, n_ctx)), backend_(std::move(backend)) {
  if (n_ctx <= 0) fail(INFER_ERR_INVALID_ARG, "context size must be positive");
  // A KV cache larger than the memory there is would be granted by overcommit and then get the process killed
  // as it fills; refuse it up front. (Device backends report their own out-of-memory at allocation.)
  if (backend_->name() == "cpu") {
    const int64_t per_token = model.kv_bytes_per_token() + model.mtp_kv_bytes_per_token();
    const int64_t avail = host_memory_available();
    if (avail >= 0 && per_token > 0 && n_ctx > avail / per_token)
      fail(INFER_ERR_OUT_OF_MEMORY, "the KV cache for a context of " + std::to_string(n_ctx) + " tokens needs " +
                                        mib(per_token * n_ctx) + " (" + std::to_string(per_token) +
                                        " bytes per token), more than the " + mib(avail) +
                                        " of memory available; use a smaller context (-c)");
  }
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
    if (out) check_logits(out, all_logits ? m : 1, n_past() + (all_logits ? 0 : m - 1));  // (device logits: the caller)
    tokens_.insert(tokens_.end(), ids + b, ids + b + m);
  }
}

void Session::check_logits(const float* rows, int64_t n_rows, int64_t first_pos) const {
  const int64_t V = model_.vocab_size();
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = rows + r * V;
    int64_t bad = 0;
    for (int64_t i = 0; i < V; ++i) bad += !std::isfinite(row[i]);
    if (!bad) continue;
    const std::string where = "the forward pass gave " + std::to_string(bad) + " non-finite (NaN/Inf) logits at position " +
                              std::to_string(first_pos + r) + "; ";
    const std::string weights = model_.weights ? non_finite_weights(*model_.weights) : "";
    if (!weights.empty()) fail(INFER_ERR_FORMAT, where + "the checkpoint holds non-finite weights: " + weights);
    fail(INFER_ERR_INTERNAL, where + "every weight is finite, so an activation overflowed (" + model_.describe() + ")");
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
