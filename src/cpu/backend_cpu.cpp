// backend_cpu.cpp — see backend_cpu.h.
#include "cpu/backend_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include "common.h"

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
  for (int64_t t = 0; t < T; ++t) cpu::rmsnorm(x + t * ldx, w.data, w.dtype, out + t * ldo, n, eps);
}

void CpuBackend::matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) {
  cpu::matmul(pool_, x, ldx, w, y, ldy, T);
}

void CpuBackend::add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) {
  const int64_t n = bias.numel();
  std::vector<float> b(static_cast<size_t>(n));
  cpu::row_to_f32(bias.data, bias.dtype, b.data(), n);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * ldy + i] += b[i];
}

void CpuBackend::head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm,
                                float eps, int64_t pos0, const RopeTable& rope) {
  const int64_t half = d / 2;
  rope_cs_.resize(size_t(2 * half));
  float* c = rope_cs_.data();
  float* s = c + half;
  for (int64_t t = 0; t < T; ++t) {
    rope.angles(pos0 + t, c, s);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + t * ldx + h * d;
      if (norm) cpu::rmsnorm(v, norm->data, norm->dtype, v, d, eps);
      cpu::rope_neox(v, c, s, d);
    }
  }
}

void CpuBackend::kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) {
  float* c = static_cast<float*>(cache);
  for (int64_t t = 0; t < T; ++t) std::memcpy(c + (pos0 + t) * width, src + t * lds, size_t(width) * 4);
}

void CpuBackend::attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out,
                           int64_t ldo, int64_t T, int64_t pos0, int64_t nh, int64_t nkv, int64_t d, float scale) {
  const float* kc = static_cast<const float*>(k_cache);
  const float* vc = static_cast<const float*>(v_cache);
  const int64_t kvw = nkv * d, rep = nh / nkv, n_keys = pos0 + T;
  if (int64_t(scores_.size()) < pool_.size() * n_keys) scores_.resize(size_t(pool_.size() * n_keys));
  // One (token, head) pair per work item; each thread gets at least ~min_parallel_work multiply-adds.
  const int64_t grain = std::max<int64_t>(1, cpu::min_parallel_work() / (n_keys * d * 2));
  pool_.parallel_for(T * nh, grain, [&](int tid, int64_t b, int64_t e) {
    float* sc = scores_.data() + size_t(tid) * n_keys;
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / nh, h = i % nh, g = h / rep, nk = pos0 + t + 1;
      const float* qh = q + t * ldq + h * d;
      float mx = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) {
        const float* kj = kc + j * kvw + g * d;
        float s = 0.f;
        for (int64_t u = 0; u < d; ++u) s += qh[u] * kj[u];
        sc[j] = s * scale;
        mx = std::max(mx, sc[j]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = 1.0f / sum;
      float* o = out + t * ldo + h * d;
      std::fill(o, o + d, 0.f);
      for (int64_t j = 0; j < nk; ++j) {
        const float p = sc[j] * inv;
        const float* vj = vc + j * kvw + g * d;
        for (int64_t u = 0; u < d; ++u) o[u] += p * vj[u];
      }
    }
  });
}

void CpuBackend::swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                        int64_t n) {
  for (int64_t t = 0; t < T; ++t) cpu::silu_mul(g + t * ldg, u + t * ldu, y + t * ldy, n);
}

void CpuBackend::add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) x[t * ldx + i] += y[t * ldy + i];
}

}  // namespace infer
