// mla.cu — DeepSeek multi-head latent attention (model-spec.md §3.3) on the device: RoPE on strided head slices
// (interleaved pairs or NeoX halves), reading cache rows back, the q / output absorption through kv_b_proj, the
// absorbed attention over the latent cache (keys r + dr wide, values the first r of the same row, shared by every
// head) with split-K for long contexts, and one key block of the decompressed ("naive") prefill attention.
//
// All fp32 on CUDA cores with fp32 accumulation (kv_b_proj bf16 or f32): the same sums as the CPU backend in other
// orders. Bytes and FLOPs per call: docs/kernels.md.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
}  // namespace

// ------------------------------------------------------------------ rope_strided, kv_read

constexpr int kMlaRopeWarps = 4;

// A warp per (row t, head h): x[t, h·head_stride : +d] rotated at position pos0 + t.
__global__ void __launch_bounds__(kMlaRopeWarps * 32)
    rope_strided_kernel(dev_ptr<float> x, int64_t ldx, int T, int n_heads, int64_t head_stride, int d, int interleaved,
                        dev_ptr<const float> inv_freq, float attn_scaling, int pos0, dev_ptr<const int32_t> pos_dev) {
  const int lane = int(threadIdx.x % 32);
  const int h = int(blockIdx.x) * kMlaRopeWarps + int(threadIdx.x / 32);
  if (h >= n_heads) return;
  const int half = d / 2;
  const int p0 = pos_dev ? pos_dev[0] : pos0;
  for (int t = int(blockIdx.y); t < T; t += int(gridDim.y)) {
    dev_ptr<float> v = x + (int64_t(t) * ldx + int64_t(h) * head_stride);
    const float pos = float(p0 + t);
    for (int i = lane; i < half; i += 32) {
      float s, c;
      sincosf(pos * inv_freq[i], &s, &c);
      c *= attn_scaling;
      s *= attn_scaling;
      const int ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
      const float a = v[ia], b = v[ib];
      v[ia] = a * c - b * s;
      v[ib] = b * c + a * s;
    }
  }
}

void launch_rope_strided(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t head_stride, int64_t d,
                         bool interleaved, const float* inv_freq, float attn_scaling, int64_t pos0,
                         const int32_t* pos_dev, cudaStream_t stream) {
  const dim3 grid(unsigned((n_heads + kMlaRopeWarps - 1) / kMlaRopeWarps), unsigned(std::min<int64_t>(T, 65535)));
  infer_launch(rope_strided_kernel, grid, dim3(kMlaRopeWarps * 32), 0, stream,
               make_dev_ptr(x, size_t((T - 1) * ldx + (n_heads - 1) * head_stride + d)), ldx, int(T), int(n_heads),
               head_stride, int(d), interleaved ? 1 : 0, make_dev_ptr(inv_freq, size_t(d / 2)), attn_scaling, int(pos0),
               make_dev_ptr(pos_dev, pos_dev ? 1 : 0));
}

__global__ void kv_read_kernel(dev_ptr<const float> cache, int64_t width, int64_t pos0, int n, dev_ptr<float> dst,
                               int64_t ldd) {
  for (int i = int(blockIdx.y); i < n; i += int(gridDim.y))
    for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < width; c += int64_t(gridDim.x) * blockDim.x)
      dst[i * ldd + c] = cache[(pos0 + i) * width + c];
}

void launch_kv_read(const float* cache, int64_t n_ctx, int64_t width, int64_t pos0, int64_t n, float* dst,
                    int64_t ldd, cudaStream_t stream) {
  const dim3 grid(unsigned(std::min<int64_t>((width + 255) / 256, 64)), unsigned(std::min<int64_t>(n, 65535)));
  infer_launch(kv_read_kernel, grid, dim3(unsigned(std::min<int64_t>(256, (width + 31) / 32 * 32))), 0, stream,
               make_dev_ptr(cache, size_t(n_ctx * width)), width, pos0, int(n),
               make_dev_ptr(dst, size_t((n - 1) * ldd + width)), ldd);
}

// ------------------------------------------------------------------ q and output absorption

constexpr int kAbsorbQThreads = 128;
constexpr int kAbsorbQRows = 8;  // query rows per pass over the weights

// qa[t, h·(r+dr) + c] = Σ_{i<dn} q[t, h·(dn+dr) + i] · kv_b[h·(dn+dv) + i, c]; the rope part copied.
// grid (nh, ceil(r / kAbsorbQThreads)); a thread per latent column c, kAbsorbQRows query rows per weight pass.
template <class W>
__global__ void __launch_bounds__(kAbsorbQThreads)
    mla_absorb_q_kernel(dev_ptr<const float> q, int64_t ldq, dev_ptr<const W> kvb, dev_ptr<float> qa, int64_t ldqa,
                        int T, int dn, int dr, int dv, int r) {
  const int h = int(blockIdx.x), c = int(blockIdx.y) * kAbsorbQThreads + int(threadIdx.x);
  const int dq = dn + dr, w = r + dr;
  if (blockIdx.y == 0)
    for (int t = 0; t < T; ++t)
      for (int j = int(threadIdx.x); j < dr; j += kAbsorbQThreads)
        qa[int64_t(t) * ldqa + int64_t(h) * w + r + j] = q[int64_t(t) * ldq + int64_t(h) * dq + dn + j];
  if (c >= r) return;
  dev_ptr<const W> wk = kvb + int64_t(h) * (dn + dv) * r + c;
  for (int t0 = 0; t0 < T; t0 += kAbsorbQRows) {
    const int nt = min(kAbsorbQRows, T - t0);
    float acc[kAbsorbQRows];
#pragma unroll
    for (int tt = 0; tt < kAbsorbQRows; ++tt) acc[tt] = 0.0f;
    for (int i = 0; i < dn; ++i) {
      const float wv = to_f32(wk[int64_t(i) * r]);
#pragma unroll
      for (int tt = 0; tt < kAbsorbQRows; ++tt)
        if (tt < nt) acc[tt] = fmaf(q[int64_t(t0 + tt) * ldq + int64_t(h) * dq + i], wv, acc[tt]);
    }
#pragma unroll
    for (int tt = 0; tt < kAbsorbQRows; ++tt)
      if (tt < nt) qa[int64_t(t0 + tt) * ldqa + int64_t(h) * w + c] = acc[tt];
  }
}

constexpr int kAbsorbOutWarps = 4;
constexpr int kAbsorbOutPer = 16;  // r <= 32 * 16

// out[t, h·dv + j] = Σ_{c<r} o[t, h·r + c] · kv_b[h·(dn+dv) + dn + j, c]. grid (nh, ceil(dv / kAbsorbOutWarps)); a
// warp per output column j keeps its weight row in registers and walks the query rows.
template <class W>
__global__ void __launch_bounds__(kAbsorbOutWarps * 32)
    mla_absorb_out_kernel(dev_ptr<const float> o, int64_t ldo, dev_ptr<const W> kvb, dev_ptr<float> out, int64_t ldout,
                          int T, int dn, int dv, int r) {
  const int lane = int(threadIdx.x % 32), h = int(blockIdx.x);
  const int j = int(blockIdx.y) * kAbsorbOutWarps + int(threadIdx.x / 32);
  if (j >= dv) return;  // warp-uniform
  dev_ptr<const W> wr = kvb + (int64_t(h) * (dn + dv) + dn + j) * r;
  float wv[kAbsorbOutPer];
#pragma unroll
  for (int q = 0; q < kAbsorbOutPer; ++q) wv[q] = lane + 32 * q < r ? to_f32(wr[lane + 32 * q]) : 0.0f;
  for (int t = 0; t < T; ++t) {
    dev_ptr<const float> ot = o + int64_t(t) * ldo + int64_t(h) * r;
    float a = 0.0f;
#pragma unroll
    for (int q = 0; q < kAbsorbOutPer; ++q)
      if (lane + 32 * q < r) a = fmaf(ot[lane + 32 * q], wv[q], a);
    a = warp_reduce_sum(a);
    if (lane == 0) out[int64_t(t) * ldout + int64_t(h) * dv + j] = a;
  }
}

bool mla_supported(int64_t r, int64_t dr) { return r >= 1 && r <= 512 && dr >= 0 && (r + dr) <= 1024; }

void launch_mla_absorb_q(const float* q, int64_t ldq, const void* kvb, KType type, float* qa, int64_t ldqa, int64_t T,
                         int64_t nh, int64_t dn, int64_t dr, int64_t dv, int64_t r, cudaStream_t stream) {
  const dim3 grid(unsigned(nh), unsigned((r + kAbsorbQThreads - 1) / kAbsorbQThreads));
  const int64_t dq = dn + dr, w = r + dr;
  auto pq = make_dev_ptr(q, size_t((T - 1) * ldq + nh * dq));
  auto pa = make_dev_ptr(qa, size_t((T - 1) * ldqa + nh * w));
  const size_t n = size_t(nh * (dn + dv) * r);
  if (type == KType::kBF16)
    infer_launch(mla_absorb_q_kernel<__nv_bfloat16>, grid, dim3(kAbsorbQThreads), 0, stream, pq, ldq,
                 make_dev_ptr(static_cast<const __nv_bfloat16*>(kvb), n), pa, ldqa, int(T), int(dn), int(dr), int(dv),
                 int(r));
  else
    infer_launch(mla_absorb_q_kernel<float>, grid, dim3(kAbsorbQThreads), 0, stream, pq, ldq,
                 make_dev_ptr(static_cast<const float*>(kvb), n), pa, ldqa, int(T), int(dn), int(dr), int(dv), int(r));
}

void launch_mla_absorb_out(const float* o, int64_t ldo, const void* kvb, KType type, float* out, int64_t ldout,
                           int64_t T, int64_t nh, int64_t dn, int64_t dv, int64_t r, cudaStream_t stream) {
  const dim3 grid(unsigned(nh), unsigned((dv + kAbsorbOutWarps - 1) / kAbsorbOutWarps));
  auto po = make_dev_ptr(o, size_t((T - 1) * ldo + nh * r));
  auto pout = make_dev_ptr(out, size_t((T - 1) * ldout + nh * dv));
  const size_t n = size_t(nh * (dn + dv) * r);
  if (type == KType::kBF16)
    infer_launch(mla_absorb_out_kernel<__nv_bfloat16>, grid, dim3(kAbsorbOutWarps * 32), 0, stream, po, ldo,
                 make_dev_ptr(static_cast<const __nv_bfloat16*>(kvb), n), pout, ldout, int(T), int(dn), int(dv), int(r));
  else
    infer_launch(mla_absorb_out_kernel<float>, grid, dim3(kAbsorbOutWarps * 32), 0, stream, po, ldo,
                 make_dev_ptr(static_cast<const float*>(kvb), n), pout, ldout, int(T), int(dn), int(dv), int(r));
}

// ------------------------------------------------------------------ absorbed attention (decode, split-K)

constexpr int kMlaHeads = 8;    // heads per block (a warp each while scoring)
constexpr int kMlaKeys = 8;     // keys per shared-memory tile
constexpr int kMlaThreads = kMlaHeads * 32;
constexpr int kMlaCols = 2;     // latent columns per thread: r <= kMlaThreads * kMlaCols

size_t mla_attention_smem(int64_t r, int64_t dr) {
  return size_t((kMlaHeads + kMlaKeys) * (r + dr) + kMlaHeads * kMlaKeys + 3 * kMlaHeads) * sizeof(float);
}

// grid (ceil(nh / kMlaHeads), splits, T). Block (head group g, split s, row t) streams the keys of its split once
// for its kMlaHeads heads: scores by one warp per head (lanes over the r + dr dims), an online softmax per head, and
// the latent accumulators of all its heads kept by every thread for kMlaCols columns. splits == 1: o is written
// normalised; else partial[((t·nh + h)·splits + s)·(r + 2) + :] = (unnormalised o, m, l).
__global__ void __launch_bounds__(kMlaThreads)
    mla_attention_kernel(dev_ptr<const float> qa, int64_t ldqa, dev_ptr<const float> cache, int r, int dr,
                         dev_ptr<float> o, int64_t ldo, int nh, float scale, int pos0, dev_ptr<const int32_t> pos_dev,
                         int splits, dev_ptr<float> partial) {
  const int w = r + dr, tid = int(threadIdx.x), lane = tid % 32, wi = tid / 32;
  const int hg0 = int(blockIdx.x) * kMlaHeads, s = int(blockIdx.y), t = int(blockIdx.z);
  const int nk = (pos_dev ? pos_dev[0] : pos0) + t + 1;
  const int per = (nk + splits - 1) / splits;
  const int k0 = min(nk, s * per), k1 = min(nk, k0 + per);
  float* qs = infer_dynamic_smem<float>();  // (kMlaHeads, w)
  float* ks = qs + kMlaHeads * w;            // (kMlaKeys, w)
  float* ps = ks + kMlaKeys * w;             // (kMlaHeads, kMlaKeys)
  float* corr = ps + kMlaHeads * kMlaKeys;   // (kMlaHeads)
  float* ml = corr + kMlaHeads;              // (2, kMlaHeads)
  for (int i = tid; i < kMlaHeads * w; i += kMlaThreads) {
    const int h = hg0 + i / w;
    qs[i] = h < nh ? qa[int64_t(t) * ldqa + int64_t(h) * w + i % w] : 0.0f;
  }
  float acc[kMlaHeads][kMlaCols];
#pragma unroll
  for (int h = 0; h < kMlaHeads; ++h)
#pragma unroll
    for (int q = 0; q < kMlaCols; ++q) acc[h][q] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // of head hg0 + wi (every lane of warp wi)
  const bool live = hg0 + wi < nh;
  for (int kt = k0; kt < k1; kt += kMlaKeys) {
    const int nt = min(kMlaKeys, k1 - kt);
    __syncthreads();  // q loaded; the previous tile's readers are done
    for (int i = tid; i < nt * w; i += kMlaThreads) ks[i] = cache[int64_t(kt) * w + i];
    __syncthreads();
    float sj = -INFINITY;  // lane j: the score of key kt + j
    for (int j = 0; j < nt; ++j) {
      float a = 0.0f;
      for (int c = lane; c < w; c += 32) a = fmaf(qs[wi * w + c], ks[j * w + c], a);
      a = warp_reduce_sum(a);
      if (lane == j) sj = a * scale;
    }
    const float mnew = fmaxf(m, warp_reduce_max(sj));
    const float pj = lane < nt ? expf(sj - mnew) : 0.0f;
    const float cr = expf(m - mnew);  // 0 while the state is empty (m = -inf)
    l = l * cr + warp_reduce_sum(pj);
    m = mnew;
    if (lane < kMlaKeys) ps[wi * kMlaKeys + lane] = live ? pj : 0.0f;
    if (lane == 0) corr[wi] = live ? cr : 1.0f;
    __syncthreads();
#pragma unroll
    for (int h = 0; h < kMlaHeads; ++h) {
      const float ch = corr[h];
#pragma unroll
      for (int q = 0; q < kMlaCols; ++q) {
        const int c = tid + q * kMlaThreads;
        if (c >= r) continue;
        float a = acc[h][q] * ch;
        for (int j = 0; j < nt; ++j) a = fmaf(ps[h * kMlaKeys + j], ks[j * w + c], a);
        acc[h][q] = a;
      }
    }
  }
  __syncthreads();
  if (lane == 0) {
    ml[wi] = m;
    ml[kMlaHeads + wi] = l;
  }
  __syncthreads();
#pragma unroll
  for (int h = 0; h < kMlaHeads; ++h) {
    if (hg0 + h >= nh) break;
    const int64_t row = int64_t(t) * nh + hg0 + h;
#pragma unroll
    for (int q = 0; q < kMlaCols; ++q) {
      const int c = tid + q * kMlaThreads;
      if (c >= r) continue;
      if (splits == 1)
        o[int64_t(t) * ldo + int64_t(hg0 + h) * r + c] = acc[h][q] / ml[kMlaHeads + h];
      else
        partial[(row * splits + s) * (r + 2) + c] = acc[h][q];
    }
    if (splits > 1 && tid == 0) {
      partial[(row * splits + s) * (r + 2) + r] = ml[h];
      partial[(row * splits + s) * (r + 2) + r + 1] = ml[kMlaHeads + h];
    }
  }
}

// o[t, h·r + c] from the splits' (o, m, l); grid (nh, T).
__global__ void mla_combine_kernel(dev_ptr<const float> partial, int splits, int r, int nh, dev_ptr<float> o,
                                   int64_t ldo) {
  const int h = int(blockIdx.x), t = int(blockIdx.y);
  dev_ptr<const float> p = partial + (int64_t(t) * nh + h) * splits * (r + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, p[s * (r + 2) + r]);
  float den = 0.0f;
  for (int s = 0; s < splits; ++s) den += p[s * (r + 2) + r + 1] * expf(p[s * (r + 2) + r] - M);
  for (int c = int(threadIdx.x); c < r; c += int(blockDim.x)) {
    float num = 0.0f;
    for (int s = 0; s < splits; ++s) num += p[s * (r + 2) + c] * expf(p[s * (r + 2) + r] - M);
    o[int64_t(t) * ldo + int64_t(h) * r + c] = num / den;
  }
}

void launch_mla_attention(const MlaAttentionArgs& a, int splits, float* partial, cudaStream_t stream) {
  const int64_t w = a.r + a.dr;
  const dim3 grid(unsigned((a.nh + kMlaHeads - 1) / kMlaHeads), unsigned(splits), unsigned(a.T));
  auto po = make_dev_ptr(a.o, size_t((a.T - 1) * a.ldo + a.nh * a.r));
  auto pp = make_dev_ptr(partial, splits > 1 ? size_t(a.T * a.nh * splits * (a.r + 2)) : 0);
  infer_launch(mla_attention_kernel, grid, dim3(kMlaThreads), mla_attention_smem(a.r, a.dr), stream,
               make_dev_ptr(a.qa, size_t((a.T - 1) * a.ldqa + a.nh * w)), a.ldqa,
               make_dev_ptr(a.cache, size_t(a.n_ctx * w)), int(a.r), int(a.dr), po, a.ldo, int(a.nh), a.scale,
               int(a.pos0), make_dev_ptr(a.pos_dev, a.pos_dev ? 1 : 0), splits, pp);
  if (splits > 1)
    infer_launch(mla_combine_kernel, dim3(unsigned(a.nh), unsigned(a.T)), dim3(128), 0, stream, pp, splits, int(a.r),
                 int(a.nh), po, a.ldo);
}

// ------------------------------------------------------------------ naive attention over one key block

constexpr int kMlaBlockThreads = 128;

// grid (nh, T); block (h, t) scores the block's visible keys (a warp per key), then rescales and accumulates its
// output row. Shared: the nj scores.
__global__ void __launch_bounds__(kMlaBlockThreads)
    mla_block_kernel(dev_ptr<const float> q, int64_t ldq, dev_ptr<const float> kvb, int64_t ldkvb,
                     dev_ptr<const float> kr, int64_t ldkr, int j0, int nj, dev_ptr<float> m, dev_ptr<float> l,
                     dev_ptr<float> out, int64_t ldo, int nh, int dn, int dr, int dv, float scale, int pos0,
                     dev_ptr<const int32_t> pos_dev, int first, int last) {
  const int h = int(blockIdx.x), t = int(blockIdx.y), tid = int(threadIdx.x), lane = tid % 32, wi = tid / 32;
  constexpr int kWarps = kMlaBlockThreads / 32;
  const int dq = dn + dr, dkv = dn + dv;
  const int p0 = pos_dev ? pos_dev[0] : pos0;
  const int n = max(0, min(nj, p0 + t + 1 - j0));
  float* sc = infer_dynamic_smem<float>();  // (nj)
  dev_ptr<const float> qh = q + int64_t(t) * ldq + int64_t(h) * dq;
  for (int j = wi; j < n; j += kWarps) {
    float a = 0.0f;
    for (int i = lane; i < dn; i += 32) a = fmaf(qh[i], kvb[int64_t(j) * ldkvb + int64_t(h) * dkv + i], a);
    for (int i = lane; i < dr; i += 32) a = fmaf(qh[dn + i], kr[int64_t(j) * ldkr + i], a);
    a = warp_reduce_sum(a);
    if (lane == 0) sc[j] = a * scale;
  }
  __syncthreads();
  const int64_t i = int64_t(t) * nh + h;
  const float m_old = first ? -INFINITY : m[i], l_old = first ? 0.0f : l[i];
  float mx = -INFINITY;
  for (int j = tid; j < n; j += kMlaBlockThreads) mx = fmaxf(mx, sc[j]);
  mx = fmaxf(m_old, block_reduce_max(mx));
  float sum = 0.0f;
  for (int j = tid; j < n; j += kMlaBlockThreads) sum += expf(sc[j] - mx);
  sum = block_reduce_sum(sum);  // its barriers also order the reads of sc above before the writes below
  for (int j = tid; j < n; j += kMlaBlockThreads) sc[j] = expf(sc[j] - mx);
  __syncthreads();
  const float cr = n > 0 ? expf(m_old - mx) : 1.0f;
  const float l_new = n > 0 ? l_old * cr + sum : l_old;
  for (int u = tid; u < dv; u += kMlaBlockThreads) {
    float a = first ? 0.0f : out[int64_t(t) * ldo + int64_t(h) * dv + u] * cr;
    for (int j = 0; j < n; ++j) a = fmaf(sc[j], kvb[int64_t(j) * ldkvb + int64_t(h) * dkv + dn + u], a);
    if (last) a *= 1.0f / l_new;
    out[int64_t(t) * ldo + int64_t(h) * dv + u] = a;
  }
  __syncthreads();  // every thread read m[i], l[i]
  if (tid == 0) {
    if (n > 0) m[i] = mx;
    else if (first) m[i] = -INFINITY;
    l[i] = l_new;
  }
}

void launch_mla_attention_block(const MlaBlockArgs& a, cudaStream_t stream) {
  const int64_t dq = a.dn + a.dr, dkv = a.dn + a.dv;
  infer_launch(mla_block_kernel, dim3(unsigned(a.nh), unsigned(a.T)), dim3(kMlaBlockThreads),
               size_t(std::max<int64_t>(a.nj, 1)) * sizeof(float), stream,
               make_dev_ptr(a.q, size_t((a.T - 1) * a.ldq + a.nh * dq)), a.ldq,
               make_dev_ptr(a.kvb, size_t((a.nj - 1) * a.ldkvb + a.nh * dkv)), a.ldkvb,
               make_dev_ptr(a.kr, size_t((a.nj - 1) * a.ldkr + a.dr)), a.ldkr, int(a.j0), int(a.nj),
               make_dev_ptr(a.m, size_t(a.T * a.nh)), make_dev_ptr(a.l, size_t(a.T * a.nh)),
               make_dev_ptr(a.out, size_t((a.T - 1) * a.ldo + a.nh * a.dv)), a.ldo, int(a.nh), int(a.dn), int(a.dr),
               int(a.dv), a.scale, int(a.pos0), make_dev_ptr(a.pos_dev, a.pos_dev ? 1 : 0), a.first ? 1 : 0,
               a.last ? 1 : 0);
}

void init_mla_kernels() { infer_set_max_dynamic_smem(mla_attention_kernel, mla_attention_smem(512, 512)); }

}  // namespace INFER_CUDA_NS
}  // namespace infer
