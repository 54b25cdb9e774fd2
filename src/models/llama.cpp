// llama.cpp — Llama (model_type "llama"; DeepSeek-R1-Distill-Llama-8B/70B, Llama 3.x): the dense GQA decoder with
// no biases and no QK-Norm, NeoX RoPE (rope_scaling "llama3" for Llama 3.1+, see rope.cpp), tied or untied lm_head.
// Same block as Qwen3 minus q_norm/k_norm (transformers LlamaDecoderLayer).
#include "common.h"
#include "models/arch_config.h"
#include "models/dense.h"
#include "models/models.h"

namespace infer::models {

std::unique_ptr<Transformer> create_llama(const ModelConfig& cfg) {
  // No Llama 3 / R1-Distill checkpoint has biases; refuse them rather than silently ignoring the tensors.
  const ArchConfig a(cfg);
  if (cfg.attention_bias)
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": llama with attention_bias=true (bias on q/k/v/o) is not supported");
  if (a.get_bool("mlp_bias", false))
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": llama with mlp_bias=true is not supported");
  return std::make_unique<DenseDecoder>(cfg, DenseOptions{});
}

}  // namespace infer::models
