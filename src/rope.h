// rope.h — rotary position embedding frequencies as HF transformers computes them
// (modeling_rope_utils: default, linear, yarn, llama3), in fp32 like torch.
#pragma once
#include <cstdint>
#include <vector>

#include "hf_config.h"

namespace infer {

struct RopeTable {
  std::vector<float> inv_freq;  // (dim/2,)
  float attention_scaling = 1.0f;  // multiplies cos and sin (yarn)
  // cos/sin of angle pos * inv_freq[i] (fp32 product, as torch), scaled by attention_scaling. (dim/2,) each.
  void angles(int64_t pos, float* cos_out, float* sin_out) const;
};

// dim: rotary dimensions (head_dim for Qwen3); max_pos: config.max_position_embeddings.
RopeTable make_rope_table(int64_t dim, double base, const RopeScaling& s, int64_t max_pos);

}  // namespace infer
