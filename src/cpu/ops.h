// ops.h — CPU kernels of the reference backend: fp32 activations, bf16 or f32 weights, fp32 accumulation.
// The matrix kernels have AVX-512, AVX2 and portable paths chosen at run time (override with
// INFER_CPU_ISA=avx512|avx2|generic so tests can run every path on one machine).
#pragma once
#include <cstdint>
#include <string>

#include "cpu/thread_pool.h"
#include "dtype.h"

namespace infer::cpu {

enum class Isa { Generic, Avx2, Avx512 };
Isa active_isa();               // detected once (or INFER_CPU_ISA)
void set_isa(Isa isa);          // for tests; clamps to what the CPU supports
const char* isa_name(Isa isa);
// Work (multiply-adds) below which a kernel does not split across threads (waking one costs more). Tests lower it
// to make tiny models exercise the multi-threaded paths.
int64_t min_parallel_work();
void set_min_parallel_work(int64_t macs);

// A weight matrix W [rows = out_features, cols = in_features] in PyTorch layout, bf16 or f32.
struct Matrix {
  DType dtype = DType::BF16;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
};

// y[t, n] = sum_k x[t, k] * W[n, k] for t < T, n < W.rows; x is [T, ldx] (ldx >= W.cols), y is [T, ldy].
void matmul(ThreadPool& pool, const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], for rows of width n (w is bf16 or f32, n entries).
void rmsnorm(const float* x, const void* w, DType wtype, float* out, int64_t n, float eps);
// y = silu(g) * u elementwise.
void silu_mul(const float* g, const float* u, float* y, int64_t n);
// Converts n elements of a bf16/f16/f32 row to f32.
void row_to_f32(const void* src, DType t, float* dst, int64_t n);
// NeoX (rotate_half) RoPE on one head vector of dim d, with cos/sin of d/2 angles.
void rope_neox(float* x, const float* cos, const float* sin, int64_t d);

}  // namespace infer::cpu
