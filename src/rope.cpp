// rope.cpp — see rope.h. Follows transformers 4.57 modeling_rope_utils.py; model-spec.md §3.2 has the math.
#include "rope.h"

#include <algorithm>
#include <cmath>

#include "common.h"

namespace infer {

void RopeTable::angles(int64_t pos, float* c, float* s) const {
  const float p = float(pos);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float a = p * inv_freq[i];  // fp32 product, as torch's matmul of positions and inv_freq
    c[i] = float(std::cos(double(a))) * attention_scaling;
    s[i] = float(std::sin(double(a))) * attention_scaling;
  }
}

RopeTable make_rope_table(int64_t dim, double base, const RopeScaling& sc, int64_t max_pos) {
  RopeTable t;
  const int64_t half = dim / 2;
  std::vector<float> pos_freqs(half);
  for (int64_t j = 0; j < half; ++j) pos_freqs[j] = std::pow(float(base), float(2 * j) / float(dim));
  t.inv_freq.resize(half);
  for (int64_t j = 0; j < half; ++j) t.inv_freq[j] = 1.0f / pos_freqs[j];

  if (sc.type == "default" || sc.type.empty()) return t;
  if (sc.type == "linear") {
    for (auto& f : t.inv_freq) f = f / float(sc.factor);
    return t;
  }
  if (sc.type == "yarn") {
    // transformers 4.57.1 (the pinned version) uses rope_scaling.factor as given; 4.52 replaced it by
    // max_position_embeddings / original_max_position_embeddings (docs/fixtures.md, "version trap").
    const double factor = sc.factor;
    const double orig = sc.original_max_position_embeddings > 0 ? double(sc.original_max_position_embeddings)
                                                                 : double(max_pos);
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    if (sc.attention_factor > 0) t.attention_scaling = float(sc.attention_factor);
    else if (sc.mscale > 0 && sc.mscale_all_dim > 0)
      t.attention_scaling = float(get_mscale(factor, sc.mscale) / get_mscale(factor, sc.mscale_all_dim));
    else t.attention_scaling = float(get_mscale(factor, 1.0));
    auto cd = [&](double rot) { return double(dim) * std::log(orig / (rot * 2 * M_PI)) / (2 * std::log(base)); };
    double low = cd(sc.beta_fast), high = cd(sc.beta_slow);
    if (sc.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t j = 0; j < half; ++j) {
      const float ramp = std::clamp((float(j) - float(low)) / (float(high) - float(low)), 0.0f, 1.0f);
      const float extrap = 1.0f / pos_freqs[j];
      const float interp = 1.0f / (float(factor) * pos_freqs[j]);
      const float extrap_factor = 1.0f - ramp;
      t.inv_freq[j] = interp * (1.0f - extrap_factor) + extrap * extrap_factor;
    }
    return t;
  }
  if (sc.type == "llama3") {
    // fp32 throughout, in torch's order of operations (transformers _compute_llama3_parameters on a float32
    // inv_freq: Python scalars join fp32 tensor ops as fp32, and `2π / t` is evaluated as reciprocal(t) · 2π).
    const float factor = float(sc.factor), lf = float(sc.low_freq_factor);
    const float hf_minus_lf = float(sc.high_freq_factor - sc.low_freq_factor);  // a Python scalar expression
    const float old_ctx = float(sc.original_max_position_embeddings);
    const float low_wavelen = float(double(sc.original_max_position_embeddings) / sc.low_freq_factor);
    const float high_wavelen = float(double(sc.original_max_position_embeddings) / sc.high_freq_factor);
    for (int64_t j = 0; j < half; ++j) {
      const float f = t.inv_freq[j];
      const float wavelen = (1.0f / f) * float(2 * M_PI);
      const float scaled = wavelen > low_wavelen ? f / factor : f;  // inv_freq_llama
      const float smooth = ((1.0f / wavelen) * old_ctx - lf) / hf_minus_lf;  // scalar / tensor = reciprocal · scalar
      const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      t.inv_freq[j] = medium ? smoothed : scaled;
    }
    return t;
  }
  fail(INFER_ERR_UNSUPPORTED, "config.json: rope_scaling type '" + sc.type + "' is not supported (default, linear, yarn, llama3)");
}

}  // namespace infer
