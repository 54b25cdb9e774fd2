// ops_fp8.cpp — see ops_fp8.h.
#include "cpu/ops_fp8.h"

#include <algorithm>
#include <array>
#include <vector>

#include "common.h"
#include "dtype.h"

namespace infer::cpu {

namespace {

constexpr int64_t kRows = 4;  // rows dequantised together: one 4-row tile of the fp32 kernels

std::array<float, 256> make_table() {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[size_t(i)] = f8e4m3_to_f32(uint8_t(i));
  return t;
}

// Dequantises rows [n, n + nr) into buf (nr × cols, row-major).
void dequant_rows(const Matrix& w, int64_t n, int64_t nr, float* buf) {
  const float* lut = fp8_e4m3_table();
  const int64_t K = w.cols, B = w.block;
  for (int64_t r = 0; r < nr; ++r) {
    const uint8_t* src = static_cast<const uint8_t*>(w.data) + (n + r) * K;
    float* dst = buf + r * K;
    const int64_t rb = (w.scale_row0 + n + r) / B;
    for (int64_t k0 = 0; k0 < K; k0 += B) {
      const float s = fp8_block_scale(w, rb, k0 / B);
      const int64_t k1 = std::min(K, k0 + B);
      for (int64_t k = k0; k < k1; ++k) dst[k] = lut[src[k]] * s;
    }
  }
}

}  // namespace

const float* fp8_e4m3_table() {
  static const std::array<float, 256> table = make_table();
  return table.data();
}

float fp8_block_scale(const Matrix& w, int64_t rb, int64_t cb) {
  const int64_t i = rb * w.scale_cols + cb;
  switch (w.scale_dtype) {
    case DType::F32: return static_cast<const float*>(w.scale)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.scale)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.scale)[i]);
    default: fail(INFER_ERR_INTERNAL, std::string("fp8: unsupported scale dtype ") + dtype_name(w.scale_dtype));
  }
}

void fp8_row_f32(const Matrix& w, int64_t row, float* dst) { dequant_rows(w, row, 1, dst); }

void matmul_fp8_serial(const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T, int64_t n0,
                       int64_t n1) {
  if (w.dtype != DType::F8_E4M3 || !w.scale || w.block <= 0)
    fail(INFER_ERR_INTERNAL, "matmul_fp8: not an FP8 matrix with block scales");
  thread_local std::vector<float> buf;
  buf.resize(size_t(kRows * w.cols));
  Matrix f;
  f.dtype = DType::F32;
  f.data = buf.data();
  f.cols = w.cols;
  for (int64_t n = n0; n < n1; n += kRows) {
    const int64_t nr = std::min(kRows, n1 - n);
    dequant_rows(w, n, nr, buf.data());
    f.rows = nr;
    matmul_serial(x, ldx, f, y + n, ldy, T, 0, nr);
  }
}

void matmul_fp8(ThreadPool& pool, const float* x, int64_t ldx, const Matrix& w, float* y, int64_t ldy, int64_t T) {
  // As cpu::matmul: output rows split across threads in chunks of 16, tokens in blocks of 64; the dequantisation
  // (one pass over a weight row) is shared by the up to 64 tokens of a block.
  const int64_t tblock = 64;
  for (int64_t t0 = 0; t0 < T; t0 += tblock) {
    const int64_t tn = std::min(tblock, T - t0);
    const int64_t macs_per_row = std::max<int64_t>(1, w.cols * (tn + 1));
    const int64_t grain = std::max<int64_t>(16, (min_parallel_work() / macs_per_row + 15) / 16 * 16);
    pool.parallel_for(w.rows, grain, [&](int, int64_t n0, int64_t n1) {
      matmul_fp8_serial(x + t0 * ldx, ldx, w, y + t0 * ldy, ldy, tn, n0, n1);
    });
  }
}

}  // namespace infer::cpu
