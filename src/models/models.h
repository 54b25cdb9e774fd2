// models.h — factories of the per-architecture models (one .cpp each in src/models/).
#pragma once
#include <memory>

#include "model.h"

namespace infer::models {

std::unique_ptr<Transformer> create_qwen3(const ModelConfig& cfg);
std::unique_ptr<Transformer> create_llama(const ModelConfig& cfg);
std::unique_ptr<Transformer> create_qwen2(const ModelConfig& cfg);
std::unique_ptr<Transformer> create_qwen3_moe(const ModelConfig& cfg);
std::unique_ptr<Transformer> create_deepseek_v3(const ModelConfig& cfg);

}  // namespace infer::models
