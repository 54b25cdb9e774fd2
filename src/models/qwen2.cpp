// qwen2.cpp — Qwen2 (model_type "qwen2"; DeepSeek-R1-Distill-Qwen-1.5B … 32B, Qwen2.5): the dense GQA decoder with
// a bias on q/k/v (never on o_proj or the MLP), no QK-Norm, NeoX RoPE, head_dim = hidden_size / num_attention_heads
// (transformers Qwen2Attention).
#include "common.h"
#include "models/arch_config.h"
#include "models/dense.h"
#include "models/models.h"

namespace infer::models {

std::unique_ptr<Transformer> create_qwen2(const ModelConfig& cfg) {
  const ArchConfig a(cfg);
  // Sliding-window layers (use_sliding_window=true, layers >= max_window_layers) are off in every R1-Distill and
  // Qwen2.5 release; refuse them rather than run full attention where the checkpoint expects a window.
  if (a.get_bool("use_sliding_window", false))
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": qwen2 with use_sliding_window=true is not supported");
  DenseOptions o;
  o.qkv_bias = true;
  return std::make_unique<DenseDecoder>(cfg, o);
}

}  // namespace infer::models
