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

 protected:
  void bind_weights(const LoadOptions& opts) override;

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
    cpu::Matrix w_gate;                  // (I, H)
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

}  // namespace infer::models
