// models.h — factories of the per-architecture models (one .cpp each in src/models/).
#pragma once
#include <memory>

#include "model.h"

namespace infer::models {

std::unique_ptr<Transformer> create_qwen3(const ModelConfig& cfg);

}  // namespace infer::models
