// moe.cpp — see moe.h.
#include "models/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common.h"
#include "models/dense.h"

namespace infer::models {

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

void route_tokens(const Router& r, const float* logits, int64_t ld, const float* score_bias, int64_t T, int32_t* ids,
                  float* weights) {
  const int64_t E = r.n_experts, k = r.top_k;
  std::vector<float> p(static_cast<size_t>(E)), sc(static_cast<size_t>(E)), gscore(static_cast<size_t>(r.n_group));
  std::vector<int32_t> idx, groups(static_cast<size_t>(r.n_group));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * ld;
    int32_t* id = ids + t * k;
    float* w = weights + t * k;
    if (r.scoring == Router::Scoring::Softmax) {
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
      if (r.scoring == Router::Scoring::Sigmoid) s += 1e-20f;
      for (int64_t j = 0; j < k; ++j) w[j] /= s;
    }
    if (r.routed_scaling_factor != 1.0f)
      for (int64_t j = 0; j < k; ++j) w[j] *= r.routed_scaling_factor;
  }
}

int64_t moe_scratch_floats(const Router& r, const MoeWeights& w, int64_t H, int64_t n_batch) {
  const int64_t I = std::max(w.expert_width, w.has_shared ? w.shared_width : 0);
  return n_batch * (r.n_experts + 2 * H + 2 * I);
}

void moe_forward(Backend& be, const Router& r, const MoeWeights& w, const float* xn, int64_t ldx, float* out,
                 int64_t ldo, int64_t T, int64_t H, float* scratch, const std::string& pfx, const DumpFn* dump) {
  const int64_t E = r.n_experts, k = r.top_k;
  const int64_t I = std::max(w.expert_width, w.has_shared ? w.shared_width : 0);
  float* logits = scratch;       // (T, E)
  float* xg = logits + T * E;    // (n_e, H) rows routed to one expert
  float* g = xg + T * H;         // (n_e, 2I) gate ‖ up
  float* y = g + 2 * T * I;      // (n_e, H); g: (n_e, 2I) gate ‖ up

  // Router GEMM (fp32 activations × bf16 weights, fp32 accumulation), then routing on the host.
  be.matmul(xn, ldx, w.router, logits, E, T);
  std::vector<float> host(static_cast<size_t>(T * E));
  be.to_host(logits, host.data(), T * E);
  std::vector<int32_t> ids(static_cast<size_t>(T * k));
  std::vector<float> wts(static_cast<size_t>(T * k));
  route_tokens(r, host.data(), E, w.score_bias.empty() ? nullptr : w.score_bias.data(), T, ids.data(), wts.data());
  if (dump) {
    (*dump)(pfx + "router_logits", host.data(), T, E);
    std::vector<float> fid(ids.begin(), ids.end());
    (*dump)(pfx + "router_topk", fid.data(), T, k);
    (*dump)(pfx + "router_weights", wts.data(), T, k);
  }

  // Rows per expert, experts in ascending order, tokens ascending within an expert.
  std::vector<int64_t> count(size_t(E) + 1, 0);
  for (int32_t e : ids) count[size_t(e) + 1]++;
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
  for (int64_t t = 0; t < T; ++t) be.from_host(zeros.data(), out + t * ldo, H);
  const int64_t Ie = w.expert_width;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t b = count[size_t(e)], n = count[size_t(e) + 1] - b;
    if (n == 0) continue;
    const ExpertWeights& x = w.experts[size_t(e)];
    be.gather_rows(xn, ldx, rows.data() + b, n, xg, H, H);
    be.matmul_concat(xg, H, {&x.gate, &x.up}, g, 2 * Ie, n);  // gate ‖ up (g and u are contiguous: n·2Ie fits)
    be.swiglu(g, 2 * Ie, g + Ie, 2 * Ie, g, 2 * Ie, n, Ie);
    be.matmul(g, 2 * Ie, x.down, y, H, n);
    be.scatter_add_rows(out, ldo, y, H, rows.data() + b, rw.data() + b, n, H);
  }
  if (w.has_shared) {
    const int64_t Is = w.shared_width;
    be.matmul_concat(xn, ldx, {&w.shared.gate, &w.shared.up}, g, 2 * Is, T);
    be.swiglu(g, 2 * Is, g + Is, 2 * Is, g, 2 * Is, T, Is);
    be.matmul(g, 2 * Is, w.shared.down, y, H, T);
    emit_dump(be, dump, pfx + "shared_out", y, T, H);
    be.add(out, ldo, y, H, T, H);
  }
}

void check_no_extra_experts(const SafeTensors& weights, const std::string& mlp_prefix, int64_t n_experts,
                            const std::string& field) {
  const std::string p = mlp_prefix + "experts.";
  for (auto it = weights.tensors().lower_bound(p); it != weights.tensors().end(); ++it) {
    const std::string& name = it->first;
    if (name.compare(0, p.size(), p) != 0) break;
    const size_t dot = name.find('.', p.size());
    const std::string num = name.substr(p.size(), dot == std::string::npos ? std::string::npos : dot - p.size());
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos || num.size() > 9) continue;
    const int64_t e = std::stoll(num);
    if (e >= n_experts)
      fail(INFER_ERR_FORMAT, "tensor " + name + " in " + it->second.file + " is expert " + num + " but config.json " +
                                 field + "=" + std::to_string(n_experts) + ": the checkpoint and config.json disagree "
                                 "on the number of experts");
  }
}

}  // namespace infer::models
