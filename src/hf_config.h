// hf_config.h — config.json and generation_config.json → typed structs, with HF's defaults.
// Accepts both rope_theta/rope_scaling (4.x) and rope_parameters (v5), rope_scaling.type and .rope_type.
// Errors (infer::Error INFER_ERR_FORMAT/IO/UNSUPPORTED) name the file and the field.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace infer {

struct RopeScaling {
  std::string type = "default";  // default | yarn | linear | llama3 | dynamic
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 0.0, mscale_all_dim = 0.0;  // 0 = not set
  double attention_factor = 0.0;              // 0 = not set
  bool truncate = true;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
};

struct ModelConfig {
  std::string model_type;  // "qwen3", …
  std::string dir;         // the model directory (for messages)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // explicit, or hidden/heads if absent
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  bool random_weights = false;  // "infer_random_weights": true marks tiny test/demo models
  std::string raw_json;         // the whole config.json, for per-architecture extras
};

struct GenerationConfig {
  bool present = false;
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
};

// Names of the architectures this build can run (for the unknown-model_type error).
const std::vector<std::string>& supported_model_types();

// Reads DIR/config.json. Throws if absent/malformed, if model_type is not supported (listing those that are),
// or if a required field is missing or not positive.
ModelConfig load_model_config(const std::string& dir);
ModelConfig parse_model_config(const std::string& json_text, const std::string& file_for_messages);
// Reads DIR/generation_config.json if present (present=false otherwise); throws if malformed.
GenerationConfig load_generation_config(const std::string& dir);
GenerationConfig parse_generation_config(const std::string& json_text, const std::string& file_for_messages);

}  // namespace infer
