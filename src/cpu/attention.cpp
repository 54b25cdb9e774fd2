// attention.cpp — causal GQA attention over an fp32 KV cache (see attention.h).
#include "cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "common.h"
#include "cpu/ops.h"
#include "cpu/simd_math.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace infer::cpu {

namespace {

constexpr int kKeyBlock = 32;  // keys per block: the block's transposed keys and scores stay in L1
constexpr int kMaxQ = 16;      // query vectors per work item (rows × heads of one KV head)

// One work item: query vectors qv[i] (d floats) that may see keys 0..last[i], written to outv[i] (d floats).
struct ItemArgs {
  const float* qv[kMaxQ];
  float* outv[kMaxQ];
  int64_t last[kMaxQ];
  int nq;
  const float* k;  // key j at k + row(j)·ld (this KV head's d values)
  const float* v;
  int64_t ld, d;
  float scale;
  const int32_t* blocks;  // null: row(j) = j; else the paged cache's row(j) = blocks[j / bs]·bs + j % bs
  int64_t bs;
  const float* kt;  // null, or this KV head's keys already transposed: block b at kt + b·d·32 (d × 32, zero-padded)
};

// Key and value pointers of keys kb .. kb + nk - 1 (one key block).
inline void key_rows(const ItemArgs& a, int64_t kb, int64_t nk, const float** kp, const float** vp) {
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t key = kb + j;
    const int64_t row = a.blocks ? int64_t(a.blocks[key / a.bs]) * a.bs + key % a.bs : key;
    kp[j] = a.k + row * a.ld;
    vp[j] = a.v + row * a.ld;
  }
}

// Scalar path (any d; the generic and AVX2 ISAs).
void item_scalar(const ItemArgs& a, float* S, float* O) {
  const int64_t d = a.d;
  int64_t nkeys = 0;
  for (int i = 0; i < a.nq; ++i) nkeys = std::max(nkeys, a.last[i] + 1);
  float m[kMaxQ], l[kMaxQ];
  for (int i = 0; i < a.nq; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
    std::fill(O + i * d, O + (i + 1) * d, 0.f);
  }
  const float* kp[kKeyBlock];
  const float* vp[kKeyBlock];
  for (int64_t kb = 0; kb < nkeys; kb += kKeyBlock) {
    const int64_t nk = std::min<int64_t>(kKeyBlock, nkeys - kb);
    key_rows(a, kb, nk, kp, vp);
    for (int i = 0; i < a.nq; ++i) {
      const int64_t valid = std::clamp<int64_t>(a.last[i] + 1 - kb, 0, nk);
      float* s = S + i * kKeyBlock;
      if (valid == 0) continue;
      float mx = m[i];
      for (int64_t j = 0; j < valid; ++j) {
        const float* kj = kp[j];
        float acc = 0.f;
        for (int64_t u = 0; u < d; ++u) acc += a.qv[i][u] * kj[u];
        s[j] = acc * a.scale;
        mx = std::max(mx, s[j]);
      }
      const float corr = std::exp(m[i] - mx);
      float sum = 0.f;
      for (int64_t j = 0; j < valid; ++j) sum += (s[j] = std::exp(s[j] - mx));
      l[i] = l[i] * corr + sum;
      m[i] = mx;
      float* o = O + i * d;
      for (int64_t u = 0; u < d; ++u) o[u] *= corr;
      for (int64_t j = 0; j < valid; ++j) {
        const float* vj = vp[j];
        for (int64_t u = 0; u < d; ++u) o[u] += s[j] * vj[u];
      }
    }
  }
  for (int i = 0; i < a.nq; ++i) {
    const float inv = 1.0f / l[i];
    for (int64_t u = 0; u < d; ++u) a.outv[i][u] = O[i * d + u] * inv;
  }
}

#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl")))

// 16×16 transpose: r[i] = row i in, column i out.
T512 inline void transpose16(__m512 r[16]) {
  __m512 a[16], b[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // b[4i + m], 128-bit lane L: column 4L + m of rows 4i..4i+3
    const __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]);
    const __m512d a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
    b[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 c01 = _mm512_shuffle_f32x4(b[m], b[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 c23 = _mm512_shuffle_f32x4(b[m], b[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512 d01 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 d23 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], _MM_SHUFFLE(3, 2, 3, 2));
    r[m] = _mm512_shuffle_f32x4(c01, d01, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + m] = _mm512_shuffle_f32x4(c01, d01, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + m] = _mm512_shuffle_f32x4(c23, d23, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + m] = _mm512_shuffle_f32x4(c23, d23, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// The key block kp[0 .. nk) (nk ≤ 32) transposed: Kt[u][j] (d × 32), keys past nk zero.
template <int NC>
T512 void transpose_key_block(const float* const* kp, int64_t nk, float* Kt) {
  for (int g = 0; g < 2; ++g) {
    for (int c = 0; c < NC; ++c) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t j = 16 * g + i;
        r[i] = j < nk ? _mm512_loadu_ps(kp[j] + 16 * c) : _mm512_setzero_ps();
      }
      transpose16(r);
      for (int i = 0; i < 16; ++i) _mm512_store_ps(Kt + (16 * c + i) * 32 + 16 * g, r[i]);
    }
  }
}

// Scores of nq query vectors against one key block through its transposed form Kt[u][j] (d × 32): per u, two key
// vectors serve 8 query vectors (the broadcast q[u] comes from memory).
template <int NC>
T512 void scores_transposed(const ItemArgs& a, const float* Kt, float* S) {
  constexpr int64_t d = 16 * NC;
  const __m512 sc = _mm512_set1_ps(a.scale);
  int i = 0;
  for (; i + 8 <= a.nq; i += 8) {
    __m512 acc[8][2];
    for (int q = 0; q < 8; ++q) acc[q][0] = acc[q][1] = _mm512_setzero_ps();
    for (int64_t u = 0; u < d; ++u) {
      const __m512 k0 = _mm512_load_ps(Kt + u * 32), k1 = _mm512_load_ps(Kt + u * 32 + 16);
      for (int q = 0; q < 8; ++q) {
        const __m512 qv = _mm512_set1_ps(a.qv[i + q][u]);
        acc[q][0] = _mm512_fmadd_ps(qv, k0, acc[q][0]);
        acc[q][1] = _mm512_fmadd_ps(qv, k1, acc[q][1]);
      }
    }
    for (int q = 0; q < 8; ++q) {
      _mm512_storeu_ps(S + (i + q) * kKeyBlock, _mm512_mul_ps(acc[q][0], sc));
      _mm512_storeu_ps(S + (i + q) * kKeyBlock + 16, _mm512_mul_ps(acc[q][1], sc));
    }
  }
  for (; i < a.nq; ++i) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t u = 0; u < d; ++u) {
      const __m512 qv = _mm512_set1_ps(a.qv[i][u]);
      acc0 = _mm512_fmadd_ps(qv, _mm512_load_ps(Kt + u * 32), acc0);
      acc1 = _mm512_fmadd_ps(qv, _mm512_load_ps(Kt + u * 32 + 16), acc1);
    }
    _mm512_storeu_ps(S + i * kKeyBlock, _mm512_mul_ps(acc0, sc));
    _mm512_storeu_ps(S + i * kKeyBlock + 16, _mm512_mul_ps(acc1, sc));
  }
}

// O[q][16c ..] = O[q][16c ..]·corr[q] + Σ_{j<n} S[q][j] · vp[j][16c ..] for q0 ≤ q < q0+QN, c0 ≤ c < c0+CN.
template <int QN, int CN>
T512 void pv_block(const ItemArgs& a, const float* const* vp, int64_t n, const float* S, const float* corr, float* O,
                   int q0, int c0) {
  const int64_t d = a.d;
  __m512 o[QN][CN];
  for (int q = 0; q < QN; ++q) {
    const __m512 cq = _mm512_set1_ps(corr[q0 + q]);
    for (int c = 0; c < CN; ++c) o[q][c] = _mm512_mul_ps(_mm512_loadu_ps(O + (q0 + q) * d + 16 * (c0 + c)), cq);
  }
  for (int64_t j = 0; j < n; ++j) {
    const float* vj = vp[j] + 16 * c0;
    __m512 vv[CN];
    for (int c = 0; c < CN; ++c) vv[c] = _mm512_loadu_ps(vj + 16 * c);
    for (int q = 0; q < QN; ++q) {
      const __m512 p = _mm512_set1_ps(S[(q0 + q) * kKeyBlock + j]);
      for (int c = 0; c < CN; ++c) o[q][c] = _mm512_fmadd_ps(p, vv[c], o[q][c]);
    }
  }
  for (int q = 0; q < QN; ++q)
    for (int c = 0; c < CN; ++c) _mm512_storeu_ps(O + (q0 + q) * d + 16 * (c0 + c), o[q][c]);
}
using PvFn = void (*)(const ItemArgs&, const float* const*, int64_t, const float*, const float*, float*, int, int);
constexpr PvFn kPv[5][5] = {
    {nullptr, nullptr, nullptr, nullptr, nullptr},
    {nullptr, pv_block<1, 1>, pv_block<1, 2>, pv_block<1, 3>, pv_block<1, 4>},
    {nullptr, pv_block<2, 1>, pv_block<2, 2>, pv_block<2, 3>, pv_block<2, 4>},
    {nullptr, pv_block<3, 1>, pv_block<3, 2>, pv_block<3, 3>, pv_block<3, 4>},
    {nullptr, pv_block<4, 1>, pv_block<4, 2>, pv_block<4, 3>, pv_block<4, 4>},
};

// AVX-512 path for d = 16·NC: per key block, the scores of every query vector (each key row loaded once for all
// of them, or through a transposed block for 8+ vectors), an online-softmax update, then P·V in 4 × 4 register tiles.
template <int NC>
T512 void item_512(const ItemArgs& a, float* S, float* O) {
  constexpr int64_t d = 16 * NC;
  alignas(64) float Kt[d * kKeyBlock];
  int64_t nkeys = 0;
  for (int i = 0; i < a.nq; ++i) nkeys = std::max(nkeys, a.last[i] + 1);
  float m[kMaxQ], l[kMaxQ], corr[kMaxQ];
  int64_t valid[kMaxQ];
  for (int i = 0; i < a.nq; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(O + i * d + 16 * c, _mm512_setzero_ps());
  }
  for (int64_t kb = 0; kb < nkeys; kb += kKeyBlock) {
    const int64_t nk = std::min<int64_t>(kKeyBlock, nkeys - kb);
    const float* kp[kKeyBlock];
    const float* vp[kKeyBlock];
    key_rows(a, kb, nk, kp, vp);
    int64_t nk_any = 0;
    for (int i = 0; i < a.nq; ++i) {
      valid[i] = std::clamp<int64_t>(a.last[i] + 1 - kb, 0, nk);
      nk_any = std::max(nk_any, valid[i]);
    }
    // Scores: through a transposed key block when enough query vectors share it, else one dot product at a time.
    if (a.nq >= 8) {
      const float* kt = a.kt;
      if (kt) {
        kt += (kb / kKeyBlock) * d * kKeyBlock;
      } else {
        transpose_key_block<NC>(kp, nk_any, Kt);
        kt = Kt;
      }
      scores_transposed<NC>(a, kt, S);
    } else {
      for (int64_t j = 0; j < nk_any; ++j) {
        const float* kj = kp[j];
        __m512 kr[NC];
        for (int c = 0; c < NC; ++c) kr[c] = _mm512_loadu_ps(kj + 16 * c);
        for (int i = 0; i < a.nq; ++i) {
          if (j >= valid[i]) continue;
          __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a.qv[i]), kr[0]);
          for (int c = 1; c < NC; ++c) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a.qv[i] + 16 * c), kr[c], acc);
          S[i * kKeyBlock + j] = _mm512_reduce_add_ps(acc) * a.scale;
        }
      }
    }
    // Online softmax: p = exp(s - m_new) for the visible keys, 0 for the rest of the block.
    for (int i = 0; i < a.nq; ++i) {
      float* s = S + i * kKeyBlock;
      const int64_t nv = valid[i];
      if (nv == 0) {
        corr[i] = 1.f;
        std::fill(s, s + nk, 0.f);
        continue;
      }
      __m512 mv = _mm512_set1_ps(m[i]);
      int64_t j = 0;
      for (; j + 16 <= nv; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(s + j));
      float mx = _mm512_reduce_max_ps(mv);
      for (; j < nv; ++j) mx = std::max(mx, s[j]);
      const __m512 mb = _mm512_set1_ps(mx);
      __m512 sum = _mm512_setzero_ps();
      for (j = 0; j < nk; j += 16) {
        const int64_t left = nv - j;
        const __mmask16 mk = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
        const __m512 p = _mm512_maskz_mov_ps(mk, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), mb)));
        sum = _mm512_add_ps(sum, p);
        _mm512_storeu_ps(s + j, p);
      }
      corr[i] = std::exp(m[i] - mx);
      l[i] = l[i] * corr[i] + _mm512_reduce_add_ps(sum);
      m[i] = mx;
    }
    // O = O·corr + P·V in register blocks of 4 query vectors × 4 chunks of 16 values: per key, 4 value loads
    // serve 16 FMAs.
    for (int q0 = 0; q0 < a.nq; q0 += 4) {
      const int qn = std::min(4, a.nq - q0);
      int64_t n = 0;
      for (int q = q0; q < q0 + qn; ++q) n = std::max(n, valid[q]);
      if (n == 0) continue;
      for (int c0 = 0; c0 < NC; c0 += 4) {
        const int cn = std::min(4, NC - c0);
        kPv[qn][cn](a, vp, n, S, corr, O, q0, c0);
      }
    }
  }
  for (int i = 0; i < a.nq; ++i) {
    const __m512 inv = _mm512_set1_ps(1.0f / l[i]);
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(a.outv[i] + 16 * c, _mm512_mul_ps(_mm512_loadu_ps(O + i * d + 16 * c), inv));
  }
}
#endif

using ItemFn = void (*)(const ItemArgs&, float*, float*);
using KtFn = void (*)(const float* const*, int64_t, float*);

// make(std::integral_constant<int, NC>{}) for head size d = 16·NC (NC ≤ 8) where the AVX-512 path runs; else fallback.
template <typename R, typename Make>
R for_head_size(int64_t d, R fallback, Make&& make) {
#if defined(__x86_64__)
  if (active_isa() >= Isa::Avx512 && d % 16 == 0) {
    switch (d / 16) {
      case 1: return make(std::integral_constant<int, 1>{});
      case 2: return make(std::integral_constant<int, 2>{});
      case 3: return make(std::integral_constant<int, 3>{});
      case 4: return make(std::integral_constant<int, 4>{});
      case 5: return make(std::integral_constant<int, 5>{});
      case 6: return make(std::integral_constant<int, 6>{});
      case 7: return make(std::integral_constant<int, 7>{});
      case 8: return make(std::integral_constant<int, 8>{});
      default: break;
    }
  }
#else
  (void)d;
  (void)make;
#endif
  return fallback;
}

// The attention item kernel for head size d.
ItemFn pick(int64_t d) {
#if defined(__x86_64__)
  return for_head_size<ItemFn>(d, item_scalar, [](auto nc) -> ItemFn { return item_512<decltype(nc)::value>; });
#else
  return for_head_size<ItemFn>(d, item_scalar, [](auto) -> ItemFn { return nullptr; });
#endif
}

// The key-block transpose for head size d, where item_512 scores through transposed blocks; else null.
KtFn pick_kt(int64_t d) {
#if defined(__x86_64__)
  return for_head_size<KtFn>(d, nullptr, [](auto nc) -> KtFn { return transpose_key_block<decltype(nc)::value>; });
#else
  return for_head_size<KtFn>(d, nullptr, [](auto) -> KtFn { return nullptr; });
#endif
}

}  // namespace

void attention(ThreadPool& pool, const float* q, int64_t ldq, const float* kc, const float* vc, int64_t ldkv,
               float* out, int64_t ldo, int64_t T, int64_t pos0, int64_t nh, int64_t nkv, int64_t d, float scale) {
  const AttnSeq seq{0, T, pos0, nullptr};
  attention(pool, q, ldq, kc, vc, ldkv, out, ldo, &seq, 1, 0, nh, nkv, d, scale);
}

void attention(ThreadPool& pool, const float* q, int64_t ldq, const float* kc, const float* vc, int64_t ldkv,
               float* out, int64_t ldo, const AttnSeq* seqs, int64_t n_seqs, int64_t bs, int64_t nh, int64_t nkv,
               int64_t d, float scale) {
  const int64_t rep = nh / nkv;
  // Work items per sequence: (block of its rows, KV head, block of that head's query heads) with at most kMaxQ query
  // vectors. A sequence's items are those of a call with it alone, so its outputs do not depend on the others.
  const int64_t heads_per_item = std::min<int64_t>(rep, kMaxQ);
  const int64_t rows_per_item = std::max<int64_t>(1, kMaxQ / heads_per_item);
  const int64_t head_blocks = (rep + heads_per_item - 1) / heads_per_item;
  std::vector<int64_t> item0(size_t(n_seqs) + 1, 0);  // first item of each sequence
  int64_t work = 0;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t row_blocks = (seqs[s].n + rows_per_item - 1) / rows_per_item;
    item0[size_t(s) + 1] = item0[size_t(s)] + row_blocks * nkv * head_blocks;
    work += (seqs[s].pos0 + seqs[s].n) * seqs[s].n * nh * d;
  }
  const int64_t n_items = item0[size_t(n_seqs)];
  const ItemFn fn = pick(d);
  // A single contiguous sequence whose key blocks are scored by several row blocks (a prompt): transpose every key
  // block once up front (threads split the blocks) instead of once per row block in the items.
  const float* kt_all = nullptr;
  int64_t kt_blocks = 0;
  {
    const int64_t row_blocks = n_seqs == 1 ? (seqs[0].n + rows_per_item - 1) / rows_per_item : 0;
    const bool shared = n_seqs == 1 && !seqs[0].blocks && row_blocks >= 2 && rows_per_item * heads_per_item >= 8;
    const KtFn tfn = shared ? pick_kt(d) : nullptr;
    if (tfn) {
      const int64_t nkeys = seqs[0].pos0 + seqs[0].n;
      kt_blocks = (nkeys + kKeyBlock - 1) / kKeyBlock;
      thread_local std::unique_ptr<float, void (*)(void*)> buf(nullptr, std::free);
      thread_local size_t cap = 0;
      const size_t need = size_t(nkv * kt_blocks * d * kKeyBlock);
      if (need > cap) {
        buf.reset(static_cast<float*>(std::aligned_alloc(64, (need * 4 + 63) / 64 * 64)));
        if (!buf) fail(INFER_ERR_OUT_OF_MEMORY, "attention: out of memory for the transposed keys");
        cap = need;
      }
      float* kt = buf.get();
      const int64_t nb = nkv * kt_blocks;
      auto transpose_range = [&](int, int64_t b0, int64_t b1) {
        const float* kp[kKeyBlock];
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t g = b / kt_blocks, kb = (b % kt_blocks) * kKeyBlock;
          const int64_t nk = std::min<int64_t>(kKeyBlock, nkeys - kb);
          for (int64_t j = 0; j < nk; ++j) kp[j] = kc + (kb + j) * ldkv + g * d;
          tfn(kp, nk, kt + b * d * kKeyBlock);
        }
      };
      if (work < min_parallel_work()) transpose_range(0, 0, nb);
      else pool.parallel_for(nb, 1, transpose_range);
      kt_all = kt;
    }
  }
  auto run_item = [&](int64_t item, float* S, float* O) {
    int64_t s = 0;
    while (item >= item0[size_t(s) + 1]) ++s;
    const AttnSeq& sq = seqs[s];
    const int64_t it = item - item0[size_t(s)];
    const int64_t row_blocks = (sq.n + rows_per_item - 1) / rows_per_item;
    // Items run latest rows first (the most keys), so the dynamic schedule below ends with short items.
    const int64_t rb = row_blocks - 1 - it / (nkv * head_blocks);
    const int64_t g = (it / head_blocks) % nkv, hb = it % head_blocks;
    ItemArgs a;
    a.nq = 0;
    a.k = kc + g * d;
    a.v = vc + g * d;
    a.ld = ldkv;
    a.d = d;
    a.scale = scale;
    a.blocks = sq.blocks;
    a.bs = bs;
    a.kt = kt_all ? kt_all + g * kt_blocks * d * kKeyBlock : nullptr;
    const int64_t t1 = std::min(sq.n, (rb + 1) * rows_per_item);
    const int64_t h1 = std::min(rep, (hb + 1) * heads_per_item);
    for (int64_t t = rb * rows_per_item; t < t1; ++t)
      for (int64_t hh = hb * heads_per_item; hh < h1; ++hh) {
        const int64_t h = g * rep + hh, row = sq.row0 + t;
        a.qv[a.nq] = q + row * ldq + h * d;
        a.outv[a.nq] = out + row * ldo + h * d;
        a.last[a.nq] = sq.pos0 + t;
        ++a.nq;
      }
    fn(a, S, O);
  };
  const int nt = work < min_parallel_work() ? 1 : int(std::min<int64_t>(pool.size(), n_items));
  std::atomic<int64_t> next{0};
  auto body = [&](int tid) {
    if (tid >= nt) return;
    thread_local std::vector<float> S, O;
    S.resize(size_t(kMaxQ * kKeyBlock));
    O.resize(size_t(kMaxQ * d));
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) run_item(it, S.data(), O.data());
  };
  if (nt <= 1) body(0);
  else pool.run_on_all(body);
}

}  // namespace infer::cpu
