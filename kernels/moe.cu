// moe.cu — mixture-of-experts on the device: the router (softmax top-k, or sigmoid + score bias + group-limited
// top-k), the token -> expert permutation (count, offsets, scatter) with the weighted un-permute, and the batch-1
// decode experts that read only the selected experts' weights through a device table of expert pointers (bf16, f32,
// or e4m3 with 128×128 block scales, w8a16 as the FP8 GEMV). The grouped expert GEMM is in moe_gemm.cu.
//
// Exactness: routing follows infer::route_tokens (src/moe_route.cpp) step by step: the same fp32 operations in the
// same order (the softmax and renormalisation sums run sequentially on one lane), top-k by (value desc, index asc)
// as the host's partial_sort with its tie-break, group scores as the sum of a group's two best scores. With the same
// logits the device picks the same experts; the weights differ from the host's at most by expf vs std::exp.
// The un-permute and the decode down projection add each token's expert outputs from zero in ascending expert
// order, each product w·y rounded before its add (__fmul_rn: no fma contraction), as the CPU's scatter_add_rows.
#include "common.cuh"
#include "fp8.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

// (v, i) is better than (w, j): larger value, ties to the lower index; j < 0 is "none".
__device__ __forceinline__ bool better(float v, int i, float w, int j) {
  if (i < 0) return false;
  if (j < 0) return true;
  return v > w || (v == w && i < j);
}

// Warp-wide best (value, index) pair; every lane gets it.
__device__ __forceinline__ void warp_best(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    const int j = __shfl_xor_sync(0xffffffffu, i, o);
    if (better(w, j, v, i)) v = w, i = j;
  }
}

// Index of the best value of s[0..n) among those whose bit is not set in the caller lane's `taken` mask (lane l
// owns indices l, l + 32, ...; bit q of its mask for index l + 32 q). Returns -1 when none is left.
__device__ __forceinline__ int warp_argmax(const float* s, int n, const uint32_t& taken, int lane) {
  float v = 0.0f;
  int i = -1;
  for (int e = lane, q = 0; e < n; e += 32, ++q) {
    if (taken & (1u << q)) continue;
    if (better(s[e], e, v, i)) v = s[e], i = e;
  }
  warp_best(v, i);
  return i;
}
}  // namespace

// ------------------------------------------------------------------ router

// One warp per token. Shared: p (E), sc (E), group scores (G), ids (k), weights (k).
__global__ void __launch_bounds__(32)
    moe_route_kernel(dev_ptr<const float> logits, int64_t ld, dev_ptr<const float> bias, dev_ptr<int32_t> ids,
                     dev_ptr<float> weights, int E, int k, int softmax, int norm, int G, int topk_group, float scaling) {
  const int t = int(blockIdx.x), lane = int(threadIdx.x);
  float* p = infer_dynamic_smem<float>();
  float* sc = p + E;
  float* gs = sc + E;
  int* sid = reinterpret_cast<int*>(gs + G);
  float* sw = reinterpret_cast<float*>(sid + k);
  dev_ptr<const float> l = logits + int64_t(t) * ld;
  if (softmax) {
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
    mx = warp_reduce_max(mx);  // a max is exact in any order
    for (int e = lane; e < E; e += 32) p[e] = expf(l[e] - mx);
    __syncwarp();
    if (lane == 0) {  // the host's order of the sum
      float sum = 0.0f;
      for (int e = 0; e < E; ++e) sum += p[e];
      gs[0] = sum;
    }
    __syncwarp();
    const float sum = gs[0];
    for (int e = lane; e < E; e += 32) sc[e] = p[e] = p[e] / sum;
  } else {
    for (int e = lane; e < E; e += 32) {
      const float s = 1.0f / (1.0f + expf(-l[e]));
      p[e] = s;
      sc[e] = bias ? s + bias[e] : s;
    }
  }
  __syncwarp();
  uint32_t taken = 0;
  if (!softmax && G > 1 && topk_group < G) {
    const int gsize = E / G;
    for (int g = lane; g < G; g += 32) {  // the two best scores of group g, as the host scans them
      float a = -INFINITY, b = -INFINITY;
      for (int i = 0; i < gsize; ++i) {
        const float s = sc[g * gsize + i];
        if (s > a) {
          b = a;
          a = s;
        } else if (s > b) {
          b = s;
        }
      }
      gs[g] = gsize >= 2 ? a + b : a;
    }
    __syncwarp();
    uint32_t gtaken = 0;  // this lane's groups taken (for warp_argmax)
    uint64_t chosen = 0;  // every chosen group (the same on all lanes; G <= 64)
    for (int r = 0; r < topk_group; ++r) {
      const int g = warp_argmax(gs, G, gtaken, lane);
      if (g % 32 == lane) gtaken |= 1u << (g / 32);
      chosen |= uint64_t(1) << g;
    }
    // Experts of groups not chosen cannot be chosen (the host masks them with -inf).
    for (int e = lane; e < E; e += 32)
      if (!((chosen >> (e / gsize)) & 1u)) sc[e] = -INFINITY;
    __syncwarp();
  }
  for (int j = 0; j < k; ++j) {
    const int e = warp_argmax(sc, E, taken, lane);
    if (e % 32 == lane) taken |= 1u << (e / 32);
    if (lane == 0) {
      sid[j] = e;
      sw[j] = p[e];
    }
  }
  __syncwarp();
  if (lane == 0) {
    if (norm) {
      float s = 0.0f;
      for (int j = 0; j < k; ++j) s += sw[j];
      if (!softmax) s += 1e-20f;
      for (int j = 0; j < k; ++j) sw[j] /= s;
    }
    if (scaling != 1.0f)
      for (int j = 0; j < k; ++j) sw[j] *= scaling;
  }
  __syncwarp();
  for (int j = lane; j < k; j += 32) {
    ids[int64_t(t) * k + j] = sid[j];
    weights[int64_t(t) * k + j] = sw[j];
  }
}

bool moe_route_supported(int64_t n_experts, int64_t top_k, int64_t n_group) {
  return n_experts >= 1 && n_experts <= kMoeMaxExperts && top_k >= 1 && top_k <= std::min<int64_t>(n_experts, kMoeMaxTopK) &&
         n_group >= 1 && n_group <= 64;
}

void launch_moe_route(const MoeRouteArgs& a, cudaStream_t stream) {
  const int G = int(std::max<int64_t>(1, a.n_group));
  const size_t smem = size_t(2 * a.E + G + 2 * a.k) * 4;
  infer_launch(moe_route_kernel, dim3(unsigned(a.T)), dim3(32), smem, stream,
               make_dev_ptr(a.logits, size_t((a.T - 1) * a.ld + a.E)), a.ld, make_dev_ptr(a.bias, a.bias ? size_t(a.E) : 0),
               make_dev_ptr(a.ids, size_t(a.T * a.k)), make_dev_ptr(a.weights, size_t(a.T * a.k)), int(a.E), int(a.k),
               a.softmax ? 1 : 0, a.norm_topk_prob ? 1 : 0, G, int(a.topk_group), a.scaling);
}

// ------------------------------------------------------------------ permutation

constexpr int kPermThreads = 256;
constexpr int kPermChunk = 1024;

// One block. counts -> offsets (E + 1); then thread e walks the (t, j) pairs in order and places the tokens routed to
// expert e: rows[offsets[e] + i] = t for its i-th pair, pos[t * k + j] = that slot. Deterministic (tokens ascending
// within an expert, as the host's counting sort); ids are staged through shared memory in chunks.
// With tile_off: tile_off[e] = Σ_{e' < e} ceil(n_e' / kMoeTileRows) (the grouped GEMM's tiles).
__global__ void __launch_bounds__(kPermThreads)
    moe_permute_kernel(dev_ptr<const int32_t> ids, int n_pairs, int k, int E, dev_ptr<int32_t> offsets,
                       dev_ptr<int32_t> rows, dev_ptr<int32_t> pos, dev_ptr<int32_t> tile_off) {
  __shared__ int chunk[kPermChunk];
  int* count = infer_dynamic_smem<int>();  // (E + 1)
  const int tid = int(threadIdx.x);
  for (int e = tid; e <= E; e += kPermThreads) count[e] = 0;
  __syncthreads();
  for (int i = tid; i < n_pairs; i += kPermThreads) atomicAdd(&count[ids[i] + 1], 1);
  __syncthreads();
  if (tid == 0)
    for (int e = 0; e < E; ++e) count[e + 1] += count[e];
  __syncthreads();
  for (int e = tid; e <= E; e += kPermThreads) offsets[e] = count[e];
  if (tile_off && tid == 0) {
    int t = 0;
    tile_off[0] = 0;
    for (int e = 0; e < E; ++e) {
      t += (count[e + 1] - count[e] + int(kMoeTileRows) - 1) / int(kMoeTileRows);
      tile_off[e + 1] = t;
    }
  }
  // each thread owns experts tid, tid + kPermThreads, ... (at most kMoeMaxExperts / kPermThreads of them)
  constexpr int kOwn = (kMoeMaxExperts + kPermThreads - 1) / kPermThreads;
  int at[kOwn];
#pragma unroll
  for (int q = 0; q < kOwn; ++q) at[q] = tid + q * kPermThreads < E ? count[tid + q * kPermThreads] : 0;
  for (int c0 = 0; c0 < n_pairs; c0 += kPermChunk) {
    const int n = min(kPermChunk, n_pairs - c0);
    __syncthreads();  // the previous chunk's readers are done
    for (int i = tid; i < n; i += kPermThreads) chunk[i] = ids[c0 + i];
    __syncthreads();
    for (int i = 0; i < n; ++i) {
      const int e = chunk[i];
      if (e % kPermThreads != tid) continue;
      const int q = e / kPermThreads;
#pragma unroll
      for (int r = 0; r < kOwn; ++r)  // at[q] with a constant index (kept in registers)
        if (r == q) {
          rows[at[r]] = (c0 + i) / k;
          pos[c0 + i] = at[r];
          ++at[r];
        }
    }
  }
}

void launch_moe_permute(const int32_t* ids, int64_t T, int64_t k, int64_t E, int32_t* offsets, int32_t* rows,
                        int32_t* pos, cudaStream_t stream, int32_t* tile_off) {
  const size_t n = size_t(T * k);
  infer_launch(moe_permute_kernel, dim3(1), dim3(kPermThreads), size_t(E + 1) * 4, stream, make_dev_ptr(ids, n),
               int(n), int(k), int(E), make_dev_ptr(offsets, size_t(E + 1)), make_dev_ptr(rows, n),
               make_dev_ptr(pos, n), make_dev_ptr(tile_off, tile_off ? size_t(E + 1) : 0));
}

// dst[i, :width] = src[rows[i], :width]; grid (column blocks, rows strided).
__global__ void gather_rows_kernel(dev_ptr<const float> src, int64_t lds, dev_ptr<const int32_t> rows, int n,
                                   dev_ptr<float> dst, int64_t ldd, int width) {
  for (int i = int(blockIdx.y); i < n; i += int(gridDim.y)) {
    const int64_t r = rows[i];
    for (int c = int(blockIdx.x * blockDim.x + threadIdx.x); c < width; c += int(gridDim.x * blockDim.x))
      dst[i * ldd + c] = src[r * lds + c];
  }
}

void launch_gather_rows(const float* src, int64_t lds, int64_t n_src, const int32_t* rows, int64_t n, float* dst,
                        int64_t ldd, int64_t width, cudaStream_t stream) {
  const dim3 grid(unsigned(std::min<int64_t>((width + 255) / 256, 64)), unsigned(std::min<int64_t>(n, 65535)));
  infer_launch(gather_rows_kernel, grid, dim3(unsigned(std::min<int64_t>(256, (width + 31) / 32 * 32))), 0, stream,
               make_dev_ptr(src, size_t((n_src - 1) * lds + width)), lds, make_dev_ptr(rows, size_t(n)), int(n),
               make_dev_ptr(dst, size_t((n - 1) * ldd + width)), ldd, int(width));
}

// out[t, c] = Σ over the token's k experts in ascending id order of w[t, j] · y[pos[t, j], c], from zero.
__global__ void moe_unpermute_kernel(dev_ptr<const float> y, int64_t ldy, dev_ptr<const int32_t> ids,
                                     dev_ptr<const float> w, dev_ptr<const int32_t> pos, int T, int k,
                                     dev_ptr<float> out, int64_t ldo, int H) {
  for (int t = int(blockIdx.y); t < T; t += int(gridDim.y)) {
    for (int c = int(blockIdx.x * blockDim.x + threadIdx.x); c < H; c += int(gridDim.x * blockDim.x)) {
      float acc = 0.0f;
      int prev = -1;
      for (int r = 0; r < k; ++r) {  // the next larger expert id (ids of a token are distinct)
        int best = -1, bj = 0;
        for (int j = 0; j < k; ++j) {
          const int e = ids[int64_t(t) * k + j];
          if (e > prev && (best < 0 || e < best)) best = e, bj = j;
        }
        prev = best;
        const int64_t slot = int64_t(t) * k + bj;
        acc = __fadd_rn(acc, __fmul_rn(y[pos[slot] * ldy + c], w[slot]));
      }
      out[int64_t(t) * ldo + c] = acc;
    }
  }
}

void launch_moe_unpermute(const float* y, int64_t ldy, const int32_t* ids, const float* w, const int32_t* pos,
                          int64_t T, int64_t k, float* out, int64_t ldo, int64_t H, cudaStream_t stream) {
  const dim3 grid(unsigned(std::min<int64_t>((H + 255) / 256, 64)), unsigned(std::min<int64_t>(T, 65535)));
  const size_t n = size_t(T * k);
  infer_launch(moe_unpermute_kernel, grid, dim3(unsigned(std::min<int64_t>(256, (H + 31) / 32 * 32))), 0, stream,
               make_dev_ptr(y, size_t((T * k - 1) * ldy + H)), ldy, make_dev_ptr(ids, n), make_dev_ptr(w, n),
               make_dev_ptr(pos, n), int(T), int(k), make_dev_ptr(out, size_t((T - 1) * ldo + H)), ldo, int(H));
}

// ------------------------------------------------------------------ batch-1 decode experts

constexpr int kMoeWarps = 4;

namespace {
// This lane's part of w[0..K) · x[0..K) (the caller reduces over the warp). kVec: 16-byte loads (K·sizeof(W) % 16
// == 0 and 16-byte aligned rows).
template <class W, bool kVec>
__device__ __forceinline__ float lane_dot(dev_ptr<const W> w, dev_ptr<const float> x, int K, int lane) {
  float a = 0.0f;
  if constexpr (kVec) {
    constexpr int kPer = 16 / int(sizeof(W));
    const int chunks = K / kPer;
    dev_ptr<const uint4> wv = dev_ptr_cast<const uint4>(w);
    dev_ptr<const float4> xv = dev_ptr_cast<const float4>(x);
#pragma unroll 2
    for (int c = lane; c < chunks; c += 32) {
      const uint4 raw = wv[c];
      const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int q = 0; q < kPer / 4; ++q) {
        const float4 v = xv[c * (kPer / 4) + q];
        const float xs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          if constexpr (sizeof(W) == 2) {
            const uint32_t word = u[(4 * q + s) / 2];
            const float wf = (s % 2 == 0) ? __uint_as_float(word << 16) : __uint_as_float(word & 0xffff0000u);
            a = fmaf(wf, xs[s], a);
          } else {
            a = fmaf(__uint_as_float(u[4 * q + s]), xs[s], a);
          }
        }
      }
    }
  } else {
    for (int i = lane; i < K; i += 32) a = fmaf(to_f32(w[i]), x[i], a);
  }
  return a;
}
}  // namespace

// The weights of one expert matrix from the table (the emulator bounds-checks them; a null entry has no elements).
template <class W>
__device__ __forceinline__ dev_ptr<const W> expert_ptr(const void* p, size_t count) {
  return make_dev_ptr(static_cast<const W*>(p), p ? count : 0);
}

// Row n of one expert matrix (cols K) and this lane's part of its dot product with x (the caller reduces over the
// warp). bf16 / f32: lane_dot; e4m3 (W = uint8_t): rows of ldw = fp8_padded_k(K) bytes, 16-byte chunks, each
// chunk's sum times its block scale, in units of 2^-8 (the caller multiplies the reduced sum by 256).
template <class W, bool kVec>
__device__ __forceinline__ float expert_row_dot(const MoeWeightPtr& m, int64_t rows, int64_t n, int K,
                                                dev_ptr<const float> x, int lane) {
  if constexpr (std::is_same_v<W, uint8_t>) {
    const int64_t ldw = (K + 15) / 16 * 16;
    const int KB = (K + kFp8QBlock - 1) / kFp8QBlock;
    const int64_t srows = (m.row0 + rows + kFp8QBlock - 1) / kFp8QBlock;
    dev_ptr<const uint4> wr = dev_ptr_cast<const uint4>(expert_ptr<uint8_t>(m.w, size_t(rows * ldw)) + n * ldw);
    dev_ptr<const float> sr = expert_ptr<float>(m.scale, size_t(srows * KB)) + (m.row0 + n) / kFp8QBlock * KB;
    const int chunks = (K + 15) / 16;
    float a = 0.0f;
    // note: not unrolled: with two chunks in flight sm_90 spills the down kernel (4 bytes at 56 registers)
    for (int c = lane; c < chunks; c += 32) {
      float xs[16];
      load_x_chunk16<kVec>(x, c, K, xs);
      a = fmaf(e4m3x16_dot_scaled(wr[c], xs), sr[c / 8], a);  // 8 chunks per scale block
    }
    return a;
  } else {
    return lane_dot<W, kVec>(expert_ptr<W>(m.w, size_t(rows * K)) + n * K, x, K, lane);
  }
}
template <class W>
__device__ __forceinline__ constexpr float expert_unscale() {
  return std::is_same_v<W, uint8_t> ? 256.0f : 1.0f;
}

// h[j, n] = silu(gate_e[n] · x) * (up_e[n] · x), e = ids[j]; grid (ceil(I / kMoeWarps), k), a warp per row n.
// table: (3 E) entries: gate of experts 0..E-1, then up, then down.
template <class W, bool kVec>
__global__ void __launch_bounds__(kMoeWarps * 32)
    moe_decode_gate_up_kernel(dev_ptr<const MoeWeightPtr> table, dev_ptr<const int32_t> ids, dev_ptr<const float> x,
                              dev_ptr<float> h, int E, int H, int I) {
  const int lane = int(threadIdx.x % 32), j = int(blockIdx.y);
  const int n = int(blockIdx.x) * kMoeWarps + int(threadIdx.x / 32);
  if (n >= I) return;  // warp-uniform
  const int e = ids[j];
  const float gs = warp_reduce_sum(expert_row_dot<W, kVec>(table[e], I, n, H, x, lane)) * expert_unscale<W>();
  const float us = warp_reduce_sum(expert_row_dot<W, kVec>(table[E + e], I, n, H, x, lane)) * expert_unscale<W>();
  if (lane == 0) h[int64_t(j) * I + n] = gs / (1.0f + expf(-gs)) * us;
}

// out[n] = Σ_j (in ascending expert order) w[j] · (down_e[n] · h[j]), from zero; a warp per row n.
template <class W, bool kVec>
__global__ void __launch_bounds__(kMoeWarps * 32)
    moe_decode_down_kernel(dev_ptr<const MoeWeightPtr> table, dev_ptr<const int32_t> ids, dev_ptr<const float> wts,
                           dev_ptr<const float> h, dev_ptr<float> out, int E, int H, int I, int k) {
  const int lane = int(threadIdx.x % 32);
  const int n = int(blockIdx.x) * kMoeWarps + int(threadIdx.x / 32);
  if (n >= H) return;  // warp-uniform
  float acc = 0.0f;
  int prev = -1;
  for (int r = 0; r < k; ++r) {
    int best = -1, bj = 0;
    for (int j = 0; j < k; ++j) {
      const int e = ids[j];
      if (e > prev && (best < 0 || e < best)) best = e, bj = j;
    }
    prev = best;
    const float y =
        warp_reduce_sum(expert_row_dot<W, kVec>(table[2 * E + best], H, n, I, h + int64_t(bj) * I, lane)) *
        expert_unscale<W>();
    acc = __fadd_rn(acc, __fmul_rn(y, wts[bj]));
  }
  if (lane == 0) out[n] = acc;
}

void launch_moe_decode(const MoeDecodeArgs& a, cudaStream_t stream) {
  const int64_t es = a.type == KType::kBF16 ? 2 : a.type == KType::kFP8 ? 1 : 4;
  const bool aligned = reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && reinterpret_cast<uintptr_t>(a.h) % 16 == 0;
  // 16-byte loads: weight rows and x/h rows 16-byte aligned (e4m3 rows are padded; x needs K % 4 for float4)
  const bool vec_up = aligned && (a.type == KType::kFP8 || (a.H * es) % 16 == 0) && (a.H * 4) % 16 == 0;
  const bool vec_down = aligned && (a.type == KType::kFP8 || (a.I * es) % 16 == 0) && (a.I * 4) % 16 == 0;
  auto table = make_dev_ptr(a.table, size_t(3 * a.E));
  auto ids = make_dev_ptr(a.ids, size_t(a.k));
  auto x = make_dev_ptr(a.x, size_t(a.H));
  auto h = make_dev_ptr(a.h, size_t(a.k * a.I));
  const dim3 block(kMoeWarps * 32);
  const dim3 g1(unsigned((a.I + kMoeWarps - 1) / kMoeWarps), unsigned(a.k));
  const dim3 g2(unsigned((a.H + kMoeWarps - 1) / kMoeWarps));
  auto w = make_dev_ptr(a.weights, size_t(a.k));
  auto out = make_dev_ptr(a.out, size_t(a.H));
  const int E = int(a.E), H = int(a.H), I = int(a.I), k = int(a.k);
#define INFER_MOE_LAUNCH(Wt)                                                                                      \
  do {                                                                                                            \
    if (vec_up)                                                                                                   \
      infer_launch(moe_decode_gate_up_kernel<Wt, true>, g1, block, 0, stream, table, ids, x, h, E, H, I);        \
    else                                                                                                          \
      infer_launch(moe_decode_gate_up_kernel<Wt, false>, g1, block, 0, stream, table, ids, x, h, E, H, I);       \
    if (vec_down)                                                                                                 \
      infer_launch(moe_decode_down_kernel<Wt, true>, g2, block, 0, stream, table, ids, w, h, out, E, H, I, k);   \
    else                                                                                                          \
      infer_launch(moe_decode_down_kernel<Wt, false>, g2, block, 0, stream, table, ids, w, h, out, E, H, I, k);  \
  } while (0)
  if (a.type == KType::kBF16)
    INFER_MOE_LAUNCH(__nv_bfloat16);
  else if (a.type == KType::kFP8)
    INFER_MOE_LAUNCH(uint8_t);
  else
    INFER_MOE_LAUNCH(float);
#undef INFER_MOE_LAUNCH
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
