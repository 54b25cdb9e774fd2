// moe.h — the routed-expert FFN shared by Qwen3-MoE and DeepSeek-V3: the router GEMM, then the backend's routing
// (Backend::moe_route: expert ids and weights stay in backend memory) and its grouped expert op
// (Backend::moe_experts: the CPU runs each expert that received tokens on its rows as one matmul batch and
// scatter-adds the weighted output back; the CUDA backend routes, permutes and runs the experts on the device).
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

// The router and expert types and the host routing live with the Backend's MoE ops (backend.h).
using Router = MoeRouter;
using ExpertWeights = MoeExpert;
using infer::route_tokens;

struct MoeWeights {
  cpu::Matrix router;                       // (E, H)
  std::vector<float> score_bias;            // (E,) DeepSeek e_score_correction_bias (fp32 on the host); else empty
  std::vector<ExpertWeights> experts;       // E routed experts, each of width moe_intermediate_size
  bool has_shared = false;
  ExpertWeights shared;                     // DeepSeek: one SwiGLU of width moe_intermediate_size × n_shared_experts
  int64_t expert_width = 0, shared_width = 0;
};

// Backend scratch one MoE layer needs for up to n_batch tokens (floats): logits, ids and weights, expert scratch.
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
