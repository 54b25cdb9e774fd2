// backend_cpu.cpp — see backend_cpu.h.
#include "cpu/backend_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include "common.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/ops_fp8.h"

namespace infer {

float* CpuBackend::alloc(int64_t n) {
  float* p = static_cast<float*>(std::aligned_alloc(64, size_t((n * 4 + 63) / 64 * 64)));
  if (!p) fail(INFER_ERR_OUT_OF_MEMORY, "out of memory allocating " + std::to_string(n * 4 >> 20) + " MiB");
  return p;
}
void CpuBackend::release(float* p) { std::free(p); }
void CpuBackend::to_host(const float* src, float* dst, int64_t n) {
  if (src != dst) std::memcpy(dst, src, size_t(n) * 4);
}
void CpuBackend::from_host(const float* src, float* dst, int64_t n) {
  if (src != dst) std::memcpy(dst, src, size_t(n) * 4);
}
void* CpuBackend::alloc_kv(int64_t n_ctx, int64_t width) { return alloc(n_ctx * width); }
void CpuBackend::release_kv(void* kv) { release(static_cast<float*>(kv)); }

void CpuBackend::embed(const TensorInfo& table, const int32_t* ids, int64_t T, float* out, int64_t ldo) {
  const int64_t H = table.shape[1];
  const size_t esz = dtype_size(table.dtype);
  for (int64_t t = 0; t < T; ++t) cpu::row_to_f32(table.data + size_t(ids[t]) * H * esz, table.dtype, out + t * ldo, H);
}

void CpuBackend::rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T,
                         int64_t n, float eps) {
  cpu::parallel_rows(pool_, T, 4 * n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) cpu::rmsnorm(x + t * ldx, w.data, w.dtype, out + t * ldo, n, eps);
  });
}

void CpuBackend::add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const TensorInfo& w, float* out,
                             int64_t ldo, int64_t T, int64_t n, float eps) {
  cpu::parallel_rows(pool_, T, 5 * n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* xr = x + t * ldx;
      const float* yr = y + t * ldy;
      for (int64_t i = 0; i < n; ++i) xr[i] += yr[i];
      cpu::rmsnorm(xr, w.data, w.dtype, out + t * ldo, n, eps);
    }
  });
}

void CpuBackend::matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) {
  if (w.dtype == DType::F8_E4M3) return cpu::matmul_fp8(pool_, x, ldx, w, y, ldy, T);  // w8a16, ops_fp8.h
  if (w.pack) {
    const cpu::Matrix* parts[1] = {&w};
    if (const cpu::PackedMatrix* p = w.pack->get(pool_, parts, 1))
      return cpu::gemm(pool_, x, ldx, *p, y, ldy, T, w.exact);
  }
  cpu::matmul(pool_, x, ldx, w, y, ldy, T);
}

void CpuBackend::prepare_matmul(const std::vector<const cpu::Matrix*>& ws) {
  if (!ws.empty() && ws[0]->pack) ws[0]->pack->get(pool_, ws.data(), int(ws.size()));
}

void CpuBackend::matmul_concat(const float* x, int64_t ldx, const std::vector<const cpu::Matrix*>& ws, float* y,
                               int64_t ldy, int64_t T) {
  if (!ws.empty() && ws[0]->pack)
    if (const cpu::PackedMatrix* p = ws[0]->pack->get(pool_, ws.data(), int(ws.size())))
      return cpu::gemm(pool_, x, ldx, *p, y, ldy, T);
  Backend::matmul_concat(x, ldx, ws, y, ldy, T);
}

void CpuBackend::add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) {
  const int64_t n = bias.numel();
  std::vector<float> b(static_cast<size_t>(n));
  cpu::row_to_f32(bias.data, bias.dtype, b.data(), n);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * ldy + i] += b[i];
}

const float* CpuBackend::rope_angles(const RopeTable& rope, int64_t pos0, int64_t T, int64_t half) {
  if (&rope != rope_key_table_ || pos0 != rope_key_pos0_ || T != rope_key_T_ || half != rope_key_half_) {
    rope_cs_.resize(size_t(T * 2 * half));
    for (int64_t t = 0; t < T; ++t) {
      float* c = rope_cs_.data() + t * 2 * half;
      rope.angles(pos0 + t, c, c + half);
    }
    rope_key_table_ = &rope;
    rope_key_pos0_ = pos0;
    rope_key_T_ = T;
    rope_key_half_ = half;
  }
  return rope_cs_.data();
}

void CpuBackend::head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm,
                                float eps, int64_t pos0, const RopeTable& rope) {
  const int64_t half = d / 2;
  const float* cs = rope_angles(rope, pos0, T, half);
  cpu::parallel_rows(pool_, T, 6 * n_heads * d, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* c = cs + t * 2 * half;
      const float* s = c + half;
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + t * ldx + h * d;
        if (norm) cpu::rmsnorm(v, norm->data, norm->dtype, v, d, eps);
        cpu::rope_neox(v, c, s, d);
      }
    }
  });
}

void CpuBackend::kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) {
  float* c = static_cast<float*>(cache);
  cpu::parallel_rows(pool_, T, width, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) std::memcpy(c + (pos0 + t) * width, src + t * lds, size_t(width) * 4);
  });
}

void CpuBackend::attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out,
                           int64_t ldo, int64_t T, int64_t pos0, int64_t nh, int64_t nkv, int64_t d, float scale) {
  cpu::attention(pool_, q, ldq, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), nkv * d, out,
                 ldo, T, pos0, nh, nkv, d, scale);
}

void CpuBackend::kv_write_rows(void* cache, int64_t width, const int32_t* rows, const float* src, int64_t lds,
                               int64_t T) {
  float* c = static_cast<float*>(cache);
  cpu::parallel_rows(pool_, T, width, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) std::memcpy(c + int64_t(rows[t]) * width, src + t * lds, size_t(width) * 4);
  });
}

void CpuBackend::paged_attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out,
                                 int64_t ldo, const PagedSeq* seqs, int64_t n_seqs, int64_t bs, int64_t nh,
                                 int64_t nkv, int64_t d, float scale) {
  // The same kernel as attention() with each sequence's keys found through its block table, so a sequence's output
  // does not depend on how its cache is laid out or on the other sequences (bit for bit).
  attn_seqs_.resize(size_t(n_seqs));
  for (int64_t s = 0; s < n_seqs; ++s) attn_seqs_[size_t(s)] = {seqs[s].row0, seqs[s].n, seqs[s].pos0, seqs[s].blocks};
  cpu::attention(pool_, q, ldq, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), nkv * d, out,
                 ldo, attn_seqs_.data(), n_seqs, bs, nh, nkv, d, scale);
}

void CpuBackend::swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                        int64_t n) {
  cpu::parallel_rows(pool_, T, 8 * n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) cpu::silu_mul(g + t * ldg, u + t * ldu, y + t * ldy, n);
  });
}

void CpuBackend::swiglu_matmul(float* gu, int64_t ldgu, int64_t I, const cpu::Matrix& w, float* y, int64_t ldy,
                               int64_t T) {
  if (w.pack && w.cols == I) {
    const cpu::Matrix* parts[1] = {&w};
    if (const cpu::PackedMatrix* p = w.pack->get(pool_, parts, 1))
      return cpu::gemm_swiglu(pool_, gu, gu + I, ldgu, *p, y, ldy, T, w.exact);
  }
  Backend::swiglu_matmul(gu, ldgu, I, w, y, ldy, T);
}

void CpuBackend::add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) {
  cpu::parallel_rows(pool_, T, n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (int64_t i = 0; i < n; ++i) x[t * ldx + i] += y[t * ldy + i];
  });
}

// ---- MoE

void CpuBackend::gather_rows(const float* src, int64_t lds, const int32_t* rows, int64_t n, float* dst, int64_t ldd,
                             int64_t width) {
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * ldd, src + int64_t(rows[i]) * lds, size_t(width) * 4);
}

void CpuBackend::scatter_add_rows(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows,
                                  const float* weights, int64_t n, int64_t width) {
  for (int64_t i = 0; i < n; ++i) {
    float* d = dst + int64_t(rows[i]) * ldd;
    const float* s = src + i * lds;
    const float w = weights[i];
    for (int64_t j = 0; j < width; ++j) {
      const float p = s[j] * w;  // rounded, then added (torch: index_add_(out * w))
      d[j] += p;
    }
  }
}

// ---- MLA

void CpuBackend::rope_strided(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t head_stride, int64_t d,
                              bool interleaved, int64_t pos0, const RopeTable& rope) {
  const int64_t half = d / 2;
  const float* cs = rope_angles(rope, pos0, T, half);
  for (int64_t t = 0; t < T; ++t) {
    const float* c = cs + t * 2 * half;
    const float* s = c + half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + t * ldx + h * head_stride;
      if (!interleaved) {
        cpu::rope_neox(v, c, s, d);
        continue;
      }
      // Pairs (2i, 2i+1) rotate by angle i: what HF computes after de-interleaving to [x0, x2, …, x1, x3, …] and
      // applying rotate_half (its outputs are in that permuted order; q·k is the same either way).
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c[i] - b * s[i];
        v[2 * i + 1] = b * c[i] + a * s[i];
      }
    }
  }
}

void CpuBackend::kv_read(const void* cache, int64_t width, int64_t pos0, int64_t n, float* dst, int64_t ldd) {
  const float* c = static_cast<const float*>(cache);
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * ldd, c + (pos0 + i) * width, size_t(width) * 4);
}

void CpuBackend::mla_absorb_q(const float* q, int64_t ldq, const cpu::Matrix& kv_b, float* qa, int64_t ldqa,
                              int64_t T, int64_t nh, int64_t dn, int64_t dr, int64_t dv) {
  const int64_t r = kv_b.cols, dq = dn + dr, w = r + dr;
  if (int64_t(mla_rows_.size()) < pool_.size() * r) mla_rows_.resize(size_t(pool_.size() * r));
  const int64_t grain = std::max<int64_t>(1, cpu::min_parallel_work() / std::max<int64_t>(1, dn * r * T));
  pool_.parallel_for(nh, grain, [&](int tid, int64_t h0, int64_t h1) {
    float* row = mla_rows_.data() + size_t(tid) * r;
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        std::fill(qa + t * ldqa + h * w, qa + t * ldqa + h * w + r, 0.f);
        std::memcpy(qa + t * ldqa + h * w + r, q + t * ldq + h * dq + dn, size_t(dr) * 4);
      }
      // qa[t, h, :r] = Σ_i q_nope[t, h, i] · W_UK[h, i, :], one weight row at a time (read once for all t).
      for (int64_t i = 0; i < dn; ++i) {
        cpu::matrix_row_f32(kv_b, h * (dn + dv) + i, row);
        for (int64_t t = 0; t < T; ++t) {
          const float a = q[t * ldq + h * dq + i];
          float* o = qa + t * ldqa + h * w;
          for (int64_t c = 0; c < r; ++c) o[c] += a * row[c];
        }
      }
    }
  });
}

void CpuBackend::mla_attention_absorbed(const float* qa, int64_t ldqa, const void* cache, int64_t r, int64_t dr,
                                        float* o, int64_t ldo, int64_t T, int64_t pos0, int64_t nh, float scale) {
  const float* kv = static_cast<const float*>(cache);
  const int64_t w = r + dr;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t nk = pos0 + t + 1;
    if (int64_t(mla_scores_.size()) < nh * nk) mla_scores_.resize(size_t(nh * nk));
    float* S = mla_scores_.data();  // (nh, nk)
    const float* qt = qa + t * ldqa;
    // Scores S[h, j] = scale · qa[h] · cache[j]: the cache rows of a key range are the rows of an fp32 matrix and the
    // heads its tokens, so the matmul kernels (SIMD, 4 keys × 4 heads per tile) read each cache row once for all
    // heads. Key ranges are split over threads; every score is computed by one thread in a fixed order.
    pool_.parallel_for(nk, std::max<int64_t>(16, cpu::min_parallel_work() / (nh * w)), [&](int, int64_t j0, int64_t j1) {
      cpu::Matrix keys;
      keys.dtype = DType::F32;
      keys.data = kv + j0 * w;
      keys.rows = j1 - j0;
      keys.cols = w;
      cpu::matmul_serial(qt, w, keys, S + j0, nk, nh, 0, j1 - j0);
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t j = j0; j < j1; ++j) S[h * nk + j] *= scale;
    });
    // Softmax per head, then o[h] = Σ_j p_j · latent_j (each thread streams the cache once for its heads).
    pool_.parallel_for(nh, std::max<int64_t>(1, cpu::min_parallel_work() / (nk * r)), [&](int, int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) {
        float* sh = S + h * nk;
        float mx = -INFINITY;
        for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, sh[j]);
        float sum = 0.f;
        for (int64_t j = 0; j < nk; ++j) sum += (sh[j] = std::exp(sh[j] - mx));
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < nk; ++j) sh[j] *= inv;
        std::fill(o + t * ldo + h * r, o + t * ldo + (h + 1) * r, 0.f);
      }
      for (int64_t j = 0; j < nk; ++j) {
        const float* kj = kv + j * w;
        for (int64_t h = h0; h < h1; ++h) {
          const float p = S[h * nk + j];
          float* oh = o + t * ldo + h * r;
          for (int64_t c = 0; c < r; ++c) oh[c] += p * kj[c];
        }
      }
    });
  }
}

void CpuBackend::mla_absorb_out(const float* o, int64_t ldo, const cpu::Matrix& kv_b, float* out, int64_t ldout,
                                int64_t T, int64_t nh, int64_t dn, int64_t dv) {
  const int64_t r = kv_b.cols;
  const int64_t grain = std::max<int64_t>(1, cpu::min_parallel_work() / std::max<int64_t>(1, dv * r * T));
  pool_.parallel_for(nh, grain, [&](int, int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      // W_UV of head h: rows h·(dn+dv)+dn … +dv of kv_b, as a matrix view.
      cpu::Matrix wv = kv_b;
      wv.data = static_cast<const uint8_t*>(kv_b.data) + size_t((h * (dn + dv) + dn) * r) * dtype_size(kv_b.dtype);
      wv.rows = dv;
      wv.scale_row0 = kv_b.scale_row0 + h * (dn + dv) + dn;  // FP8: the view keeps indexing kv_b's scale grid
      cpu::matmul_serial(o + h * r, ldo, wv, out + h * dv, ldout, T, 0, dv);
    }
  });
}

void CpuBackend::mla_attention_block(const float* q, int64_t ldq, const float* kvb, int64_t ldkvb, const float* kr,
                                     int64_t ldkr, int64_t j0, int64_t nj, float* m, float* l, float* out,
                                     int64_t ldo, int64_t T, int64_t pos0, int64_t nh, int64_t dn, int64_t dr,
                                     int64_t dv, float scale, bool first, bool last) {
  const int64_t dq = dn + dr, dkv = dn + dv;
  // One head per work item. Its keys [k_nope ‖ k_rope] (nj × dq) and values transposed (dv × nj) are copied into
  // fp32 matrices so that both products run on the matmul kernels: S = Q_h · K_hᵀ (T × nj), then P · V_h.
  const int64_t grain = std::max<int64_t>(1, cpu::min_parallel_work() / std::max<int64_t>(1, T * nj * (dq + dv)));
  pool_.parallel_for(nh, grain, [&](int, int64_t h0, int64_t h1) {
    thread_local std::vector<float> kbuf, vbuf, sbuf, obuf;
    kbuf.resize(size_t(nj * dq));
    vbuf.resize(size_t(dv * nj));
    sbuf.resize(size_t(T * nj));
    obuf.resize(size_t(T * dv));
    cpu::Matrix K, Vt;
    K.dtype = Vt.dtype = DType::F32;
    K.data = kbuf.data();
    K.rows = nj;
    K.cols = dq;
    Vt.data = vbuf.data();
    Vt.rows = dv;
    Vt.cols = nj;
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t j = 0; j < nj; ++j) {
        std::memcpy(&kbuf[size_t(j * dq)], kvb + j * ldkvb + h * dkv, size_t(dn) * 4);
        std::memcpy(&kbuf[size_t(j * dq + dn)], kr + j * ldkr, size_t(dr) * 4);
        const float* vj = kvb + j * ldkvb + h * dkv + dn;
        for (int64_t u = 0; u < dv; ++u) vbuf[size_t(u * nj + j)] = vj[u];
      }
      cpu::matmul_serial(q + h * dq, ldq, K, sbuf.data(), nj, T, 0, nj);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = t * nh + h;
        float* oh = out + t * ldo + h * dv;
        if (first) {
          m[i] = -INFINITY;
          l[i] = 0.f;
          std::fill(oh, oh + dv, 0.f);
        }
        float* sc = &sbuf[size_t(t * nj)];
        const int64_t n = std::clamp<int64_t>(pos0 + t + 1 - j0, 0, nj);  // keys of this block visible to row t
        float mx = m[i];
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, sc[j] *= scale);
        if (n == 0) {
          std::fill(sc, sc + nj, 0.f);
          continue;
        }
        const float corr = std::exp(m[i] - mx);  // 0 when the state was empty (m = -inf)
        float sum = l[i] * corr;
        for (int64_t j = 0; j < n; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        std::fill(sc + n, sc + nj, 0.f);  // masked keys
        for (int64_t u = 0; u < dv; ++u) oh[u] *= corr;
        m[i] = mx;
        l[i] = sum;
      }
      cpu::matmul_serial(sbuf.data(), nj, Vt, obuf.data(), dv, T, 0, dv);  // P · V_h
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = t * nh + h;
        float* oh = out + t * ldo + h * dv;
        const float* ot = &obuf[size_t(t * dv)];
        for (int64_t u = 0; u < dv; ++u) oh[u] += ot[u];
        if (last) {
          const float inv = 1.0f / l[i];
          for (int64_t u = 0; u < dv; ++u) oh[u] *= inv;
        }
      }
    }
  });
}

}  // namespace infer
