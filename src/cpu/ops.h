// ops.h — CPU kernels of the reference backend: fp32 activations, bf16 or f32 weights, fp32 accumulation.
// The matrix kernels have AVX-512 (with AVX512-BF16 where present), AVX2 and portable paths chosen at run time
// (override with INFER_CPU_ISA=avx512bf16|avx512|avx2|generic so tests can run every path on one machine).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "cpu/thread_pool.h"
#include "dtype.h"

namespace infer::cpu {

enum class Isa { Generic, Avx2, Avx512, Avx512Bf16 };
Isa active_isa();               // detected once (or INFER_CPU_ISA)
void set_isa(Isa isa);          // for tests; clamps to what the CPU supports
const char* isa_name(Isa isa);
// Work (multiply-adds) below which a kernel does not split across threads (waking one costs more). Tests lower it
// to make tiny models exercise the multi-threaded paths.
int64_t min_parallel_work();
void set_min_parallel_work(int64_t macs);

// fn(begin, end) over row ranges of [0, T): split across the pool's threads when the rows (per_row multiply-adds
// each) hold enough work to be worth waking a thread, else one call on the calling thread.
template <typename F>
void parallel_rows(ThreadPool& pool, int64_t T, int64_t per_row, F&& fn) {
  const int64_t grain = std::max<int64_t>(1, min_parallel_work() / std::max<int64_t>(1, per_row));
  if (T <= grain) return fn(int64_t(0), T);
  pool.parallel_for(T, grain, [&](int, int64_t b, int64_t e) { fn(b, e); });
}

// A weight matrix W [rows = out_features, cols = in_features] in PyTorch layout, bf16 or f32 — or F8_E4M3 with
// block scales (ops_fp8.h): W[n, k] = fp8(data[n, k]) · scale[(scale_row0 + n) / block, k / block], the scale grid
// [ceil(rows'/block), ceil(cols/block)] row-major in scale_dtype (F32, BF16 or F16). scale_row0 lets a view of
// some rows of a larger FP8 matrix (data offset by whole rows) keep indexing its parent's scale grid.
class PackCache;  // gemm.h

struct Matrix {
  DType dtype = DType::BF16;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  const void* scale = nullptr;  // F8_E4M3 only: weight_scale_inv
  DType scale_dtype = DType::F32;
  int64_t block = 0;            // F8_E4M3 only: the scale block side (128)
  int64_t scale_row0 = 0;       // F8_E4M3 views: first row's index in the parent matrix
  int64_t scale_cols = 0;       // F8_E4M3 only: columns of the scale grid (ceil(cols / block))
  // bf16 model weights: where the CPU backend keeps this matrix packed for its GEMM (gemm.h), owned by the model;
  // null for matrices that are not model weights (views, scratch), which use the unpacked kernels below.
  PackCache* pack = nullptr;
  // Keep fp32 activations in every precision (MoE routers: a rounding that flips an expert choice changes the output
  // discretely, and HF's DeepSeek-V3 computes its router in fp32 even in bf16 runs).
  bool exact = false;
};

// y[t, n] = sum_k x[t, k] * W[n, k] for t < T, n < W.rows; x is [T, ldx] (ldx >= W.cols), y is [T, ldy].
void matmul(ThreadPool& pool, const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T);
// The same on the calling thread, for output columns [n0, n1) only (weight rows n0..n1-1; y still indexed from
// column 0). For kernels that split work their own way (MLA's per-head products).
void matmul_serial(const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T, int64_t n0,
                   int64_t n1);
// Row `row` of W as fp32 (W.cols values).
void matrix_row_f32(const Matrix& w, int64_t row, float* dst);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], for rows of width n (w is bf16 or f32, n entries).
void rmsnorm(const float* x, const void* w, DType wtype, float* out, int64_t n, float eps);
// y = silu(g) * u elementwise.
void silu_mul(const float* g, const float* u, float* y, int64_t n);
// Converts n elements of a bf16/f16/f32 row to f32.
void row_to_f32(const void* src, DType t, float* dst, int64_t n);
// NeoX (rotate_half) RoPE on one head vector of dim d, with cos/sin of d/2 angles.
void rope_neox(float* x, const float* cos, const float* sin, int64_t d);

}  // namespace infer::cpu
