// moe.cpp — see moe.h.
#include "models/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common.h"
#include "models/dense.h"

namespace infer::models {

int64_t moe_scratch_floats(const Router& r, const MoeWeights& w, int64_t H, int64_t n_batch) {
  const int64_t I = std::max(w.expert_width, w.has_shared ? w.shared_width : 0);
  return n_batch * (r.n_experts + 2 * r.top_k) +
         std::max(Backend::moe_expert_scratch_floats(n_batch, H, w.expert_width), n_batch * (H + 2 * I));
}

void moe_forward(Backend& be, const Router& r, const MoeWeights& w, const float* xn, int64_t ldx, float* out,
                 int64_t ldo, int64_t T, int64_t H, float* scratch, const std::string& pfx, const DumpFn* dump) {
  const int64_t E = r.n_experts, k = r.top_k;
  const int64_t I = std::max(w.expert_width, w.has_shared ? w.shared_width : 0);
  float* logits = scratch;                                 // (T, E)
  int32_t* ids = reinterpret_cast<int32_t*>(logits + T * E);  // (T, k) in backend memory
  float* wts = logits + T * E + T * k;                     // (T, k)
  float* xs = wts + T * k;                                 // moe_experts' scratch, then the shared expert's
  float* g = xs;                                           // (T, 2I): gate ‖ up
  float* y = g + 2 * T * I;                                // (T, H)

  // Router GEMM (fp32 activations × bf16 weights, fp32 accumulation), then routing on the backend.
  be.matmul(xn, ldx, w.router, logits, E, T);
  be.moe_route(r, logits, E, w.score_bias.empty() ? nullptr : w.score_bias.data(), T, ids, wts);
  if (dump) {
    std::vector<float> host(static_cast<size_t>(T * E));
    be.to_host(logits, host.data(), T * E);
    (*dump)(pfx + "router_logits", host.data(), T, E);
    std::vector<int32_t> hid(static_cast<size_t>(T * k));
    be.to_host(reinterpret_cast<const float*>(ids), reinterpret_cast<float*>(hid.data()), T * k);
    std::vector<float> fid(hid.begin(), hid.end());
    (*dump)(pfx + "router_topk", fid.data(), T, k);
    std::vector<float> hw(static_cast<size_t>(T * k));
    be.to_host(wts, hw.data(), T * k);
    (*dump)(pfx + "router_weights", hw.data(), T, k);
  }
  be.moe_experts(xn, ldx, w.experts.data(), E, w.expert_width, ids, wts, T, k, out, ldo, H, xs);
  if (w.has_shared) {
    const int64_t Is = w.shared_width;
    be.matmul_concat(xn, ldx, {&w.shared.gate, &w.shared.up}, g, 2 * Is, T);
    be.swiglu_matmul(g, 2 * Is, Is, w.shared.down, y, H, T);
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
