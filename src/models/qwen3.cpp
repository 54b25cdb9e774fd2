// qwen3.cpp — Qwen3 dense (model_type "qwen3"): the dense GQA decoder with per-head QK-Norm before NeoX RoPE,
// no biases, tied or untied lm_head (model-spec.md §1.1, §2.1, §3.1–3.2).
#include "models/dense.h"
#include "models/models.h"

namespace infer::models {

std::unique_ptr<Transformer> create_qwen3(const ModelConfig& cfg) {
  DenseOptions o;
  o.qk_norm = true;
  return std::make_unique<DenseDecoder>(cfg, o);
}

}  // namespace infer::models
