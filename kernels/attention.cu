// attention.cu — causal GQA attention over the fp32 KV cache.
//
// Decode (attention_decode_kernel, any head dim): split-K over the keys ("flash-decoding"). Block (g, s, t)
// takes KV head g, split s of the keys of query row t, and all rep = n_heads / n_kv_heads query heads that
// share g, so each K and V row is read from memory once per step whatever the GQA ratio. Keys go in tiles
// of kDecTile with an online softmax (running max m, sum l, rescaled output o, all in shared memory); with
// more than one split the (o, m, l) partials are merged by attention_combine_kernel. Bytes per step:
// 2 * n_keys * n_kv_heads * d * 4 (K and V once) + partials.
//
// Prefill (attention_prefill_kernel, d in {16, 32, 64, 128, 256}): flash attention on tensor cores. Block
// (query tile of 64 rows, head h), 4 warps of 16 rows; K/V tiles of 32 keys are converted to bf16 into
// shared memory; S = Q K^T and O += P V with mma.m16n8k16 (fp32 accumulation), fragments through
// ldmatrix (.trans for V), P reused from the S accumulators as the A operand without a trip through
// shared memory. bf16 rounds Q, K, V and P to 8 significant bits: outputs move by ~1e-2 relative; the fp32
// parity mode of the backend runs the decode kernel on every row instead.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

// ==================================================================== decode (split-K)

constexpr int kDecThreads = 128;
constexpr int kDecTile = 64;       // keys per tile
constexpr int kDecMaxSplits = 64;  // largest split count the backend asks for

inline size_t decode_smem_bytes(int rep, int d) {
  return sizeof(float) * size_t(2 * rep * d + rep * kDecTile + 3 * rep);
}

// q: (T, ldq); k_cache, v_cache: (n_ctx, n_kv * d); out: (T, ldo); partial: (T, n_heads, splits, d + 2).
// grid (n_kv, splits, T); block kDecThreads; dynamic smem decode_smem_bytes(rep, d).
__global__ void __launch_bounds__(kDecThreads)
    attention_decode_kernel(dev_ptr<const float> q, int64_t ldq, dev_ptr<const float> kc, dev_ptr<const float> vc,
                            dev_ptr<float> out, int64_t ldo, dev_ptr<float> partial, int pos0,
                            dev_ptr<const int32_t> pos_dev, int n_heads, int n_kv, int d, float scale, int splits) {
  const int g = int(blockIdx.x), s = int(blockIdx.y), t = int(blockIdx.z);
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int rep = n_heads / n_kv;
  const int n_keys = (pos_dev ? pos_dev[0] : pos0) + t + 1;
  const int chunk = (n_keys + splits - 1) / splits;
  const int k0 = s * chunk, k1 = min(n_keys, k0 + chunk);
  const int64_t kvw = int64_t(n_kv) * d;

  float* sq = infer_dynamic_smem<float>();  // (rep, d) queries of the group
  float* sp = sq + rep * d;                 // (rep, kDecTile) scores, then probabilities
  float* so = sp + rep * kDecTile;          // (rep, d) unnormalized output
  float* sm = so + rep * d;                 // (rep,) running max
  float* sl = sm + rep;                     // (rep,) running sum
  float* sa = sl + rep;                     // (rep,) rescale factor of the current tile

  dev_ptr<const float> qg = q + (t * ldq + int64_t(g) * rep * d);  // heads g*rep .. g*rep+rep-1 are contiguous
  for (int e = tid; e < rep * d; e += kDecThreads) {
    sq[e] = qg[e];
    so[e] = 0.0f;
  }
  for (int h = tid; h < rep; h += kDecThreads) {
    sm[h] = -INFINITY;
    sl[h] = 0.0f;
  }
  __syncthreads();

  for (int kt = k0; kt < k1; kt += kDecTile) {
    const int nt = min(kDecTile, k1 - kt);
    // scores: item (h, j) = q_h . K[kt + j] * scale
    for (int e = tid; e < rep * nt; e += kDecThreads) {
      const int h = e / nt, j = e % nt;
      dev_ptr<const float> kr = kc + ((kt + j) * kvw + int64_t(g) * d);
      const float* qh = sq + h * d;
      float acc = 0.0f;
      for (int u = 0; u < d; ++u) acc = fmaf(qh[u], kr[u], acc);
      sp[h * kDecTile + j] = acc * scale;
    }
    __syncthreads();
    // online softmax, one warp per head
    for (int h = warp; h < rep; h += kDecThreads / 32) {
      float* ph = sp + h * kDecTile;
      float mx = -INFINITY;
      for (int j = lane; j < nt; j += 32) mx = fmaxf(mx, ph[j]);
      mx = warp_reduce_max(mx);
      const float m_old = sm[h], m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int j = lane; j < nt; j += 32) {
        const float p = expf(ph[j] - m_new);
        ph[j] = p;
        sum += p;
      }
      sum = warp_reduce_sum(sum);
      __syncwarp();  // every lane has read sm[h] before lane 0 replaces it
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
        sa[h] = alpha;
        sl[h] = sl[h] * alpha + sum;
        sm[h] = m_new;
      }
    }
    __syncthreads();
    // o = o * alpha + P V
    for (int e = tid; e < rep * d; e += kDecThreads) {
      const int h = e / d, u = e % d;
      const float* ph = sp + h * kDecTile;
      dev_ptr<const float> vcol = vc + (int64_t(kt) * kvw + int64_t(g) * d + u);
      float acc = so[e] * sa[h];
      for (int j = 0; j < nt; ++j) acc = fmaf(ph[j], vcol[j * kvw], acc);
      so[e] = acc;
    }
    __syncthreads();
  }

  if (splits == 1) {
    dev_ptr<float> og = out + (t * ldo + int64_t(g) * rep * d);
    for (int e = tid; e < rep * d; e += kDecThreads) og[e] = so[e] / sl[e / d];
  } else {
    for (int e = tid; e < rep * d; e += kDecThreads) {
      const int h = e / d, u = e % d;
      partial[((int64_t(t) * n_heads + g * rep + h) * splits + s) * (d + 2) + u] = so[e];
    }
    for (int h = tid; h < rep; h += kDecThreads) {
      dev_ptr<float> ph = partial + ((int64_t(t) * n_heads + g * rep + h) * splits + s) * (d + 2);
      ph[d] = sm[h];
      ph[d + 1] = sl[h];
    }
  }
}

// Merges the splits: out = sum_s e^(m_s - m) o_s / sum_s e^(m_s - m) l_s. grid (n_heads, T); block 128.
__global__ void attention_combine_kernel(dev_ptr<const float> partial, dev_ptr<float> out, int64_t ldo, int n_heads,
                                         int d, int splits) {
  const int h = int(blockIdx.x), t = int(blockIdx.y);
  dev_ptr<const float> base = partial + (int64_t(t) * n_heads + h) * splits * (d + 2);
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, base[s * (d + 2) + d]);
  float den = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float l = base[s * (d + 2) + d + 1];
    if (l > 0.0f) den += l * expf(base[s * (d + 2) + d] - m);
  }
  for (int u = int(threadIdx.x); u < d; u += int(blockDim.x)) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s)
      if (base[s * (d + 2) + d + 1] > 0.0f) acc += base[s * (d + 2) + u] * expf(base[s * (d + 2) + d] - m);
    out[t * ldo + int64_t(h) * d + u] = acc / den;
  }
}

int attention_decode_max_splits() { return kDecMaxSplits; }

void launch_attention_decode(const AttentionArgs& a, int splits, float* partial, cudaStream_t stream) {
  const int rep = int(a.n_heads / a.n_kv_heads), d = int(a.d);
  const size_t kv = size_t(a.n_ctx * a.n_kv_heads * a.d);
  const size_t out_n = size_t((a.T - 1) * a.ldo + a.n_heads * a.d);
  auto pout = make_dev_ptr(a.out, out_n);
  auto ppart = make_dev_ptr(partial, splits > 1 ? size_t(a.T * a.n_heads * splits * (d + 2)) : 0);
  infer_launch(attention_decode_kernel, dim3(unsigned(a.n_kv_heads), unsigned(splits), unsigned(a.T)),
               dim3(kDecThreads), decode_smem_bytes(rep, d), stream,
               make_dev_ptr(a.q, size_t((a.T - 1) * a.ldq + a.n_heads * a.d)), a.ldq, make_dev_ptr(a.k_cache, kv),
               make_dev_ptr(a.v_cache, kv), pout, a.ldo, ppart, int(a.pos0), make_dev_ptr(a.pos_dev, a.pos_dev ? 1 : 0),
               int(a.n_heads), int(a.n_kv_heads), d, a.scale, splits);
  if (splits > 1)
    infer_launch(attention_combine_kernel, dim3(unsigned(a.n_heads), unsigned(a.T)), dim3(128), 0, stream,
                 make_dev_ptr<const float>(partial, size_t(a.T * a.n_heads * splits * (d + 2))), pout, a.ldo,
                 int(a.n_heads), d, splits);
}

// ==================================================================== prefill (tensor cores)

constexpr int kFaWarps = 4;
constexpr int kFaM = 16 * kFaWarps;  // query rows per block
constexpr int kFaN = 32;             // keys per tile

template <int D>
constexpr size_t prefill_smem_bytes() {
  return sizeof(uint16_t) * size_t(kFaM + 2 * kFaN) * (D + 8);
}

namespace {
// fp32 -> bf16 bits, round to nearest even (finite inputs), identical in both builds.
__device__ __forceinline__ uint32_t bf16_bits(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
// A pair of fp32 as one register of two bf16 (x0 in the low half).
__device__ __forceinline__ uint32_t pack_bf16x2(float x0, float x1) { return bf16_bits(x0) | (bf16_bits(x1) << 16); }
}  // namespace

// q: (T, ldq); k_cache, v_cache: (n_ctx, n_kv * D); out: (T, ldo). grid (ceil(T / kFaM), n_heads); block 128;
// dynamic smem prefill_smem_bytes<D>(): sQ (kFaM, D + 8), sK, sV (kFaN, D + 8) bf16.
// note: rows are padded by 8 bf16 (16 bytes) so the 8 row addresses of an ldmatrix hit distinct banks.
template <int D>
__global__ void __launch_bounds__(kFaWarps * 32)
    attention_prefill_kernel(dev_ptr<const float> q, int64_t ldq, dev_ptr<const float> kc, dev_ptr<const float> vc,
                             dev_ptr<float> out, int64_t ldo, int T, int pos0, dev_ptr<const int32_t> pos_dev,
                             int n_heads, int n_kv, float scale) {
  constexpr int kStride = D + 8;
  uint16_t* sQ = infer_dynamic_smem<uint16_t>();
  uint16_t* sK = sQ + kFaM * kStride;
  uint16_t* sV = sK + kFaN * kStride;
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int h = int(blockIdx.y), g = h / (n_heads / n_kv);
  const int t0 = int(blockIdx.x) * kFaM;
  const int p0 = pos_dev ? pos_dev[0] : pos0;
  const int64_t kvw = int64_t(n_kv) * D;

  // Q tile -> bf16
  for (int e = tid; e < kFaM * D; e += kFaWarps * 32) {
    const int r = e / D, c = e % D;
    sQ[r * kStride + c] = uint16_t(bf16_bits(t0 + r < T ? q[(t0 + r) * ldq + int64_t(h) * D + c] : 0.0f));
  }

  const int rowA = t0 + warp * 16 + lane / 4;  // query rows of accumulators 0,1 (rowA) and 2,3 (rowA + 8)
  const int n_keys = p0 + min(T, t0 + kFaM);   // keys any row of this tile can see
  float o[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int kt = 0; kt < n_keys; kt += kFaN) {
    __syncthreads();  // the previous tile is consumed (first time: orders the Q stores)
    for (int e = tid; e < kFaN * D; e += kFaWarps * 32) {
      const int j = e / D, c = e % D;
      const bool in = kt + j < n_keys;
      const int64_t off = (kt + j) * kvw + int64_t(g) * D + c;
      const float kv = in ? kc[off] : 0.0f, vv = in ? vc[off] : 0.0f;  // zeros: 0 * garbage would be NaN
      sK[j * kStride + c] = uint16_t(bf16_bits(kv));
      sV[j * kStride + c] = uint16_t(bf16_bits(vv));
    }
    __syncthreads();

    // S = Q K^T: (16 rows, 32 keys) per warp = 4 n-tiles of 8 keys
    float s[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4(a, sQ + (warp * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int nt2 = 0; nt2 < 2; ++nt2) {
        uint32_t b[4];  // [0..1]: n-tile 2*nt2, [2..3]: n-tile 2*nt2 + 1
        ldmatrix_x4(b, sK + (nt2 * 16 + (lane / 16) * 8 + lane % 8) * kStride + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const uint32_t bh[2] = {b[2 * half], b[2 * half + 1]};
          mma_m16n8k16_bf16(s[2 * nt2 + half], a, bh, s[2 * nt2 + half]);
        }
      }
    }

    // scale, causal mask, online softmax (rows rowA and rowA + 8; a row's 32 scores live in one quad)
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = kt + nt * 8 + (lane % 4) * 2 + (i & 1);
        const int row = rowA + (i >= 2 ? 8 : 0);
        const float v = key <= p0 + row && key < n_keys ? s[nt][i] * scale : -INFINITY;
        s[nt][i] = v;
        mx[i / 2] = fmaxf(mx[i / 2], v);
      }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];  // a row with no visible key yet keeps p = 0
      const float alpha = m[r] == -INFINITY ? 0.0f : expf(m[r] - base[r]);
      m[r] = mx[r];
      l[r] *= alpha;
#pragma unroll
      for (int nd = 0; nd < D / 8; ++nd) {
        o[nd][2 * r] *= alpha;
        o[nd][2 * r + 1] *= alpha;
      }
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float p = expf(s[nt][i] - base[i / 2]);
        s[nt][i] = p;
        l[i / 2] += p;
      }

    // O += P V: P (16 x 32) from the S accumulators as two k-steps of 16 keys
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      // the accumulator layout of two n-tiles is the A-fragment layout of one k-step (PTX ISA fragments)
      const uint32_t pa[4] = {pack_bf16x2(s[2 * ks][0], s[2 * ks][1]), pack_bf16x2(s[2 * ks][2], s[2 * ks][3]),
                              pack_bf16x2(s[2 * ks + 1][0], s[2 * ks + 1][1]),
                              pack_bf16x2(s[2 * ks + 1][2], s[2 * ks + 1][3])};
#pragma unroll
      for (int nd2 = 0; nd2 < D / 16; ++nd2) {
        uint32_t b[4];  // [0..1]: dims nd2*16 .. +8, [2..3]: dims nd2*16 + 8 .. +16
        ldmatrix_x4_trans(b, sV + (ks * 16 + lane % 16) * kStride + nd2 * 16 + (lane / 16) * 8);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const uint32_t bh[2] = {b[2 * half], b[2 * half + 1]};
          mma_m16n8k16_bf16(o[2 * nd2 + half], pa, bh, o[2 * nd2 + half]);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = rowA + (i >= 2 ? 8 : 0);
      if (row < T) out[row * ldo + int64_t(h) * D + nd * 8 + (lane % 4) * 2 + (i & 1)] = o[nd][i] / l[i / 2];
    }
}

bool attention_prefill_supported(int64_t d) { return d == 16 || d == 32 || d == 64 || d == 128 || d == 256; }

namespace {
template <int D>
void prefill_launch(const AttentionArgs& a, cudaStream_t stream) {
  const size_t kv = size_t(a.n_ctx * a.n_kv_heads * a.d);
  infer_launch(attention_prefill_kernel<D>, dim3(unsigned((a.T + kFaM - 1) / kFaM), unsigned(a.n_heads)),
               dim3(kFaWarps * 32), prefill_smem_bytes<D>(), stream,
               make_dev_ptr(a.q, size_t((a.T - 1) * a.ldq + a.n_heads * a.d)), a.ldq, make_dev_ptr(a.k_cache, kv),
               make_dev_ptr(a.v_cache, kv), make_dev_ptr(a.out, size_t((a.T - 1) * a.ldo + a.n_heads * a.d)), a.ldo,
               int(a.T), int(a.pos0), make_dev_ptr(a.pos_dev, a.pos_dev ? 1 : 0), int(a.n_heads), int(a.n_kv_heads),
               a.scale);
}
template <int D>
void prefill_init() {
  infer_set_max_dynamic_smem(attention_prefill_kernel<D>, prefill_smem_bytes<D>());
}
}  // namespace

void launch_attention_prefill(const AttentionArgs& a, cudaStream_t stream) {
  switch (a.d) {
    case 16: prefill_launch<16>(a, stream); break;
    case 32: prefill_launch<32>(a, stream); break;
    case 64: prefill_launch<64>(a, stream); break;
    case 128: prefill_launch<128>(a, stream); break;
    case 256: prefill_launch<256>(a, stream); break;
    default: break;  // the backend checks attention_prefill_supported first
  }
}

bool init_kernels() {
  // A kernel this binary has no image for (built for other architectures) fails here, not mid-forward.
#if defined(__CUDACC__)
  cudaFuncAttributes attr;
  if (cudaFuncGetAttributes(&attr, attention_combine_kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
#endif
  infer_set_max_dynamic_smem(attention_decode_kernel, 96 * 1024);
  prefill_init<16>();
  prefill_init<32>();
  prefill_init<64>();
  prefill_init<128>();
  prefill_init<256>();
  return true;
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
