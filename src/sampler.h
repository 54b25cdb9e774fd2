// sampler.h — token sampling: penalties, temperature, top-k, top-p, min-p, seeded RNG.
// Order follows HF's logits processors: repetition penalty, presence/frequency penalties, temperature,
// top-k, top-p, min-p; then a draw from the renormalised distribution (or argmax when temperature <= 0).
#pragma once
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "infer/infer.h"

namespace infer {

class Sampler {
 public:
  explicit Sampler(const infer_sampler_params& p);
  void accept(int32_t token, bool is_prompt);
  void reset();
  int32_t sample(const float* logits, int32_t n_vocab);
  // Whether a repetition/presence/frequency penalty is on (they need the host logits).
  bool has_penalties() const;
  // The draw sample() makes when the temperature is above 0, as a uniform u in [0, 1) (sample() uses u × the kept
  // mass): for a device sampler that must pick the same token; advances the RNG as sample() would.
  double draw_uniform();
  const infer_sampler_params& params() const { return p_; }

 private:
  infer_sampler_params p_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int32_t> counts_;  // generated tokens: occurrences (presence/frequency)
  std::unordered_map<int32_t, bool> seen_;       // prompt + generated (repetition penalty)
  std::vector<float> work_;
  std::vector<int32_t> idx_;
};

// Index of the largest value (first on ties, like torch.argmax).
int32_t argmax(const float* v, int32_t n);

}  // namespace infer
