// fuzz_hf_config.cpp — the same text as config.json and as generation_config.json (parse_model_config,
// parse_generation_config). An accepted config must satisfy what the loader relies on (positive sizes,
// heads that divide, a known model_type); an accepted generation config must hold sampling values in range.
#include <cmath>

#include "fuzz_common.h"
#include "hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = infer::fuzz::as_string(data, size);
  infer::fuzz::expect_handled([&] {
    const infer::ModelConfig c = infer::parse_model_config(text, "config.json");
    if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 ||
        c.num_key_value_heads <= 0 || c.head_dim <= 0)
      infer::fuzz::finding("accepted config.json with a non-positive size");
    if (!std::isfinite(c.rms_norm_eps) || !(c.rms_norm_eps > 0) || !std::isfinite(c.rope_theta) || !(c.rope_theta > 0))
      infer::fuzz::finding("accepted config.json with a non-finite or non-positive rms_norm_eps / rope_theta");
    if (c.num_attention_heads % c.num_key_value_heads != 0)
      infer::fuzz::finding("accepted config.json whose attention heads are not a multiple of the KV heads");
  });
  infer::fuzz::expect_handled([&] {
    const infer::GenerationConfig g = infer::parse_generation_config(text, "generation_config.json");
    if (!(g.temperature >= 0) || g.top_k < 0 || !(g.top_p >= 0 && g.top_p <= 1) || !(g.min_p >= 0 && g.min_p <= 1) ||
        !(g.repetition_penalty > 0))
      infer::fuzz::finding("accepted generation_config.json with a sampling value out of range");
  });
  return 0;
}
