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
void kern_generic(const float* x, int64_t ldx, int64_t K, int64_t rows, const uint32_t* b, float* c, int64_t ldc,
                  int ncols) {
  const int64_t full = K / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    for (int j = 0; j < ncols; ++j) {
      float acc = 0.f;
      for (int64_t i = 0; i < full; ++i) {
        const uint32_t w = b[i * kPanel + j];
        acc += bf16_to_f32(uint16_t(w & 0xffff)) * xr[2 * i];
        acc += bf16_to_f32(uint16_t(w >> 16)) * xr[2 * i + 1];
      }
      if (K & 1) acc += bf16_to_f32(uint16_t(b[full * kPanel + j] & 0xffff)) * xr[K - 1];
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

// ---- AVX-512, fp32 activations: MR rows × 48 columns.
template <int MR>
T512 void kern_f32_512(const float* x, int64_t ldx, int64_t K, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  __m512 acc[MR][3];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 3; ++j) acc[r][j] = _mm512_setzero_ps();
  const __m512i hi = _mm512_set1_epi32(int(0xffff0000u));
  const int64_t full = K / 2;
  for (int64_t i = 0; i < full; ++i) {
    const uint32_t* bp = b + i * kPanel;
    __m512 e[3], o[3];
    for (int j = 0; j < 3; ++j) {
      const __m512i v = _mm512_load_si512(bp + 16 * j);
      e[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      o[j] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 xe = _mm512_set1_ps(x[r * ldx + 2 * i]);
      const __m512 xo = _mm512_set1_ps(x[r * ldx + 2 * i + 1]);
      for (int j = 0; j < 3; ++j) {
        acc[r][j] = _mm512_fmadd_ps(e[j], xe, acc[r][j]);
        acc[r][j] = _mm512_fmadd_ps(o[j], xo, acc[r][j]);
      }
    }
  }
  if (K & 1) {
    const uint32_t* bp = b + full * kPanel;
    for (int j = 0; j < 3; ++j) {
      const __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(bp + 16 * j), 16));
      for (int r = 0; r < MR; ++r) acc[r][j] = _mm512_fmadd_ps(e, _mm512_set1_ps(x[r * ldx + K - 1]), acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 3; ++j) _mm512_mask_storeu_ps(c + r * ldc + 16 * j, col_mask(ncols, j), acc[r][j]);
}

// ---- AVX-512 BF16: MR rows × 48 columns of vdpbf16ps on bf16 pairs of x (a: rows of `pairs` words).
template <int MR>
T512BF void kern_bf16_512(const uint32_t* a, int64_t pairs, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  __m512 acc[MR][3];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 3; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t* bp = b + i * kPanel;
    const __m512bh b0 = (__m512bh)_mm512_load_si512(bp);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(bp + 16);
    const __m512bh b2 = (__m512bh)_mm512_load_si512(bp + 32);
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[r * pairs + i]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
      acc[r][2] = _mm512_dpbf16_ps(acc[r][2], av, b2);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 3; ++j) _mm512_mask_storeu_ps(c + r * ldc + 16 * j, col_mask(ncols, j), acc[r][j]);
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

// ---- AVX2, fp32 activations: 1 row × 48 columns (6 vectors of 8).
T256 void kern_f32_256(const float* x, int64_t K, const uint32_t* b, float* c, int ncols) {
  __m256 acc[6];
  for (int j = 0; j < 6; ++j) acc[j] = _mm256_setzero_ps();
  const __m256i hi = _mm256_set1_epi32(int(0xffff0000u));
  const int64_t full = K / 2;
  for (int64_t i = 0; i < full; ++i) {
    const uint32_t* bp = b + i * kPanel;
    const __m256 xe = _mm256_set1_ps(x[2 * i]), xo = _mm256_set1_ps(x[2 * i + 1]);
    for (int j = 0; j < 6; ++j) {
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + 8 * j));
      acc[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, acc[j]);
      acc[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), xo, acc[j]);
    }
  }
  if (K & 1) {
    const uint32_t* bp = b + full * kPanel;
    const __m256 xe = _mm256_set1_ps(x[K - 1]);
    for (int j = 0; j < 6; ++j) {
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + 8 * j));
      acc[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, acc[j]);
    }
  }
  if (ncols == kPanel) {
    for (int j = 0; j < 6; ++j) _mm256_storeu_ps(c + 8 * j, acc[j]);
  } else {
    alignas(32) float tmp[kPanel];
    for (int j = 0; j < 6; ++j) _mm256_store_ps(tmp + 8 * j, acc[j]);
    std::memcpy(c, tmp, size_t(ncols) * 4);
  }
}

template <int MR>
void f32_rows_512(const float* x, int64_t ldx, int64_t K, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  kern_f32_512<MR>(x, ldx, K, b, c, ldc, ncols);
}
template <int MR>
void bf16_rows_512(const uint32_t* a, int64_t pairs, const uint32_t* b, float* c, int64_t ldc, int ncols) {
  kern_bf16_512<MR>(a, pairs, b, c, ldc, ncols);
}
#endif  // __x86_64__

// Rows [0, rows) of one panel.
void panel_rows(Isa isa, bool bf, const float* x, int64_t ldx, const uint32_t* xb, const PackedMatrix& w,
                const uint32_t* b, float* c, int64_t ldc, int64_t rows, int ncols) {
#if defined(__x86_64__)
  if (bf) {
    using Fn = void (*)(const uint32_t*, int64_t, const uint32_t*, float*, int64_t, int);
    static constexpr Fn fns[9] = {nullptr,          bf16_rows_512<1>, bf16_rows_512<2>, bf16_rows_512<3>,
                                  bf16_rows_512<4>, bf16_rows_512<5>, bf16_rows_512<6>, bf16_rows_512<7>,
                                  bf16_rows_512<8>};
    for (int64_t t = 0; t < rows; t += 8) {
      const int64_t m = std::min<int64_t>(8, rows - t);
      fns[m](xb + t * w.pairs, w.pairs, b, c + t * ldc, ldc, ncols);
    }
    return;
  }
  if (isa >= Isa::Avx512) {
    using Fn = void (*)(const float*, int64_t, int64_t, const uint32_t*, float*, int64_t, int);
    static constexpr Fn fns[5] = {nullptr, f32_rows_512<1>, f32_rows_512<2>, f32_rows_512<3>, f32_rows_512<4>};
    for (int64_t t = 0; t < rows; t += 4) {
      const int64_t m = std::min<int64_t>(4, rows - t);
      fns[m](x + t * ldx, ldx, w.k, b, c + t * ldc, ldc, ncols);
    }
    return;
  }
  if (isa == Isa::Avx2) {
    for (int64_t t = 0; t < rows; ++t) kern_f32_256(x + t * ldx, w.k, b, c + t * ldc, ncols);
    return;
  }
#endif
  kern_generic(x, ldx, w.k, rows, b, c, ldc, ncols);
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
      uint32_t* dst = pm->data + p * P * kPanel;
      for (int j = 0; j < kPanel; ++j) {
        const int64_t n = p * kPanel + j;
        if (n >= N) {
          for (int64_t i = 0; i < P; ++i) dst[i * kPanel + j] = 0;
          continue;
        }
        const uint16_t* src = row_ptr[size_t(n)];
        for (int64_t i = 0; i < K / 2; ++i) dst[i * kPanel + j] = uint32_t(src[2 * i]) | (uint32_t(src[2 * i + 1]) << 16);
        if (K & 1) dst[(K / 2) * kPanel + j] = src[K - 1];
      }
    }
  });
  return pm;
}

void gemm(ThreadPool& pool, const float* x, int64_t ldx, const PackedMatrix& w, float* y, int64_t ldy, int64_t T,
          bool exact) {
  if (T <= 0) return;
  const Isa isa = active_isa();
  const bool bf = T > 1 && !exact && g_precision == Precision::Fast && isa == Isa::Avx512Bf16;
  const uint32_t* xb = nullptr;
#if defined(__x86_64__)
  thread_local std::vector<uint32_t> xbuf;
  if (bf) {
    xbuf.resize(size_t(T * w.pairs));
    for (int64_t t = 0; t < T; ++t) to_bf16_pairs(x + t * ldx, w.k, xbuf.data() + t * w.pairs);
    xb = xbuf.data();
  }
#endif
  // Each thread gets at least ~min_parallel_work multiply-adds (waking one for less costs more than it saves).
  const int64_t grain = std::max<int64_t>(1, min_parallel_work() / std::max<int64_t>(1, T * w.k * kPanel));
  pool.parallel_for(w.panels, grain, [&](int, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int ncols = int(std::min<int64_t>(kPanel, w.n - p * kPanel));
      panel_rows(isa, bf, x, ldx, xb, w, w.panel(p), y + p * kPanel, ldy, T, ncols);
    }
  });
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
