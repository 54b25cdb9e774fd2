// kernels.h — host launch wrappers of the CUDA kernels in kernels/*.cu: plain pointers, sizes and a stream.
//
// One source, two builds (docs/simt.md): nvcc compiles kernels/*.cu for the GPU (namespace infer::cuda), and
// cmake/simt.cmake compiles the same files as C++ with -DINFER_SIMT for the SIMT emulator (namespace
// infer::simt_cuda). The namespace is inline, so callers write infer::launch_rmsnorm in both builds; the two
// builds' symbols differ, so a test binary can hold both (the real backend in infer_internal, the emulated
// one in infer_simt) without clashes.
//
// Conventions: every pointer is device memory (host memory under the emulator) unless its comment says host;
// activations are fp32 rows with an explicit leading dimension (elements); shapes in PyTorch order. Launches
// are asynchronous on `stream`; the wrappers do not check errors (the backend checks cudaGetLastError).
// docs/kernels.md has the cost of each kernel and how to add one.
#pragma once
#include <cuda_runtime_api.h>  // cudaStream_t (host-compilable; no CUDA runtime library needed for the types)

#include <cstdint>

#if !defined(INFER_CUDA_NS)
#if defined(INFER_SIMT)
#define INFER_CUDA_NS simt_cuda
#else
#define INFER_CUDA_NS cuda
#endif
#endif

namespace infer {
inline namespace INFER_CUDA_NS {

// Element type of a weight, table or norm vector buffer.
enum class KType : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

// ---- setup

// Prepares the kernels for the current device (shared-memory opt-ins). Returns false when this binary has no
// kernel image the device can run (built for other GPU architectures). Call once per device.
bool init_kernels();

// ---- embedding (embedding.cu)

// out[t, :hidden] = table[ids[t], :] as fp32. table: (vocab, hidden) of type `type`; ids: (T,) device.
void launch_embed(const void* table, KType type, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t T,
                  float* out, int64_t ldo, cudaStream_t stream);

// ---- norms (rmsnorm.cu)

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w; rows of width n; w: (n,) fp32. x and out may alias.
void launch_rmsnorm(const float* x, int64_t ldx, const float* w, float* out, int64_t ldo, int64_t T, int64_t n,
                    float eps, cudaStream_t stream);
// x[t] += y[t]; then out[t] = rmsnorm(x[t]) * w. One pass over x instead of two; out may alias y.
void launch_add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const float* w, float* out, int64_t ldo,
                        int64_t T, int64_t n, float eps, cudaStream_t stream);

// ---- elementwise (elementwise.cu)

// x[t, :n] += y[t, :n].
void launch_add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n, cudaStream_t stream);
// y[t, :n] += bias[:n]; bias fp32.
void launch_add_bias(float* y, int64_t ldy, const float* bias, int64_t T, int64_t n, cudaStream_t stream);
// y = silu(g) * u over rows of width n (y may alias g or u).
void launch_swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                   int64_t n, cudaStream_t stream);
// Converts x (T, K; leading dimension ldx) to `parts` packed bf16 arrays out (parts, T, K): part 0 = bf16(x), part p
// = bf16 of what parts 0..p-1 leave (1 part: 8 significant bits; 3 parts: all 24, the "split" GEMM precision).
// bf16 as raw bits.
void launch_f32_to_bf16(const float* x, int64_t ldx, int64_t T, int64_t K, uint16_t* out, int parts,
                        cudaStream_t stream);

// ---- rotary embedding (rope.cu)

// For each row t (position pos0 + t) and head h of x[t, h*d : (h+1)*d]: optional RMSNorm over d with weight
// norm (d,) fp32 (null: none), then NeoX RoPE: angle_i = pos * inv_freq[i] (fp32), cos/sin scaled by
// attn_scaling (yarn). pos0 is read from *pos_dev when pos_dev is not null (CUDA-graph replay).
void launch_head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const float* norm, float eps,
                           const float* inv_freq, float attn_scaling, int64_t pos0, const int32_t* pos_dev,
                           cudaStream_t stream);

// ---- KV cache (kv.cu)

// cache[pos0 + t, :width] = src[t, :width]; cache (n_ctx, width) fp32. pos0 from *pos_dev when not null.
void launch_kv_write(float* cache, int64_t n_ctx, int64_t width, int64_t pos0, const int32_t* pos_dev,
                     const float* src, int64_t lds, int64_t T, cudaStream_t stream);

// ---- attention (attention.cu)

// Causal GQA attention over an fp32 cache: query row t (position pos0 + t) of head h attends keys
// 0..pos0+t of KV head g = h / (n_heads / n_kv_heads):
//   out[t, h*d:(h+1)*d] = softmax(q[t, h] · K_g^T * scale) V_g.
struct AttentionArgs {
  const float* q;  // (T, ldq): n_heads * d used
  int64_t ldq;
  const float* k_cache;  // (n_ctx, n_kv_heads * d)
  const float* v_cache;  // (n_ctx, n_kv_heads * d)
  int64_t n_ctx;
  float* out;  // (T, ldo)
  int64_t ldo;
  int64_t T, pos0;
  const int32_t* pos_dev;  // when not null, pos0 = *pos_dev (CUDA-graph replay)
  int64_t n_heads, n_kv_heads, d;
  float scale;
};

// Split-K decode kernel, fp32 (any T, any d with (2*rep*d + 67*rep) * 4 bytes <= 96 KiB of shared memory, rep =
// n_heads / n_kv_heads): block (KV head g, split s, row t) scores keys of its split for all rep query heads of g,
// so each K/V row is read once per step. With splits > 1 the partial results go to `partial`
// (T * n_heads * splits * (d + 2) floats) and a second kernel combines them. Also the backend's fp32 prefill.
void launch_attention_decode(const AttentionArgs& a, int splits, float* partial, cudaStream_t stream);
int attention_decode_max_splits();
// Flash-attention prefill on tensor cores (mma.m16n8k16 bf16, fp32 accumulation): 64 query rows per block,
// K/V tiles of 32 keys converted to bf16 in shared memory. For d in {16, 32, 64, 128, 256}.
void launch_attention_prefill(const AttentionArgs& a, cudaStream_t stream);
bool attention_prefill_supported(int64_t d);

// ---- matrix-vector product for decode (gemv.cu)

// y[n] = sum_k W[n, k] x[k] for n < N; W (N, K) row-major bf16 or f32; x (K,) fp32; fp32 accumulation.
// 16-byte loads when K and the pointers allow it.
void launch_gemv(const void* w, KType type, int64_t N, int64_t K, const float* x, float* y, cudaStream_t stream);

// ---- sampling (sampling.cu)

struct SampleArgs {
  float temperature = 0.0f;  // <= 0: argmax
  int32_t top_k = 0;         // 0 or >= vocab: all tokens (needs vocab <= sample_max_candidates())
  float top_p = 1.0f;
  float min_p = 0.0f;
  double u = 0.0;  // uniform draw in [0, 1): the token is where the cumulative kept mass passes u * mass
};
// Largest number of candidates the device sampler sorts (top-k, or the vocabulary when top-k is off).
int sample_max_candidates();
// *token = the token chosen from logits (vocab,) as infer::Sampler::sample does after its penalties:
// temperature, top-k, top-p, min-p, then a draw (or argmax, first index on ties). One block.
void launch_sample(const float* logits, int64_t vocab, const SampleArgs& args, int32_t* token, cudaStream_t stream);
// *logprob = the log-softmax of the raw logits (vocab,) at *token (a device value): logits[t] - logsumexp(logits),
// the sum in double as generate.cpp's host version. One block.
void launch_token_logprob(const float* logits, int64_t vocab, const int32_t* token, float* logprob,
                          cudaStream_t stream);

// ---- mixture of experts (moe.cu)

constexpr int64_t kMoeMaxExperts = 1024;
constexpr int64_t kMoeMaxTopK = 32;

// The router of infer::route_tokens (src/moe_route.cpp) on the device, one warp per token: logits (T, ld) →
// ids (T, k) int32 and weights (T, k), the same experts as the host (same fp32 steps and tie-break).
struct MoeRouteArgs {
  const float* logits;
  int64_t ld, T, E, k;
  bool softmax;          // else sigmoid
  bool norm_topk_prob;
  int64_t n_group, topk_group;  // sigmoid: group-limited top-k when 1 < n_group and topk_group < n_group
  float scaling;                // routed_scaling_factor
  const float* bias;            // (E,) e_score_correction_bias (sigmoid; selection only) or null
  int32_t* ids;
  float* weights;
};
bool moe_route_supported(int64_t n_experts, int64_t top_k, int64_t n_group);
void launch_moe_route(const MoeRouteArgs& a, cudaStream_t stream);
// Token -> expert permutation of ids (T, k): offsets (E + 1) of each expert's rows, rows (T k) the token of each
// permuted row (experts ascending, tokens ascending within one), pos (T k) the permuted row of pair (t, j).
void launch_moe_permute(const int32_t* ids, int64_t T, int64_t k, int64_t E, int32_t* offsets, int32_t* rows,
                        int32_t* pos, cudaStream_t stream);
// dst[i, :width] = src[rows[i], :width] for i < n (rows device memory, values < n_src).
void launch_gather_rows(const float* src, int64_t lds, int64_t n_src, const int32_t* rows, int64_t n, float* dst,
                        int64_t ldd, int64_t width, cudaStream_t stream);
// out[t, :H] = Σ_j w[t, j] · y[pos[t, j], :H] over the token's experts in ascending id order, from zero, each
// product rounded before its add (the CPU's scatter_add_rows order).
void launch_moe_unpermute(const float* y, int64_t ldy, const int32_t* ids, const float* w, const int32_t* pos,
                          int64_t T, int64_t k, float* out, int64_t ldo, int64_t H, cudaStream_t stream);
// Batch-1 routed experts: reads only the k selected experts' weights (ids, weights device memory, from the
// router): h[j] = silu(gate_e x) * (up_e x), out = Σ_j (ascending e) w_j · down_e h[j]. table: 3 E device
// pointers (gate of every expert, then up, then down), all of type `type` (bf16 or f32), gate/up (I, H), down (H, I).
struct MoeDecodeArgs {
  const void* const* table;
  KType type;
  int64_t E, H, I, k;
  const int32_t* ids;
  const float* weights;
  const float* x;  // (H,)
  float* h;        // (k, I) scratch
  float* out;      // (H,)
};
void launch_moe_decode(const MoeDecodeArgs& a, cudaStream_t stream);

// ---- multi-head latent attention (mla.cu)

// Raises the absorbed-attention kernel's shared-memory limit; call once per device after init_kernels().
void init_mla_kernels();
// Whether the MLA kernels take a latent of r values and a rope key of dr (r <= 512, r + dr <= 1024).
bool mla_supported(int64_t r, int64_t dr);
// RoPE on x[t, h·head_stride : +d] for h < n_heads at position pos0 + t (from *pos_dev when not null): pairs
// (2i, 2i+1) when interleaved, else (i, i + d/2); angle pos · inv_freq[i] (fp32), cos/sin scaled by attn_scaling.
void launch_rope_strided(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t head_stride, int64_t d,
                         bool interleaved, const float* inv_freq, float attn_scaling, int64_t pos0,
                         const int32_t* pos_dev, cudaStream_t stream);
// dst[i, :width] = cache[pos0 + i, :width] for i < n; cache (n_ctx, width) fp32.
void launch_kv_read(const float* cache, int64_t n_ctx, int64_t width, int64_t pos0, int64_t n, float* dst,
                    int64_t ldd, cudaStream_t stream);
// Backend::mla_absorb_q / mla_absorb_out with kv_b (nh·(dn+dv), r) of type `type` (bf16 or f32).
void launch_mla_absorb_q(const float* q, int64_t ldq, const void* kvb, KType type, float* qa, int64_t ldqa, int64_t T,
                         int64_t nh, int64_t dn, int64_t dr, int64_t dv, int64_t r, cudaStream_t stream);
void launch_mla_absorb_out(const float* o, int64_t ldo, const void* kvb, KType type, float* out, int64_t ldout,
                           int64_t T, int64_t nh, int64_t dn, int64_t dv, int64_t r, cudaStream_t stream);
// Backend::mla_attention_absorbed: query row t (position pos0 + t) of head h attends cache rows 0..pos0+t:
// o[t, h·r : +r] = softmax_j(scale · qa[t, h·(r+dr) : +(r+dr)] · cache[j]) · cache[j, :r].
struct MlaAttentionArgs {
  const float* qa;  // (T, ldqa): nh·(r + dr) used
  int64_t ldqa;
  const float* cache;  // (n_ctx, r + dr)
  int64_t n_ctx, r, dr;
  float* o;  // (T, ldo): nh·r used
  int64_t ldo, T, pos0;
  const int32_t* pos_dev;  // when not null, pos0 = *pos_dev (CUDA-graph replay)
  int64_t nh;
  float scale;
};
// Split-K over the keys: with splits > 1, partial holds T·nh·splits·(r + 2) floats and a combine kernel follows.
void launch_mla_attention(const MlaAttentionArgs& a, int splits, float* partial, cudaStream_t stream);
// Backend::mla_attention_block (one key block of the decompressed attention, running softmax state m, l).
struct MlaBlockArgs {
  const float* q;
  int64_t ldq;
  const float* kvb;
  int64_t ldkvb;
  const float* kr;
  int64_t ldkr, j0, nj;
  float* m;
  float* l;
  float* out;
  int64_t ldo, T, pos0;
  const int32_t* pos_dev;  // when not null, pos0 = *pos_dev
  int64_t nh, dn, dr, dv;
  float scale;
  bool first, last;
};
void launch_mla_attention_block(const MlaBlockArgs& a, cudaStream_t stream);

// ---- FP8 block-scaled matmul (fp8_gemm.cu; docs/kernels.md "FP8 block-scaled GEMM")

// An FP8 (e4m3) weight on the device with its 128x128 block scales (weight_scale_inv) as fp32.
struct Fp8Weight {
  const uint8_t* w;    // (N, ldw) e4m3 row-major; ldw = round_up(K, 16), columns K..ldw-1 zero
  int64_t ldw;
  const float* scale;  // (fp8_scale_rows(N, row0), fp8_scale_cols(K)) fp32; row n uses scale row (row0 + n) / 128
  int64_t row0;        // 0..127: offset of row 0 inside its scale block (a view of a larger matrix), else 0
  int64_t N, K;
};
inline int64_t fp8_scale_cols(int64_t K) { return (K + 127) / 128; }
inline int64_t fp8_scale_rows(int64_t N, int64_t row0) { return (row0 + N + 127) / 128; }
inline int64_t fp8_padded_k(int64_t K) { return (K + 15) / 16 * 16; }

// Which tensor-core instruction the w8a8 GEMM uses: kFp8 mma.m16n8k32 e4m3 (sm_89, sm_90, sm_120), kBf16 tiles
// dequantised to bf16 in shared memory and mma.m16n8k16 bf16 (sm_80, sm_86). Same result up to fp32 summation order.
enum class Fp8MmaPath : int { kBf16 = 0, kFp8 = 1 };

// DeepSeek act_quant per token per 128 channels: s[m, kb] = amax / 448 over x[m, kb*128 .. +128) (0 for an
// all-zero block), q[m, k] = e4m3(x[m, k] / s) (round to nearest even, saturating). x (M, ldx) fp32; q (M, ldq)
// e4m3 with ldq a multiple of 16 >= K (columns K..ldq-1 written as zero); s (M, fp8_scale_cols(K)) fp32.
void launch_fp8_act_quant(const float* x, int64_t ldx, int64_t M, int64_t K, uint8_t* q, int64_t ldq, float* s,
                          cudaStream_t stream);
// w8a8 GEMM: y[m, n] = sum_kb as[m, kb] * scale[(row0 + n) / 128, kb] * sum_{k in block kb} aq[m, k] * w[n, k],
// fp32 accumulation, scales applied per 128-wide K block. aq (M, lda) e4m3 and as (M, KB) from
// launch_fp8_act_quant (lda a multiple of 16, 16-byte aligned); y (M, ldy) fp32.
void launch_fp8_gemm(const uint8_t* aq, int64_t lda, const float* as, int64_t M, const Fp8Weight& w, float* y,
                     int64_t ldy, Fp8MmaPath path, cudaStream_t stream);
// Decode (T = 1) w8a16: y[n] = sum_k w[n, k] * scale[(row0 + n) / 128, k / 128] * x[k], x (K,) fp32, each weight byte
// read once with 16-byte loads.
void launch_fp8_gemv(const Fp8Weight& w, const float* x, float* y, cudaStream_t stream);
// The PTX architecture (e.g. 80, 89, 90, 120) of the fp8-mma GEMM image the current device runs: Fp8MmaPath::kFp8
// needs >= 89. 0: no image for this device; -1: the SIMT emulator (every path runs).
int fp8_mma_kernel_arch();

}  // namespace INFER_CUDA_NS
}  // namespace infer
