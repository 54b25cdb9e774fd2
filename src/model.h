// model.h — the architecture-independent model: config, weights (mmapped safetensors), tokenizer, and the
// per-architecture forward pass behind a small virtual interface. One file per architecture lives in
// src/models/ and registers itself in the table in model.cpp (see docs/adding-a-model.md).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "hf_config.h"
#include "safetensors.h"
#include "tokenizer.h"

namespace infer {

// Called with each named intermediate of a forward pass: name ("layers.3.attn_out"), data [rows, cols].
using DumpFn = std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

// Per-sequence state the model's forward pass uses: KV cache and scratch in backend memory.
// Created by Transformer::new_state; frees its buffers through the backend that made them.
struct ForwardState {
  explicit ForwardState(Backend& b) : backend(b) {}
  virtual ~ForwardState() {
    for (float* p : buffers) backend.release(p);
    for (void* p : kv) backend.release_kv(p);
  }
  ForwardState(const ForwardState&) = delete;
  ForwardState& operator=(const ForwardState&) = delete;
  float* buffer(int64_t n) { return buffers.emplace_back(backend.alloc(n)); }
  void* kv_cache(int64_t n_ctx, int64_t width) { return kv.emplace_back(backend.alloc_kv(n_ctx, width)); }

  Backend& backend;
  int64_t n_ctx = 0;
  int64_t n_batch = 0;
  int64_t n_past = 0;  // tokens in the cache
  int64_t block_size = 0;  // > 0: a paged state (new_paged_state): the cache rows form blocks of this many tokens
  // Backend memory: the last row of the logits of the latest forward (for sampling on the device). forward()
  // sets it; a null host `logits` pointer skips the copy to the host.
  const float* last_logits = nullptr;
  std::vector<float*> buffers;
  std::vector<void*> kv;
};

// One sequence of a batched forward step (Transformer::forward_batch): n tokens appended at positions
// pos0 .. pos0 + n - 1 of its own cache, given by its block table (the block of position p is blocks[p / block_size]).
// All pointers are host memory.
struct BatchSeq {
  const int32_t* ids = nullptr;
  int64_t n = 0;
  int64_t pos0 = 0;
  const int32_t* blocks = nullptr;  // covers positions 0 .. pos0 + n - 1
};

struct LoadOptions {
  int n_threads = 0;
  std::function<bool(float)> progress;  // return false to cancel
};

class Transformer {
 public:
  virtual ~Transformer() = default;

  ModelConfig config;
  GenerationConfig generation;
  std::unique_ptr<SafeTensors> weights;
  std::unique_ptr<Tokenizer> tokenizer;  // null if the directory has none (or it was not asked for)
  std::string dir;

  // Loads config, generation config, weights (validated against config), tokenizer.
  static std::unique_ptr<Transformer> load(const std::string& dir, const LoadOptions& opts, bool load_tokenizer);

  // Creates the KV cache and scratch for a context of n_ctx tokens processing up to n_batch per step.
  virtual std::unique_ptr<ForwardState> new_state(Backend& backend, int64_t n_ctx, int64_t n_batch) const = 0;
  // Runs tokens ids[0..n) (n <= n_batch) at positions st.n_past.. and appends them to the cache. Writes host logits
  // for the last position (logits: [vocab]) or for every position (all_logits: [n, vocab]). The caller checks
  // capacity and ids. dump, if given, receives every named intermediate (host copies). A null `logits` skips the
  // copy to the host (st.last_logits still points at the last row in backend memory).
  virtual void forward(ForwardState& st, const int32_t* ids, int64_t n, float* logits, bool all_logits,
                       const DumpFn* dump) const = 0;

  // ---- Continuous batching (src/server/): one forward step over several sequences, each at its own position, with
  // its KV cache in blocks of a shared pool. Architectures without it keep the defaults, which fail with
  // INFER_ERR_UNSUPPORTED naming the architecture.
  virtual bool has_batched_forward() const { return false; }
  // A paged state: every layer's cache is a pool of n_blocks blocks of block_size tokens; scratch for n_tokens tokens
  // (all sequences together) and the logits of n_seqs sequences per step.
  virtual std::unique_ptr<ForwardState> new_paged_state(Backend& backend, int64_t n_blocks, int64_t block_size,
                                                        int64_t n_tokens, int64_t n_seqs) const;
  // Runs every sequence's tokens in one step (1 <= n_seqs <= the state's, n_tokens at most; every token's KV is written
  // to its row of the pool before attention) and writes the host logits of each sequence's last token to
  // logits[s, vocab]. A sequence's results equal what forward() computes for it alone. st.last_logits points at the
  // last sequence's row in backend memory (the rows are consecutive, vocab apart); a null `logits` skips the copy.
  virtual void forward_batch(ForwardState& st, const BatchSeq* seqs, int64_t n_seqs, float* logits) const;

  virtual int64_t vocab_size() const { return config.vocab_size; }
  virtual int64_t kv_bytes_per_token() const = 0;
  virtual int64_t n_params() const;
  virtual int64_t weight_bytes() const;
  // Weight bytes one decode step reads (infer_model_weight_bytes_per_token). Default: all of them.
  virtual int64_t weight_bytes_per_token() const { return weight_bytes(); }
  virtual std::string describe() const;

  // ---- Multi-token prediction: a draft head (DeepSeek-V3's MTP module, model-spec.md §5) that proposes the token
  // after next from the main model's last hidden state, for self-speculative decoding (speculative.h). Models
  // without one keep the defaults.
  virtual int64_t mtp_layers() const { return 0; }
  virtual int64_t mtp_kv_bytes_per_token() const { return 0; }  // the draft head's own cache, apart from the main one
  // Turns the draft head on or off for one state (on by default when the model has one; off saves its compute).
  virtual void set_mtp(ForwardState& st, bool on) const {}
  // With st.n_past tokens cached and `next` the token that follows them (sampled, not yet evaluated), drafts up to
  // n_draft tokens for the positions after `next` (greedy over the draft logits, chaining the head for more than
  // one) → drafts[0..k). logits, if not null, receives the k draft logit rows [k, vocab]. Returns k (0 without an
  // active draft head).
  virtual int64_t mtp_draft(ForwardState& st, int32_t next, int64_t n_draft, int32_t* drafts, float* logits) const {
    return 0;
  }
  // The cache was cut back to n_keep tokens (Session::truncate): roll back any per-position state beyond them.
  virtual void truncate_state(ForwardState& st, int64_t n_keep) const {}

 protected:
  // Binds the tensors the architecture needs; called by load() after construction.
  virtual void bind_weights(const LoadOptions& opts) = 0;
  // Every tensor name bound by bind_weights (to report unexpected tensors).
  std::vector<std::string> bound_;
  // Fetch a weight matrix/vector with shape checks; records the name as bound.
  cpu::Matrix matrix(const std::string& name, int64_t rows, int64_t cols, const std::string& fields);
  const TensorInfo& vector(const std::string& name, int64_t n, const std::string& fields);
  // Storage for weights converted at load (f16 → f32); kept alive with the model.
  std::vector<std::vector<float>> converted_;
  // Per bf16 weight: where the CPU backend keeps its packed form (cpu::Matrix::pack).
  std::vector<std::unique_ptr<cpu::PackCache>> packs_;
  int64_t fp8_block_ = 0;  // quantization_config's FP8 scale block side, read at the first FP8 weight
};

// The architecture registry: model_type → factory.
using ModelFactory = std::unique_ptr<Transformer> (*)(const ModelConfig&);
struct ArchEntry {
  const char* model_type;
  ModelFactory create;
};
const std::vector<ArchEntry>& architectures();

}  // namespace infer
