// dense.h — the dense GQA decoder shared by Qwen3, Qwen2 and Llama: pre-norm blocks of attention (q/k/v
// projections, optional q/k/v bias, optional per-head QK-Norm, NeoX RoPE, causal GQA) and a SwiGLU MLP.
// Each architecture file (qwen3.cpp, …) picks its options; model-spec.md §3 has the math.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model.h"
#include "rope.h"

namespace infer::models {

struct DenseOptions {
  bool qk_norm = false;   // Qwen3: RMSNorm over head_dim on q and k, per head, before RoPE
  bool qkv_bias = false;  // Qwen2: bias on q/k/v projections
};

class DenseDecoder : public Transformer {
 public:
  DenseDecoder(const ModelConfig& cfg, DenseOptions opts) : opts_(opts) { config = cfg; }

  std::unique_ptr<ForwardState> new_state(Backend& backend, int64_t n_ctx, int64_t n_batch) const override;
  void forward(ForwardState& st, const int32_t* ids, int64_t n, float* logits, bool all_logits,
               const DumpFn* dump) const override;
  int64_t kv_bytes_per_token() const override;
  bool has_batched_forward() const override { return true; }
  std::unique_ptr<ForwardState> new_paged_state(Backend& backend, int64_t n_blocks, int64_t block_size,
                                                int64_t n_tokens, int64_t n_seqs) const override;
  void forward_batch(ForwardState& st, const BatchSeq* seqs, int64_t n_seqs, float* logits) const override;
  int64_t weight_bytes_per_token() const override;

 protected:
  void bind_weights(const LoadOptions& opts) override;
  // The buffers of new_state, with logits for n_logit_rows rows.
  std::unique_ptr<ForwardState> make_state(Backend& backend, int64_t n_ctx, int64_t n_batch, int64_t n_logit_rows) const;

  // FFN hooks: a subclass (Qwen3-MoE) replaces the MLP of some layers. The defaults are the dense SwiGLU MLP of
  // intermediate_size. bind_ffn binds layer l's FFN weights (prefix "model.layers.{l}."); ffn computes
  // out[T, H] = FFN_l(xn[T, H]) (out != xn) with `scratch` (ffn_scratch_floats(n_batch) floats of backend memory)
  // and dumps its intermediates under `pfx` ("layers.{l}.").
  virtual void bind_ffn(int64_t l, const std::string& prefix);
  virtual int64_t ffn_scratch_floats(int64_t n_batch) const;
  virtual void ffn(Backend& be, int64_t l, const float* xn, float* out, int64_t T, float* scratch,
                   const std::string& pfx, const DumpFn* dump) const;
  // Hands layer l's FFN weight groups to Backend::prepare_matmul (as ffn will use them).
  virtual void prepare_ffn(Backend& be, int64_t l) const;

 private:
  struct Layer {
    const TensorInfo* attn_norm;  // (H,)
    cpu::Matrix wq;               // (nh*d, H)
    cpu::Matrix wk;               // (nkv*d, H)
    cpu::Matrix wv;               // (nkv*d, H)
    cpu::Matrix wo;               // (H, nh*d)
    const TensorInfo* bq = nullptr;      // (nh*d,)  qkv_bias
    const TensorInfo* bk = nullptr;      // (nkv*d,)
    const TensorInfo* bv = nullptr;      // (nkv*d,)
    const TensorInfo* q_norm = nullptr;  // (d,)     qk_norm
    const TensorInfo* k_norm = nullptr;  // (d,)
    const TensorInfo* ffn_norm;          // (H,)
    cpu::Matrix w_gate;                  // (I, H)   dense FFN (bind_ffn's default)
    cpu::Matrix w_up;                    // (I, H)
    cpu::Matrix w_down;                  // (H, I)
  };
  DenseOptions opts_;
  const TensorInfo* embed_ = nullptr;  // (V, H)
  const TensorInfo* final_norm_ = nullptr;
  cpu::Matrix lm_head_;  // (V, H); the embedding when tied
  std::vector<Layer> layers_;
  RopeTable rope_;
};

// Hands a copy of backend rows [rows, cols] to `dump` under `name` (no-op without a dump callback).
void emit_dump(Backend& be, const DumpFn* dump, const std::string& name, const float* data, int64_t rows,
               int64_t cols);

}  // namespace infer::models
