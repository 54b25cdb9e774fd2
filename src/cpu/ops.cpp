// ops.cpp — see ops.h. The matmul kernel tiles 4 weight rows × 4 tokens so each weight vector loaded
// from memory feeds 4 FMAs (prefill) and decode (T = 1) streams every weight byte exactly once.
#include "cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12's intrinsic headers trip -W(maybe-)uninitialized on their own `__Y = __Y` idiom.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "common.h"
#include "cpu/ops_fp8.h"
#include "cpu/simd_math.h"

namespace infer::cpu {

namespace {

Isa detect_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  Isa best = Isa::Generic;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::Avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    best = Isa::Avx512;
    if (__builtin_cpu_supports("avx512bf16")) best = Isa::Avx512Bf16;
  }
  return best;
#else
  return Isa::Generic;
#endif
}

Isa g_best = detect_isa();
Isa initial_isa() {
  const char* env = std::getenv("INFER_CPU_ISA");
  Isa want = g_best;
  if (env) {
    std::string s(env);
    if (s == "generic") want = Isa::Generic;
    else if (s == "avx2") want = Isa::Avx2;
    else if (s == "avx512") want = Isa::Avx512;
    else if (s == "avx512bf16") want = Isa::Avx512Bf16;
  }
  return std::min(want, g_best);
}
Isa g_isa = initial_isa();
int64_t g_min_parallel_work = 65536;

// ---- portable kernel: any dtype, one (token, row) dot at a time
void matmul_rows_generic(const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T,
                         int64_t n0, int64_t n1) {
  const int64_t K = w.cols;
  for (int64_t n = n0; n < n1; ++n) {
    if (w.dtype == DType::BF16) {
      const uint16_t* wr = static_cast<const uint16_t*>(w.data) + n * K;
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * ldx;
        float acc = 0.f;
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * bf16_to_f32(wr[k]);
        y[t * ldy + n] = acc;
      }
    } else {
      const float* wr = static_cast<const float*>(w.data) + n * K;
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * ldx;
        float acc = 0.f;
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * wr[k];
        y[t * ldy + n] = acc;
      }
    }
  }
}

#if defined(__x86_64__)
// ---- AVX-512: 16 floats per vector; bf16 widened by a 16-bit shift.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16m(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16m(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}

template <typename WT, int NR, int TR>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void tile512(const float* x, int64_t ldx, const WT* w, int64_t K,
                                                                 float* y, int64_t ldy) {
  __m512 acc[NR][TR];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < TR; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 xv[TR];
    for (int t = 0; t < TR; ++t) xv[t] = _mm512_loadu_ps(x + t * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m512 wv = load16(w + r * K + k);
      for (int t = 0; t < TR; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  if (k < K) {
    const __mmask16 m = __mmask16((1u << (K - k)) - 1);
    __m512 xv[TR];
    for (int t = 0; t < TR; ++t) xv[t] = _mm512_maskz_loadu_ps(m, x + t * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m512 wv = load16m(w + r * K + k, m);
      for (int t = 0; t < TR; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < TR; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <typename WT>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void matmul_rows_512(const float* x, int64_t ldx, const WT* w, int64_t K,
                                                                 float* y, int64_t ldy, int64_t T, int64_t n0,
                                                                 int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) tile512<WT, 4, 4>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
    for (; t < T; ++t) tile512<WT, 4, 1>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
  }
  for (; n < n1; ++n) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) tile512<WT, 1, 4>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
    for (; t < T; ++t) tile512<WT, 1, 1>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
  }
}

// ---- AVX2: 8 floats per vector.
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}
inline float wval(const uint16_t* p) { return bf16_to_f32(*p); }
inline float wval(const float* p) { return *p; }

template <typename WT, int NR, int TR>
__attribute__((target("avx2,fma"))) inline void tile256(const float* x, int64_t ldx, const WT* w, int64_t K, float* y,
                                                        int64_t ldy) {
  __m256 acc[NR][TR];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < TR; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 xv[TR];
    for (int t = 0; t < TR; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = load8(w + r * K + k);
      for (int t = 0; t < TR; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < TR; ++t) {
      float s = hsum256(acc[r][t]);
      for (int64_t kk = k; kk < K; ++kk) s += x[t * ldx + kk] * wval(w + r * K + kk);
      y[t * ldy + r] = s;
    }
}

template <typename WT>
__attribute__((target("avx2,fma"))) void matmul_rows_256(const float* x, int64_t ldx, const WT* w, int64_t K, float* y,
                                                         int64_t ldy, int64_t T, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) tile256<WT, 4, 2>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
    for (; t < T; ++t) tile256<WT, 4, 1>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
  }
  for (; n < n1; ++n)
    for (int64_t t = 0; t < T; ++t) tile256<WT, 1, 1>(x + t * ldx, ldx, w + n * K, K, y + t * ldy + n, ldy);
}
#endif  // __x86_64__

void matmul_rows(const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T, int64_t n0,
                 int64_t n1) {
#if defined(__x86_64__)
  const bool bf = w.dtype == DType::BF16;
  if (g_isa >= Isa::Avx512) {
    if (bf) matmul_rows_512(x, ldx, static_cast<const uint16_t*>(w.data), w.cols, y, ldy, T, n0, n1);
    else matmul_rows_512(x, ldx, static_cast<const float*>(w.data), w.cols, y, ldy, T, n0, n1);
    return;
  }
  if (g_isa == Isa::Avx2) {
    if (bf) matmul_rows_256(x, ldx, static_cast<const uint16_t*>(w.data), w.cols, y, ldy, T, n0, n1);
    else matmul_rows_256(x, ldx, static_cast<const float*>(w.data), w.cols, y, ldy, T, n0, n1);
    return;
  }
#endif
  matmul_rows_generic(x, ldx, w, y, ldy, T, n0, n1);
}

}  // namespace

Isa active_isa() { return g_isa; }
void set_isa(Isa isa) { g_isa = std::min(isa, g_best); }
int64_t min_parallel_work() { return g_min_parallel_work; }
void set_min_parallel_work(int64_t macs) { g_min_parallel_work = std::max<int64_t>(1, macs); }
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}

void matmul(ThreadPool& pool, const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T) {
  if (w.dtype != DType::BF16 && w.dtype != DType::F32)
    fail(INFER_ERR_INTERNAL, std::string("matmul: unsupported weight dtype ") + dtype_name(w.dtype));
  // Split the output rows across threads in chunks of 16 rows (whole tiles, cache-line friendly);
  // for large prefill batches also tile over tokens so the x tile stays in cache.
  const int64_t tblock = 64;
  for (int64_t t0 = 0; t0 < T; t0 += tblock) {
    const int64_t tn = std::min(tblock, T - t0);
    // Each thread gets at least ~64K multiply-adds: waking a thread for less costs more than it saves.
    const int64_t macs_per_row = std::max<int64_t>(1, w.cols * tn);
    const int64_t grain = std::max<int64_t>(16, (g_min_parallel_work / macs_per_row + 15) / 16 * 16);
    pool.parallel_for(w.rows, grain, [&](int, int64_t n0, int64_t n1) {
      matmul_rows(x + t0 * ldx, ldx, w, y + t0 * ldy, ldy, tn, n0, n1);
    });
  }
}

void matmul_serial(const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T, int64_t n0,
                   int64_t n1) {
  if (w.dtype == DType::F8_E4M3) return matmul_fp8_serial(x, ldx, w, y, ldy, T, n0, n1);
  if (w.dtype != DType::BF16 && w.dtype != DType::F32)
    fail(INFER_ERR_INTERNAL, std::string("matmul: unsupported weight dtype ") + dtype_name(w.dtype));
  matmul_rows(x, ldx, w, y, ldy, T, n0, n1);
}

void matrix_row_f32(const Matrix& w, int64_t row, float* dst) {
  if (w.dtype == DType::F8_E4M3) return fp8_row_f32(w, row, dst);
  row_to_f32(static_cast<const uint8_t*>(w.data) + size_t(row * w.cols) * dtype_size(w.dtype), w.dtype, dst, w.cols);
}

void row_to_f32(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    default: fail(INFER_ERR_INTERNAL, std::string("row_to_f32: unsupported dtype ") + dtype_name(t));
  }
}

#if defined(__x86_64__)
namespace {
// Σ x² in double, 8 lanes × 2 accumulators (the sum's order differs from the scalar loop's only below fp32 precision).
__attribute__((target("avx512f"))) double sum_squares_512(const float* x, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    a0 = _mm512_fmadd_pd(lo, lo, a0);
    a1 = _mm512_fmadd_pd(hi, hi, a1);
  }
  double ss = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  for (; i < n; ++i) ss += double(x[i]) * x[i];
  return ss;
}

// out = x · r · w (w bf16 or fp32), 16 at a time.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void scale_by_weight_512(const float* x, float r, const void* w, DType wtype,
                                                             float* out, int64_t n) {
  const __m512 rv = _mm512_set1_ps(r);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    __m512 wv;
    if (wtype == DType::BF16) {
      const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + i);
      wv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      wv = _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + i);
    }
    // (x · r) · w: the scalar loop's order of the two products.
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), rv), wv));
  }
}
}  // namespace
#endif

void rmsnorm(const float* x, const void* w, DType wtype, float* out, int64_t n, float eps) {
#if defined(__x86_64__)
  if (g_isa >= Isa::Avx512) {
    const float r = 1.0f / std::sqrt(float(sum_squares_512(x, n) / double(n)) + eps);
    return scale_by_weight_512(x, r, w, wtype, out, n);
  }
#endif
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  if (wtype == DType::BF16) {
    const uint16_t* wb = static_cast<const uint16_t*>(w);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * bf16_to_f32(wb[i]);
  } else {
    const float* wf = static_cast<const float*>(w);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * wf[i];
  }
}

#if defined(__x86_64__)
namespace {
__attribute__((target("avx512f"))) void silu_mul_512(const float* g, const float* u, float* y, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 den = _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv)));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_div_ps(gv, den), _mm512_maskz_loadu_ps(m, u + i)));
  }
}
}  // namespace
#endif

void silu_mul(const float* g, const float* u, float* y, int64_t n) {
#if defined(__x86_64__)
  if (g_isa >= Isa::Avx512) return silu_mul_512(g, u, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

#if defined(__x86_64__)
namespace {
__attribute__((target("avx512f"))) void rope_neox_512(float* x, const float* cos, const float* sin, int64_t d) {
  const int64_t h = d / 2;
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = h - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (h - i)) - 1);
    const __m512 a = _mm512_maskz_loadu_ps(m, x + i), b = _mm512_maskz_loadu_ps(m, x + i + h);
    const __m512 c = _mm512_maskz_loadu_ps(m, cos + i), s = _mm512_maskz_loadu_ps(m, sin + i);
    // a·c − b·s and b·c + a·s, each product rounded before the sum as in the scalar loop (no FMA contraction).
    _mm512_mask_storeu_ps(x + i, m, _mm512_sub_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(b, s)));
    _mm512_mask_storeu_ps(x + i + h, m, _mm512_add_ps(_mm512_mul_ps(b, c), _mm512_mul_ps(a, s)));
  }
}
}  // namespace
#endif

void rope_neox(float* x, const float* cos, const float* sin, int64_t d) {
#if defined(__x86_64__)
  if (g_isa >= Isa::Avx512) return rope_neox_512(x, cos, sin, d);
#endif
  const int64_t h = d / 2;
  for (int64_t i = 0; i < h; ++i) {
    const float a = x[i], b = x[i + h];
    x[i] = a * cos[i] - b * sin[i];
    x[i + h] = b * cos[i] + a * sin[i];
  }
}

}  // namespace infer::cpu
