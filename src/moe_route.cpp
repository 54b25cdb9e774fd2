// moe_route.cpp — MoE routing on the host (route_tokens) and the Backend's default MoE ops, which run it and the
// per-expert loop with the backend's own row ops (the CPU backend's MoE; backend.h).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend.h"
#include "common.h"

namespace infer {

namespace {

// Indices of the k largest values of v[0..n) (best first; ties to the lower index, as a stable sort).
void top_k(const float* v, int64_t n, int64_t k, int32_t* out, std::vector<int32_t>& idx) {
  idx.resize(size_t(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy(idx.begin(), idx.begin() + k, out);
}

}  // namespace

void route_tokens(const MoeRouter& r, const float* logits, int64_t ld, const float* score_bias, int64_t T,
                  int32_t* ids, float* weights) {
  const int64_t E = r.n_experts, k = r.top_k;
  std::vector<float> p(static_cast<size_t>(E)), sc(static_cast<size_t>(E)), gscore(static_cast<size_t>(r.n_group));
  std::vector<int32_t> idx, groups(static_cast<size_t>(r.n_group));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * ld;
    int32_t* id = ids + t * k;
    float* w = weights + t * k;
    if (r.scoring == MoeRouter::Scoring::Softmax) {
      // softmax over all experts (fp32), top-k, optional renormalisation (HF Qwen3MoeSparseMoeBlock).
      float mx = l[0];
      for (int64_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
      float sum = 0.f;
      for (int64_t e = 0; e < E; ++e) sum += (p[e] = std::exp(l[e] - mx));
      for (int64_t e = 0; e < E; ++e) p[e] /= sum;
      top_k(p.data(), E, k, id, idx);
      for (int64_t j = 0; j < k; ++j) w[j] = p[id[j]];
    } else {
      // sigmoid scores; the bias only chooses (HF DeepseekV3TopkRouter, topk_method noaux_tc).
      for (int64_t e = 0; e < E; ++e) {
        p[e] = 1.0f / (1.0f + std::exp(-l[e]));
        sc[e] = score_bias ? p[e] + score_bias[e] : p[e];
      }
      if (r.n_group > 1 && r.topk_group < r.n_group) {
        const int64_t gsize = E / r.n_group;
        for (int64_t g = 0; g < r.n_group; ++g) {
          const float* s = sc.data() + g * gsize;
          float a = -INFINITY, b = -INFINITY;  // the group's two best scores
          for (int64_t i = 0; i < gsize; ++i) {
            if (s[i] > a) {
              b = a;
              a = s[i];
            } else if (s[i] > b) {
              b = s[i];
            }
          }
          gscore[g] = gsize >= 2 ? a + b : a;
        }
        top_k(gscore.data(), r.n_group, r.topk_group, groups.data(), idx);
        std::vector<bool> keep(static_cast<size_t>(r.n_group), false);
        for (int64_t g = 0; g < r.topk_group; ++g) keep[size_t(groups[g])] = true;
        // Experts of excluded groups cannot be chosen (DS-REF masks with -inf; HF with 0.0, which differs only if
        // every allowed score were <= 0).
        for (int64_t e = 0; e < E; ++e)
          if (!keep[size_t(e / gsize)]) sc[e] = -INFINITY;
      }
      top_k(sc.data(), E, k, id, idx);
      for (int64_t j = 0; j < k; ++j) w[j] = p[id[j]];
    }
    if (r.norm_topk_prob) {
      float s = 0.f;
      for (int64_t j = 0; j < k; ++j) s += w[j];
      if (r.scoring == MoeRouter::Scoring::Sigmoid) s += 1e-20f;
      for (int64_t j = 0; j < k; ++j) w[j] /= s;
    }
    if (r.routed_scaling_factor != 1.0f)
      for (int64_t j = 0; j < k; ++j) w[j] *= r.routed_scaling_factor;
  }
}

void Backend::moe_route(const MoeRouter& r, const float* logits, int64_t ld, const float* score_bias, int64_t T,
                        int32_t* ids, float* weights) {
  const int64_t E = r.n_experts, k = r.top_k;
  std::vector<float> host(static_cast<size_t>(T * E));
  for (int64_t t = 0; t < T; ++t) to_host(logits + t * ld, host.data() + t * E, E);
  std::vector<int32_t> hid(static_cast<size_t>(T * k));
  std::vector<float> hw(static_cast<size_t>(T * k));
  route_tokens(r, host.data(), E, score_bias, T, hid.data(), hw.data());
  static_assert(sizeof(int32_t) == sizeof(float));
  from_host(reinterpret_cast<const float*>(hid.data()), reinterpret_cast<float*>(ids), T * k);
  from_host(hw.data(), weights, T * k);
}

void Backend::moe_experts(const float* x, int64_t ldx, const MoeExpert* experts, int64_t n_experts, int64_t I,
                          const int32_t* ids_dev, const float* weights_dev, int64_t T, int64_t k, float* out,
                          int64_t ldo, int64_t H, float* scratch) {
  const int64_t E = n_experts;
  float* xg = scratch;   // (n_e, H) rows routed to one expert
  float* g = xg + T * H; // (n_e, I)
  float* y = g + 2 * T * I;  // (n_e, H); g: (n_e, 2I) gate ‖ up
  std::vector<int32_t> ids(static_cast<size_t>(T * k));
  std::vector<float> wts(static_cast<size_t>(T * k));
  to_host(reinterpret_cast<const float*>(ids_dev), reinterpret_cast<float*>(ids.data()), T * k);
  to_host(weights_dev, wts.data(), T * k);

  // Rows per expert, experts in ascending order, tokens ascending within an expert.
  std::vector<int64_t> count(size_t(E) + 1, 0);
  for (int32_t e : ids) {
    if (e < 0 || e >= E) fail(INFER_ERR_INTERNAL, "moe_experts: expert id " + std::to_string(e) + " out of range");
    count[size_t(e) + 1]++;
  }
  for (int64_t e = 0; e < E; ++e) count[size_t(e) + 1] += count[size_t(e)];
  std::vector<int32_t> rows(static_cast<size_t>(T * k));
  std::vector<float> rw(static_cast<size_t>(T * k));
  {
    std::vector<int64_t> at(count.begin(), count.end() - 1);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = ids[size_t(t * k + j)];
        rows[size_t(at[size_t(e)])] = int32_t(t);
        rw[size_t(at[size_t(e)]++)] = wts[size_t(t * k + j)];
      }
  }

  // out = 0, then + w · expert(x) per expert in ascending order (HF's index_add_ sequence).
  const std::vector<float> zeros(static_cast<size_t>(H), 0.f);
  for (int64_t t = 0; t < T; ++t) from_host(zeros.data(), out + t * ldo, H);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t b = count[size_t(e)], n = count[size_t(e) + 1] - b;
    if (n == 0) continue;
    const MoeExpert& x_e = experts[size_t(e)];
    gather_rows(x, ldx, rows.data() + b, n, xg, H, H);
    matmul_concat(xg, H, {&x_e.gate, &x_e.up}, g, 2 * I, n);  // gate ‖ up (g and u are contiguous: n·2I fits)
    swiglu_matmul(g, 2 * I, I, x_e.down, y, H, n);
    scatter_add_rows(out, ldo, y, H, rows.data() + b, rw.data() + b, n, H);
  }
}

}  // namespace infer
