// ops_fp8.h — FP8 (float8_e4m3fn) weights with 128×128 block scales (DeepSeek-V3 / Qwen3-FP8 checkpoints,
// model-spec.md §6), computed as w8a16 on the CPU: activations stay fp32, each weight row is dequantised on the
// fly (fp8 → fp32 through a 256-entry table, times its block's scale) into a small per-thread buffer and fed to
// the fp32 matmul kernels, with fp32 accumulation. The model is never expanded to bf16/fp32 in memory: per thread
// the buffer holds 4 rows.
//
// Numerics: the dequantised value float(e4m3) · scale is computed in fp32 exactly as DS-REF weight_dequant does
// before its final rounding (here there is none: the product is used in fp32), so the result equals an fp32
// GEMM on the dequantised weights up to summation order.
#pragma once
#include <cstdint>

#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace infer::cpu {

// The fp32 value of every e4m3 byte (NaN for 0x7f / 0xff).
const float* fp8_e4m3_table();

// The scale of block (row block rb, column block cb) of an FP8 matrix, as fp32.
float fp8_block_scale(const Matrix& w, int64_t rb, int64_t cb);

// Row `row` of an FP8 matrix, dequantised to fp32 (w.cols values).
void fp8_row_f32(const Matrix& w, int64_t row, float* dst);

// y[t, n] = Σ_k x[t, k] · W[n, k] (as cpu::matmul) for an F8_E4M3 matrix, threads splitting the rows.
void matmul_fp8(ThreadPool& pool, const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T);
// The same on the calling thread for output columns [n0, n1).
void matmul_fp8_serial(const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T, int64_t n0,
                       int64_t n1);

}  // namespace infer::cpu
