// gemm.cpp — see gemm.h.
#include "cpu/gemm.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12's intrinsic headers trip -W(maybe-)uninitialized on their own `__Y = __Y` idiom.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "common.h"

namespace infer::cpu {

namespace {

Precision initial_precision() {
  const char* env = std::getenv("INFER_CPU_PRECISION");
  if (env && std::string(env) == "fp32") return Precision::Fp32;
  return Precision::Fast;
}
Precision g_precision = initial_precision();

// ---- portable kernel: the fp32 path, one output at a time, k in increasing order.
void kern_generic(const float* x, int64_t ldx, int64_t K, int64_t rows, const uint32_t* b, int width, float* c,
                  int64_t ldc, int ncols) {
  const int64_t full = K / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    for (int j = 0; j < ncols; ++j) {
      float acc = 0.f;
      for (int64_t i = 0; i < full; ++i) {
        const uint32_t w = b[i * width + j];
        acc += bf16_to_f32(uint16_t(w & 0xffff)) * xr[2 * i];
        acc += bf16_to_f32(uint16_t(w >> 16)) * xr[2 * i + 1];
      }
      if (K & 1) acc += bf16_to_f32(uint16_t(b[full * width + j] & 0xffff)) * xr[K - 1];
      c[r * ldc + j] = acc;
    }
  }
}

#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define T512BF __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define T256 __attribute__((target("avx2,fma")))

T512 inline __mmask16 col_mask(int ncols, int j) {
  const int n = std::clamp(ncols - 16 * j, 0, 16);
  return __mmask16((1u << n) - 1);
}

// ---- AVX-512, fp32 activations: MR rows × 16·NJ columns (a panel of width 16·NJ).
template <int MR, int NJ>
T512 void kern_f32_512(const float* x, int64_t ldx, int64_t K, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  constexpr int W = 16 * NJ;
  __m512 acc[MR][NJ];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NJ; ++j) acc[r][j] = _mm512_setzero_ps();
  const __m512i hi = _mm512_set1_epi32(int(0xffff0000u));
  const int64_t full = K / 2;
  for (int64_t i = 0; i < full; ++i) {
    const uint32_t* bp = b + i * W;
    __m512 e[NJ], o[NJ];
    for (int j = 0; j < NJ; ++j) {
      const __m512i v = _mm512_load_si512(bp + 16 * j);
      e[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      o[j] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 xe = _mm512_set1_ps(x[r * ldx + 2 * i]);
      const __m512 xo = _mm512_set1_ps(x[r * ldx + 2 * i + 1]);
      for (int j = 0; j < NJ; ++j) {
        acc[r][j] = _mm512_fmadd_ps(e[j], xe, acc[r][j]);
        acc[r][j] = _mm512_fmadd_ps(o[j], xo, acc[r][j]);
      }
    }
  }
  if (K & 1) {
    const uint32_t* bp = b + full * W;
    for (int j = 0; j < NJ; ++j) {
      const __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(bp + 16 * j), 16));
      for (int r = 0; r < MR; ++r) acc[r][j] = _mm512_fmadd_ps(e, _mm512_set1_ps(x[r * ldx + K - 1]), acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NJ; ++j) _mm512_mask_storeu_ps(c + r * ldc + 16 * j, col_mask(ncols, j), acc[r][j]);
}

// ---- AVX-512 BF16: MR rows × 16·NJ columns of vdpbf16ps on bf16 pairs of x (a: rows of `pairs` words).
template <int MR, int NJ>
T512BF void kern_bf16_512(const uint32_t* a, int64_t pairs, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  constexpr int W = 16 * NJ;
  __m512 acc[MR][NJ];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NJ; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t* bp = b + i * W;
    __m512bh bv[NJ];
    for (int j = 0; j < NJ; ++j) bv[j] = (__m512bh)_mm512_load_si512(bp + 16 * j);
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[r * pairs + i]));
      for (int j = 0; j < NJ; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, bv[j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NJ; ++j) _mm512_mask_storeu_ps(c + r * ldc + 16 * j, col_mask(ncols, j), acc[r][j]);
}

// One row of x (k floats) → bf16 pairs (ceil(k/2) words), round to nearest even; a missing odd partner is 0.
T512BF void to_bf16_pairs(const float* x, int64_t k, uint32_t* out) {
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i / 2, (__m512i)v);
  }
  if (i < k) {
    const int r = int(k - i);
    const __m512 lo = _mm512_maskz_loadu_ps(__mmask16((1u << std::min(r, 16)) - 1), x + i);
    const __m512 hi = _mm512_maskz_loadu_ps(__mmask16((1u << std::max(r - 16, 0)) - 1), x + i + 16);
    const __m512bh v = _mm512_cvtne2ps_pbh(hi, lo);
    _mm512_mask_storeu_epi32(out + i / 2, __mmask16((1u << ((r + 1) / 2)) - 1), (__m512i)v);
  }
}

// ---- AVX2, fp32 activations: 1 row × 16·NJ columns (2·NJ vectors of 8).
template <int NJ>
T256 void kern_f32_256(const float* x, int64_t K, const uint32_t* b, float* c, int ncols) {
  constexpr int W = 16 * NJ, NV = 2 * NJ;
  __m256 acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = _mm256_setzero_ps();
  const __m256i hi = _mm256_set1_epi32(int(0xffff0000u));
  const int64_t full = K / 2;
  for (int64_t i = 0; i < full; ++i) {
    const uint32_t* bp = b + i * W;
    const __m256 xe = _mm256_set1_ps(x[2 * i]), xo = _mm256_set1_ps(x[2 * i + 1]);
    for (int j = 0; j < NV; ++j) {
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + 8 * j));
      acc[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, acc[j]);
      acc[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), xo, acc[j]);
    }
  }
  if (K & 1) {
    const uint32_t* bp = b + full * W;
    const __m256 xe = _mm256_set1_ps(x[K - 1]);
    for (int j = 0; j < NV; ++j) {
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + 8 * j));
      acc[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, acc[j]);
    }
  }
  if (ncols == W) {
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(c + 8 * j, acc[j]);
  } else {
    alignas(32) float tmp[W];
    for (int j = 0; j < NV; ++j) _mm256_store_ps(tmp + 8 * j, acc[j]);
    std::memcpy(c, tmp, size_t(ncols) * 4);
  }
}

template <int MR, int NJ>
void f32_rows_512(const float* x, int64_t ldx, int64_t K, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  kern_f32_512<MR, NJ>(x, ldx, K, b, c, ldc, ncols);
}
template <int MR, int NJ>
void bf16_rows_512(const uint32_t* a, int64_t pairs, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  kern_bf16_512<MR, NJ>(a, pairs, b, c, ldc, ncols);
}
using F32Fn = void (*)(const float*, int64_t, int64_t, const uint32_t*, float*, int64_t, int);
using Bf16Fn = void (*)(const uint32_t*, int64_t, const uint32_t*, float*, int64_t, int);
template <int NJ>
constexpr Bf16Fn kBf16Fns[9] = {nullptr,
                                bf16_rows_512<1, NJ>, bf16_rows_512<2, NJ>, bf16_rows_512<3, NJ>, bf16_rows_512<4, NJ>,
                                bf16_rows_512<5, NJ>, bf16_rows_512<6, NJ>, bf16_rows_512<7, NJ>, bf16_rows_512<8, NJ>};
template <int NJ>
constexpr F32Fn kF32Fns[5] = {nullptr, f32_rows_512<1, NJ>, f32_rows_512<2, NJ>, f32_rows_512<3, NJ>,
                              f32_rows_512<4, NJ>};
template <int NJ>
void f32_row_256(const float* x, int64_t K, const uint32_t* b, float* c, int ncols) {
  kern_f32_256<NJ>(x, K, b, c, ncols);
}
#endif  // __x86_64__

// Rows [0, rows) of one panel (width columns, ncols of them real).
void panel_rows(Isa isa, bool bf, const float* x, int64_t ldx, const uint32_t* xb, const PackedMatrix& w,
                const uint32_t* b, int width, float* c, int64_t ldc, int64_t rows, int ncols) {
#if defined(__x86_64__)
  const int nj = width / 16;
  if (bf) {
    const Bf16Fn* fns = nj == 3 ? kBf16Fns<3> : nj == 2 ? kBf16Fns<2> : kBf16Fns<1>;
    for (int64_t t = 0; t < rows; t += 8) {
      const int64_t m = std::min<int64_t>(8, rows - t);
      fns[m](xb + t * w.pairs, w.pairs, b, c + t * ldc, ldc, ncols);
    }
    return;
  }
  if (isa >= Isa::Avx512) {
    const F32Fn* fns = nj == 3 ? kF32Fns<3> : nj == 2 ? kF32Fns<2> : kF32Fns<1>;
    for (int64_t t = 0; t < rows; t += 4) {
      const int64_t m = std::min<int64_t>(4, rows - t);
      fns[m](x + t * ldx, ldx, w.k, b, c + t * ldc, ldc, ncols);
    }
    return;
  }
  if (isa == Isa::Avx2) {
    const auto fn = nj == 3 ? f32_row_256<3> : nj == 2 ? f32_row_256<2> : f32_row_256<1>;
    for (int64_t t = 0; t < rows; ++t) fn(x + t * ldx, w.k, b, c + t * ldc, ncols);
    return;
  }
#endif
  kern_generic(x, ldx, w.k, rows, b, width, c, ldc, ncols);
}

}  // namespace

Precision precision() { return g_precision; }
void set_precision(Precision p) { g_precision = p; }
const char* precision_name(Precision p) { return p == Precision::Fp32 ? "fp32" : "fast"; }

PackedMatrix::~PackedMatrix() { std::free(data); }

std::unique_ptr<PackedMatrix> pack_bf16(ThreadPool& pool, const Matrix* const* parts, int n_parts) {
  auto pm = std::make_unique<PackedMatrix>();
  pm->k = parts[0]->cols;
  for (int i = 0; i < n_parts; ++i) {
    if (parts[i]->dtype != DType::BF16 || parts[i]->cols != pm->k)
      fail(INFER_ERR_INTERNAL, "pack_bf16: parts must be bf16 matrices with equal cols");
    pm->n += parts[i]->rows;
  }
  pm->pairs = (pm->k + 1) / 2;
  pm->panels = (pm->n + kPanel - 1) / kPanel;
  pm->last_width = int((pm->n - (pm->panels - 1) * kPanel + 15) / 16 * 16);
  // Large matrices go on transparent huge pages where the kernel allows it (fewer TLB misses while decode streams
  // the whole model every token).
  const size_t bytes = size_t(pm->bytes());
  const size_t huge = size_t(2) << 20;
  const size_t align = bytes >= huge ? huge : 64;
  const size_t alloc = std::max<size_t>(align, (bytes + align - 1) / align * align);
  pm->data = static_cast<uint32_t*>(std::aligned_alloc(align, alloc));
  if (!pm->data) fail(INFER_ERR_OUT_OF_MEMORY, "out of memory packing a weight matrix (" + std::to_string(bytes >> 20) + " MiB)");
  if (align == huge) ::madvise(pm->data, alloc, MADV_HUGEPAGE);
  // Row r of the concatenation → (part, row in part).
  std::vector<const uint16_t*> row_ptr(size_t(pm->n));
  for (int i = 0, r = 0; i < n_parts; ++i)
    for (int64_t j = 0; j < parts[i]->rows; ++j)
      row_ptr[size_t(r++)] = static_cast<const uint16_t*>(parts[i]->data) + j * pm->k;
  const int64_t K = pm->k, P = pm->pairs, N = pm->n;
  pool.parallel_for(pm->panels, 1, [&](int, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      uint32_t* dst = const_cast<uint32_t*>(pm->panel(p));
      const int W = pm->width(p);
      for (int j = 0; j < W; ++j) {
        const int64_t n = p * kPanel + j;
        if (n >= N) {
          for (int64_t i = 0; i < P; ++i) dst[i * W + j] = 0;
          continue;
        }
        const uint16_t* src = row_ptr[size_t(n)];
        for (int64_t i = 0; i < K / 2; ++i) dst[i * W + j] = uint32_t(src[2 * i]) | (uint32_t(src[2 * i + 1]) << 16);
        if (K & 1) dst[(K / 2) * W + j] = src[K - 1];
      }
    }
  });
  return pm;
}

namespace {

bool bf16_path(int64_t T, bool exact) {
  return T > 1 && !exact && g_precision == Precision::Fast && active_isa() == Isa::Avx512Bf16;
}

// The calling thread's buffer of bf16 activation pairs (T rows of w.pairs words).
uint32_t* pairs_buffer(int64_t T, const PackedMatrix& w) {
  thread_local std::vector<uint32_t> xbuf;
  xbuf.resize(size_t(T * w.pairs));
  return xbuf.data();
}

// y = x W^T over the panels (x fp32, or xb: its rows as bf16 pairs when bf).
void run_panels(ThreadPool& pool, bool bf, const float* x, int64_t ldx, const uint32_t* xb, const PackedMatrix& w,
                float* y, int64_t ldy, int64_t T) {
  const Isa isa = active_isa();
  // Each thread gets at least ~min_parallel_work multiply-adds (waking one for less costs more than it saves).
  const int64_t grain = std::max<int64_t>(1, min_parallel_work() / std::max<int64_t>(1, T * w.k * kPanel));
  auto range = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int ncols = int(std::min<int64_t>(kPanel, w.n - p * kPanel));
      panel_rows(isa, bf, x, ldx, xb, w, w.panel(p), w.width(p), y + p * kPanel, ldy, T, ncols);
    }
  };
  pool.parallel_for(w.panels, grain, [&](int, int64_t p0, int64_t p1) { range(p0, p1); });
}

}  // namespace

void gemm(ThreadPool& pool, const float* x, int64_t ldx, const PackedMatrix& w, float* y, int64_t ldy, int64_t T,
          bool exact) {
  if (T <= 0) return;
  const bool bf = bf16_path(T, exact);
  uint32_t* xb = nullptr;
#if defined(__x86_64__)
  if (bf) {
    xb = pairs_buffer(T, w);
    parallel_rows(pool, T, w.k, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) to_bf16_pairs(x + t * ldx, w.k, xb + t * w.pairs);
    });
  }
#endif
  run_panels(pool, bf, x, ldx, xb, w, y, ldy, T);
}

void gemm_swiglu(ThreadPool& pool, float* g, const float* u, int64_t ld, const PackedMatrix& w, float* y, int64_t ldy,
                 int64_t T, bool exact) {
  if (T <= 0) return;
  const bool bf = bf16_path(T, exact);
#if defined(__x86_64__)
  if (bf) {
    // silu(g)·u one row at a time into a small fp32 buffer, rounded to bf16 pairs from there: the same values as
    // swiglu then gemm, without writing the fp32 product out and reading it back.
    uint32_t* xb = pairs_buffer(T, w);
    parallel_rows(pool, T, 8 * w.k, [&](int64_t b, int64_t e) {
      thread_local std::vector<float> row;
      row.resize(size_t(w.k));
      for (int64_t t = b; t < e; ++t) {
        silu_mul(g + t * ld, u + t * ld, row.data(), w.k);
        to_bf16_pairs(row.data(), w.k, xb + t * w.pairs);
      }
    });
    return run_panels(pool, true, nullptr, 0, xb, w, y, ldy, T);
  }
#endif
  parallel_rows(pool, T, 8 * w.k, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) silu_mul(g + t * ld, u + t * ld, g + t * ld, w.k);
  });
  run_panels(pool, false, g, ld, nullptr, w, y, ldy, T);
}

const PackedMatrix* PackCache::get(ThreadPool& pool, const Matrix* const* parts, int n_parts) {
  std::vector<Key> key;
  key.reserve(size_t(n_parts));
  for (int i = 0; i < n_parts; ++i) {
    if (parts[i]->dtype != DType::BF16 || parts[i]->cols != parts[0]->cols) return nullptr;
    key.push_back({parts[i]->data, parts[i]->rows, parts[i]->cols});
  }
  std::lock_guard<std::mutex> lk(mu_);
  for (const Entry& e : entries_)
    if (e.key == key) return e.packed.get();
  entries_.push_back({key, pack_bf16(pool, parts, n_parts)});
  if (drop_source_pages_) {
    // The mapping is a read-only private file mapping: dropped pages are read again from the file if touched.
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    for (int i = 0; i < n_parts; ++i) {
      const uintptr_t b = reinterpret_cast<uintptr_t>(parts[i]->data);
      const uintptr_t e = b + uintptr_t(parts[i]->rows * parts[i]->cols * 2);
      const uintptr_t b2 = (b + page - 1) / page * page, e2 = e / page * page;
      if (e2 > b2) ::madvise(reinterpret_cast<void*>(b2), e2 - b2, MADV_DONTNEED);
    }
  }
  return entries_.back().packed.get();
}

}  // namespace infer::cpu
