// fp8_weights.h — binding FP8 (float8_e4m3fn) weights with their 128×128 block scales (`<name>_scale_inv`), as
// DeepSeek-V3/R1 and Qwen3-*-FP8 checkpoints store them (model-spec.md §6). Used by Transformer::matrix(); the
// kernels are in cpu/ops_fp8.h. Every mismatch fails at load, naming the tensor or config field.
#pragma once
#include <cstdint>
#include <string>

#include "cpu/ops.h"
#include "hf_config.h"
#include "safetensors.h"

namespace infer::models {

// The scale block side from config.json's quantization_config: 128 when it says quant_method "fp8" with
// weight_block_size [128, 128] (or when there is no quantization_config: DeepSeek's convention); throws
// INFER_ERR_UNSUPPORTED naming the field for another method, format or block size.
int64_t fp8_block_size(const ModelConfig& c);

// The cpu::Matrix of FP8 weight `t` (named `name`, expected [rows, cols]) with its scale tensor name + "_scale_inv":
// present (else INFER_ERR_FORMAT), F32/BF16/F16 (else INFER_ERR_UNSUPPORTED), shaped [ceil(rows/block),
// ceil(cols/block)] (else INFER_ERR_FORMAT with both shapes). *scale_name receives the scale's tensor name.
cpu::Matrix bind_fp8(const SafeTensors& st, const TensorInfo& t, const std::string& name, int64_t rows, int64_t cols,
                     int64_t block, std::string* scale_name);

}  // namespace infer::models
