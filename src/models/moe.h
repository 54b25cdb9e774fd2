// moe.h — the routed-expert FFN shared by Qwen3-MoE and DeepSeek-V3: host-side routing (router logits are copied to
// the host, which picks the experts) and expert execution grouped by expert: for each expert that received tokens,
// gather its rows, run the SwiGLU expert on them as one matmul batch, and scatter-add the weighted output back.
// No expert runs for a token that was not routed to it. model-spec.md §3.4 (Qwen3-MoE) and §3.5 (DeepSeek-V3).
//
// Numerics follow HF transformers as the references are computed (float32 on the bf16 weights): router GEMM in
// fp32, softmax / sigmoid in fp32, the routed sum accumulated in fp32 in ascending expert order starting from
// zero (HF loops over experts in index order and index_add_s `expert(x) * w`), then the shared expert added.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend.h"
#include "model.h"

namespace infer::models {

struct Router {
  enum class Scoring { Softmax, Sigmoid };
  Scoring scoring = Scoring::Softmax;
  int64_t n_experts = 0;
  int64_t top_k = 0;
  bool norm_topk_prob = false;
  // Sigmoid (DeepSeek noaux_tc): experts in n_group groups; a token may use only the topk_group groups with the
  // best sum of their two best (bias-corrected) scores. n_group = 1 disables the restriction.
  int64_t n_group = 1, topk_group = 1;
  float routed_scaling_factor = 1.0f;  // multiplies the final weights (DeepSeek)
};

// Routes T tokens: logits [T, ld] (host, fp32), score_bias (E, host, fp32) or null → ids [T, top_k] (best first),
// weights [T, top_k]. Softmax: p = softmax(logits); top-k of p; renormalised when norm_topk_prob.
// Sigmoid: s = sigmoid(logits), chosen by s + bias within the allowed groups; weights from s (no bias), divided by
// (their sum + 1e-20) when norm_topk_prob, times routed_scaling_factor.
void route_tokens(const Router& r, const float* logits, int64_t ld, const float* score_bias, int64_t T, int32_t* ids,
                  float* weights);

struct ExpertWeights {
  cpu::Matrix gate;  // (I_e, H)
  cpu::Matrix up;    // (I_e, H)
  cpu::Matrix down;  // (H, I_e)
};

struct MoeWeights {
  cpu::Matrix router;                       // (E, H)
  std::vector<float> score_bias;            // (E,) DeepSeek e_score_correction_bias (fp32 on the host); else empty
  std::vector<ExpertWeights> experts;       // E routed experts, each of width moe_intermediate_size
  bool has_shared = false;
  ExpertWeights shared;                     // DeepSeek: one SwiGLU of width moe_intermediate_size × n_shared_experts
  int64_t expert_width = 0, shared_width = 0;
};

// Backend scratch one MoE layer needs for up to n_batch tokens (floats).
int64_t moe_scratch_floats(const Router& r, const MoeWeights& w, int64_t H, int64_t n_batch);

// out[T, H] = MoE(xn[T, H]) (out must not alias xn), using `scratch` (moe_scratch_floats). Dumps, under pfx:
// router_logits [T, E], router_topk [T, k] (expert ids as floats, best first), router_weights [T, k], and
// shared_out [T, H] when there is a shared expert.
void moe_forward(Backend& be, const Router& r, const MoeWeights& w, const float* xn, int64_t ldx, float* out,
                 int64_t ldo, int64_t T, int64_t H, float* scratch, const std::string& pfx, const DumpFn* dump);

// Fails (INFER_ERR_FORMAT, naming the tensor and `field`) when the checkpoint holds an expert of this layer
// ("model.layers.{l}.mlp.experts.{e}.") with e >= n_experts: config.json and the weights disagree on the expert
// count. (Fewer experts than configured fail as a missing tensor when bound.)
void check_no_extra_experts(const SafeTensors& weights, const std::string& mlp_prefix, int64_t n_experts,
                            const std::string& field);

}  // namespace infer::models
