// sampler.cpp — see sampler.h.
#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace infer {

int32_t argmax(const float* v, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

Sampler::Sampler(const infer_sampler_params& p) : p_(p), rng_(p.seed) {}

void Sampler::accept(int32_t token, bool is_prompt) {
  seen_[token] = true;
  if (!is_prompt) counts_[token]++;
}

void Sampler::reset() {
  counts_.clear();
  seen_.clear();
  rng_.seed(p_.seed);
}

bool Sampler::has_penalties() const {
  return (p_.repetition_penalty > 0 && p_.repetition_penalty != 1.0f) || p_.presence_penalty != 0 ||
         p_.frequency_penalty != 0;
}

double Sampler::draw_uniform() {
  // std::uniform_real_distribution<double>(0, mass)(rng_) is mass × this canonical draw (libstdc++ and libc++).
  return std::generate_canonical<double, std::numeric_limits<double>::digits>(rng_);
}

int32_t Sampler::sample(const float* logits, int32_t n) {
  work_.assign(logits, logits + n);
  float* l = work_.data();
  if (p_.repetition_penalty > 0 && p_.repetition_penalty != 1.0f)
    for (const auto& [tok, _] : seen_)
      if (tok >= 0 && tok < n) l[tok] = l[tok] > 0 ? l[tok] / p_.repetition_penalty : l[tok] * p_.repetition_penalty;
  if (p_.presence_penalty != 0 || p_.frequency_penalty != 0)
    for (const auto& [tok, cnt] : counts_)
      if (tok >= 0 && tok < n) l[tok] -= p_.presence_penalty + p_.frequency_penalty * float(cnt);
  if (p_.temperature <= 0) return argmax(l, n);

  // Candidates sorted by logit (only the top k when top-k is on).
  idx_.resize(n);
  std::iota(idx_.begin(), idx_.end(), 0);
  int32_t k = n;
  if (p_.top_k > 0 && p_.top_k < n) k = p_.top_k;
  auto cmp = [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
  if (k < n) {
    std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), cmp);
  } else {
    std::sort(idx_.begin(), idx_.end(), cmp);
  }
  idx_.resize(k);
  // Softmax over the candidates at temperature T.
  std::vector<double> pr(k);
  const double mx = l[idx_[0]] / p_.temperature;
  double sum = 0;
  for (int32_t i = 0; i < k; ++i) sum += pr[i] = std::exp(double(l[idx_[i]]) / p_.temperature - mx);
  for (auto& v : pr) v /= sum;
  // top-p: keep the smallest prefix whose mass reaches top_p (at least one token).
  int32_t keep = k;
  if (p_.top_p > 0 && p_.top_p < 1) {
    double cum = 0;
    for (int32_t i = 0; i < k; ++i) {
      cum += pr[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  // min-p: drop tokens below min_p × the top probability.
  if (p_.min_p > 0) {
    const double thr = p_.min_p * pr[0];
    int32_t m = 1;
    while (m < keep && pr[m] >= thr) ++m;
    keep = m;
  }
  double mass = 0;
  for (int32_t i = 0; i < keep; ++i) mass += pr[i];
  std::uniform_real_distribution<double> U(0.0, mass);
  const double r = U(rng_);
  double cum = 0;
  for (int32_t i = 0; i < keep; ++i) {
    cum += pr[i];
    if (r < cum) return idx_[i];
  }
  return idx_[keep - 1];
}

}  // namespace infer
