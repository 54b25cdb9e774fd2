// backend.h — what a compute backend provides to the architecture code in src/models/.
//
// Model code is written once against this interface; each backend (CPU in src/cpu/backend_cpu.cpp, CUDA later)
// implements the ops. Conventions:
//   - activations are fp32 arrays in backend memory (host memory for the CPU, device memory for CUDA), allocated
//     with alloc(); row-major with an explicit leading dimension (`ld*`, in elements) where rows may be strided;
//   - weights are passed as host views of the checkpoint (cpu::Matrix / TensorInfo, PyTorch layout); a device
//     backend maps them to its own copies (uploaded once) by their host address;
//   - the KV cache is opaque (alloc_kv); its element type is the backend's choice;
//   - ops are enqueued in order; to_host() waits for them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "cpu/ops.h"
#include "rope.h"
#include "safetensors.h"

namespace infer {

// One sequence of a paged attention call (Backend::paged_attention): its n query rows start at row0 of q/out and sit at
// positions pos0 .. pos0 + n - 1; blocks is its block table (host memory), covering positions 0 .. pos0 + n - 1.
struct PagedSeq {
  int64_t row0 = 0, n = 0, pos0 = 0;
  const int32_t* blocks = nullptr;
};

// A MoE router's parameters (Qwen3-MoE: softmax; DeepSeek-V3: sigmoid with group-limited top-k).
struct MoeRouter {
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

// One SwiGLU expert.
struct MoeExpert {
  cpu::Matrix gate;  // (I, H)
  cpu::Matrix up;    // (I, H)
  cpu::Matrix down;  // (H, I)
};

// Routes T tokens on the host: logits [T, ld] (fp32), score_bias (E, fp32) or null → ids [T, top_k] (best first,
// ties to the lower expert index), weights [T, top_k]. Softmax: p = softmax(logits); top-k of p; renormalised when
// norm_topk_prob. Sigmoid: s = sigmoid(logits), chosen by s + bias within the allowed groups; weights from s (no
// bias), divided by (their sum + 1e-20) when norm_topk_prob, times routed_scaling_factor.
void route_tokens(const MoeRouter& r, const float* logits, int64_t ld, const float* score_bias, int64_t T,
                  int32_t* ids, float* weights);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory
  virtual float* alloc(int64_t n_floats) = 0;  // throws INFER_ERR_OUT_OF_MEMORY
  virtual void release(float* p) = 0;
  virtual void to_host(const float* src, float* dst, int64_t n) = 0;     // waits for queued work
  virtual void from_host(const float* src, float* dst, int64_t n) = 0;
  // KV cache of one layer for one of K or V: n_ctx rows of `width` values.
  virtual void* alloc_kv(int64_t n_ctx, int64_t width) = 0;
  virtual void release_kv(void* kv) = 0;
  virtual int64_t kv_bytes_per_value() const = 0;

  // ---- ops (T = rows/tokens in the batch)
  // out[t, :] = table[ids[t], :] (bf16/f16/f32 table; ids are host memory, already range-checked).
  virtual void embed(const TensorInfo& table, const int32_t* ids, int64_t T, float* out, int64_t ldo) = 0;
  // out[t] = x[t] / rms(x[t]) * w, rows of width n. x and out may alias.
  virtual void rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T, int64_t n,
                       float eps) = 0;
  // y[t, n] = sum_k x[t, k] W[n, k].
  virtual void matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) = 0;
  // The matrices' outputs side by side as one matmul (q/k/v, gate/up): y[t, off_i + n] = sum_k x[t, k] W_i[n, k],
  // off_i = the rows of the matrices before W_i (all have x's width). A backend may run it as one fused pass; by
  // default, one matmul per matrix.
  virtual void matmul_concat(const float* x, int64_t ldx, const std::vector<const cpu::Matrix*>& ws, float* y,
                             int64_t ldy, int64_t T) {
    int64_t off = 0;
    for (const cpu::Matrix* w : ws) {
      matmul(x, ldx, *w, y + off, ldy, T);
      off += w->rows;
    }
  }
  // Called once per weight group (as later passed to matmul / matmul_concat) when a model's state is created, so a
  // backend can lay the weights out for its kernels before the first step rather than during it. Default: nothing.
  virtual void prepare_matmul(const std::vector<const cpu::Matrix*>& ws) {}
  // y[t, :] += bias (bf16/f32 vector of y's width).
  virtual void add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) = 0;
  // For each row t (position pos0 + t) and head h of x[t, h*d : (h+1)*d]: optional per-head RMSNorm with weight
  // `norm` (d,), then NeoX RoPE over all d dims with the angles of `rope`.
  virtual void head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm,
                              float eps, int64_t pos0, const RopeTable& rope) = 0;
  // cache[pos0 + t, :] = src[t, :width].
  virtual void kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) = 0;
  // Causal GQA attention for query rows t at positions pos0 + t over cached keys 0..pos0+t:
  // out[t, h*d:(h+1)*d] = softmax(q_h · K_g^T * scale) V_g with g = h / (nh / nkv).
  virtual void attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out, int64_t ldo,
                         int64_t T, int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t d, float scale) = 0;
  // y = silu(g) * u, elementwise over rows of width n (y may alias g).
  virtual void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                      int64_t n) = 0;
  // The FFN's down projection of a gate ‖ up matmul's output: y = (silu(gu[:, :I]) ⊙ gu[:, I:2I]) W^T. gu may be
  // overwritten. A backend may fuse the two; by default, swiglu into gu's gate half, then matmul.
  virtual void swiglu_matmul(float* gu, int64_t ldgu, int64_t I, const cpu::Matrix& w, float* y, int64_t ldy,
                             int64_t T) {
    swiglu(gu, ldgu, gu + I, ldgu, gu, ldgu, T, I);
    matmul(gu, ldgu, w, y, ldy, T);
  }
  // x += y, rows of width n.
  virtual void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) = 0;
  // x += y, then out = rmsnorm(x) * w (a residual add and the next norm; out may alias y). A backend may fuse
  // the two passes; by default, add then rmsnorm.
  virtual void add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const TensorInfo& w, float* out,
                           int64_t ldo, int64_t T, int64_t n, float eps) {
    add(x, ldx, y, ldy, T, n);
    rmsnorm(x, ldx, w, out, ldo, T, n, eps);
  }

  // ---- Paged KV cache (continuous batching, src/server/). A cache made by alloc_kv(n_blocks · block_size, width) is
  // a pool of fixed-size blocks shared by several sequences: the token of a sequence at position p lives in row
  // blocks[p / block_size] · block_size + p % block_size, with `blocks` that sequence's block table (host memory).
  // cache[rows[t], :] = src[t, :width] for t < T (rows: host memory).
  virtual void kv_write_rows(void* cache, int64_t width, const int32_t* rows, const float* src, int64_t lds,
                             int64_t T) {
    unsupported("kv_write_rows");
  }
  // Causal GQA attention for several sequences at once, each over its own blocks: what attention() computes for
  // sequence s with query rows q[seqs[s].row0 .. + seqs[s].n) at positions seqs[s].pos0 + t, over the keys at
  // positions 0 .. pos0 + t in its blocks (already written with kv_write_rows).
  virtual void paged_attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out,
                               int64_t ldo, const PagedSeq* seqs, int64_t n_seqs, int64_t block_size, int64_t n_heads,
                               int64_t n_kv_heads, int64_t d, float scale) {
    unsupported("paged_attention");
  }

  // ---- MoE (Qwen3-MoE, DeepSeek-V3): experts run on the rows routed to them. Row indices and weights are host
  // memory (routing runs on the host). Ops added after the first backends have defaults that throw
  // INFER_ERR_UNSUPPORTED naming the op, so a backend that lacks one fails plainly at the first use.
  // dst[i, :width] = src[rows[i], :width] for i < n.
  virtual void gather_rows(const float* src, int64_t lds, const int32_t* rows, int64_t n, float* dst, int64_t ldd,
                           int64_t width) {
    unsupported("gather_rows");
  }
  // dst[rows[i], :width] += weights[i] * src[i, :width] for i = 0..n-1 in order (a row may repeat; the product is
  // rounded before the add, as torch's index_add_ of `out * w`).
  virtual void scatter_add_rows(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows,
                                const float* weights, int64_t n, int64_t width) {
    unsupported("scatter_add_rows");
  }

  // ---- MoE on the backend (routing and experts; ids and weights stay in backend memory, so a device backend needs
  // no host round trip per layer). The defaults run the host code (route_tokens, then the per-expert
  // gather_rows / matmul / swiglu / matmul / scatter_add_rows loop): the CPU backend uses them unchanged.
  // ids (T, k) int32 and weights (T, k) fp32 in backend memory (buffers from alloc(); ids reinterpret the floats):
  // route_tokens (moe_route.h) of logits (T, ld) backend memory; score_bias (E,) host fp32 or null.
  virtual void moe_route(const MoeRouter& r, const float* logits, int64_t ld, const float* score_bias, int64_t T,
                         int32_t* ids, float* weights);
  // Routed experts: out[t, :H] = Σ_j weights[t, j] · down_e(silu(gate_e · x_t) ⊙ up_e · x_t) with e = ids[t, j]
  // (experts[e], each of width I), summed from zero over the token's experts in ascending expert order with each
  // product rounded before its add (HF's index_add_ of `expert(x) * w`, experts in index order). scratch: backend
  // memory of T·(2H + 2I) floats (moe_expert_scratch_floats). out must not alias x.
  virtual void moe_experts(const float* x, int64_t ldx, const MoeExpert* experts, int64_t n_experts, int64_t I,
                           const int32_t* ids, const float* weights, int64_t T, int64_t k, float* out, int64_t ldo,
                           int64_t H, float* scratch);
  static int64_t moe_expert_scratch_floats(int64_t T, int64_t H, int64_t I) { return T * (2 * H + 2 * I); }

  // ---- MLA (DeepSeek-V3 multi-head latent attention; model-spec.md §3.3, §4). The cache of a layer (alloc_kv with
  // width r + dr) holds per token the kv_a_layernorm'ed latent (r = kv_lora_rank values) followed by the rotated
  // rope key (dr = qk_rope_head_dim values). Queries are rows of nh heads of dn + dr (q_nope ‖ q_rope); kv_b is
  // kv_b_proj [nh·(dn + dv), r] (per head: dn rows of W_UK, then dv rows of W_UV).
  // RoPE on one slice per head: x[t, h·head_stride : h·head_stride + d] for h < n_heads at position pos0 + t, with
  // interleaved pairs (2i, 2i+1) (DeepSeek's checkpoint layout) or NeoX halves (i, i + d/2).
  virtual void rope_strided(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t head_stride, int64_t d,
                            bool interleaved, int64_t pos0, const RopeTable& rope) {
    unsupported("rope_strided");
  }
  // dst[i, :width] = cache[pos0 + i, :width] as fp32, for i < n.
  virtual void kv_read(const void* cache, int64_t width, int64_t pos0, int64_t n, float* dst, int64_t ldd) {
    unsupported("kv_read");
  }
  // q absorbed through W_UK: qa[t, h·(r+dr) + c] = Σ_{i<dn} q[t, h·(dn+dr) + i] · kv_b[h·(dn+dv) + i, c] for c < r,
  // and qa[t, h·(r+dr) + r + j] = q[t, h·(dn+dr) + dn + j] for j < dr (the rope part is copied).
  virtual void mla_absorb_q(const float* q, int64_t ldq, const cpu::Matrix& kv_b, float* qa, int64_t ldqa, int64_t T,
                            int64_t nh, int64_t dn, int64_t dr, int64_t dv) {
    unsupported("mla_absorb_q");
  }
  // Absorbed attention (MQA over the latent cache): for query rows t (position pos0 + t) and heads h,
  // p = softmax_j(scale · qa[t, h·(r+dr) : (h+1)·(r+dr)] · cache[j]) over j <= pos0 + t, and
  // o[t, h·r : (h+1)·r] = Σ_j p_j · cache[j, :r].
  virtual void mla_attention_absorbed(const float* qa, int64_t ldqa, const void* cache, int64_t r, int64_t dr,
                                      float* o, int64_t ldo, int64_t T, int64_t pos0, int64_t nh, float scale) {
    unsupported("mla_attention_absorbed");
  }
  // The output through W_UV: out[t, h·dv + j] = Σ_{c<r} o[t, h·r + c] · kv_b[h·(dn+dv) + dn + j, c].
  virtual void mla_absorb_out(const float* o, int64_t ldo, const cpu::Matrix& kv_b, float* out, int64_t ldout,
                              int64_t T, int64_t nh, int64_t dn, int64_t dv) {
    unsupported("mla_absorb_out");
  }
  // One key block of the decompressed ("naive") attention, flash style. Keys j < nj are at positions j0 + j, with
  // k_nope / v in kvb[j, h·(dn+dv) : +dn] / [h·(dn+dv)+dn : +dv] (kv_b_proj of the latent) and the shared rope key
  // in kr[j, :dr]. For query rows t (position pos0 + t, causal) and heads h, the score is
  // scale · (q_nope·k_nope + q_rope·k_rope); the running max m[t·nh + h], sum l[t·nh + h] and the unnormalised
  // output out[t, h·dv : +dv] are updated. first: the state starts empty; last: out is divided by l.
  virtual void mla_attention_block(const float* q, int64_t ldq, const float* kvb, int64_t ldkvb, const float* kr,
                                   int64_t ldkr, int64_t j0, int64_t nj, float* m, float* l, float* out, int64_t ldo,
                                   int64_t T, int64_t pos0, int64_t nh, int64_t dn, int64_t dr, int64_t dv,
                                   float scale, bool first, bool last) {
    unsupported("mla_attention_block");
  }

  // ---- Sampling on the device (saves copying the logits to the host each token). can_sample says whether this
  // backend samples these parameters itself (penalties are the caller's: it uses the host sampler when they are
  // on); sample returns the next token from backend-memory logits (vocab,) exactly as infer::Sampler::sample picks
  // it, given the uniform draw u in [0, 1) the host sampler would have made, and the token's log-softmax in
  // *logprob when asked, or -1 when it cannot.
  virtual bool can_sample(int64_t vocab, float temperature, int32_t top_k) const { return false; }
  virtual int32_t sample(const float* logits, int64_t vocab, float temperature, int32_t top_k, float top_p,
                         float min_p, double u, float* logprob = nullptr) {
    return -1;
  }

 protected:
  [[noreturn]] void unsupported(const char* op) const {
    fail(INFER_ERR_UNSUPPORTED, name() + " backend does not implement " + op);
  }
};

// Creates the backend named by `device`: "cpu", "cuda"/"cuda:N", or "auto" (CUDA when this build has it and a
// usable GPU is present, else CPU). Throws INFER_ERR_UNSUPPORTED with the reason when the device is unavailable.
std::unique_ptr<Backend> make_backend(const std::string& device, int n_threads);

}  // namespace infer
