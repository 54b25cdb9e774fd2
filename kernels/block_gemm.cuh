// block_gemm.cuh — the tensor-core tile GEMM shared by the FP8 block-scaled GEMM (fp8_gemm.cu) and the grouped
// expert GEMM (moe_gemm.cu), and the activation preparation that feeds it. Device code only (anonymous namespace:
// each including .cu instantiates what it launches).
//
// block_gemm_kernel<kMode, kGrouped>: y[m, n] = Σ_k A[m, k] W[n, k], fp32 accumulation.
//   kMode = kGemmFp8Mma   e4m3 A and W, 128×128 block scales: each 128-wide K block summed by mma.m16n8k32 e4m3
//                         (sm_89/90/120) into a fresh fp32 accumulator, then scaled once (sa · sw) and added
//                         ("promotion" per K block, as DeepGEMM);
//   kMode = kGemmFp8Bf16  the same, each half K block of the e4m3 tiles dequantised to bf16 in shared memory
//                         (exact: e4m3 ⊂ bf16) for mma.m16n8k16 bf16 (sm_80/86: no FP8 mma);
//   kMode = kGemmBf16     bf16 A and W (64 K values per 128-byte tile row), no scales; A may be `parts` bf16
//                         arrays whose sum is the activation (the fp32-exact 3-part split), all summed into the
//                         same accumulator.
//   kGrouped: MoE experts in one launch. blockIdx.y is a 64-row tile of the permuted rows; the tile's expert e
//   is found on the device from the tile offsets (a binary search over E + 1 ints), its rows are
//   offsets[e] + 64·(tile - tile_off[e]) .. min(+64, offsets[e + 1]), its weights table[table0 + z·E + e]
//   (z = blockIdx.z). Tiles beyond the routed total exit at once (the grid is an upper bound known on the host).
//
// Tiling: 64 (M) × 64 (N) × 128 bytes of K (one scale block of e4m3, 64 bf16 values) per block of 4 warps (2 × 2,
// each 32 × 32: 2 m16 × 4 n8 MMA tiles); A and W tiles double-buffered with cp.async (16-byte chunks,
// XOR-swizzled so that the 8 rows of an ldmatrix hit distinct banks); fragments by ldmatrix (an 8 × 16-byte
// matrix is the same bytes for 8×8 bf16 and 8×16 e4m3). Rows of A and W must be 16-byte aligned (strides
// multiples of 16 bytes); bytes past K up to the next 16 must be zero (or K a multiple of 8/16 elements).
// Shared memory: 32 KB (kGemmFp8Mma, kGemmBf16), 48 KB (kGemmFp8Bf16: + a 64-wide bf16 copy of both tiles).
#pragma once
#include "common.cuh"
#include "fp8.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {
namespace {

constexpr int kGemmFp8Mma = 0, kGemmFp8Bf16 = 1, kGemmBf16 = 2;

constexpr int kGM = 64, kGN = 64, kGKB = 128;   // block tile: rows, columns, bytes of K per stage
constexpr int kGThreads = 128;                  // 4 warps, 2 (M) x 2 (N), each 32 x 32
constexpr int kGStageBytes = (kGM + kGN) * kGKB;  // one stage: A rows 0..63, then W rows 64..127, 128 bytes each
constexpr int kGConvBytes = (kGM + kGN) * 64 * 2;  // kGemmFp8Bf16: 64 K columns of both tiles as bf16

constexpr size_t gemm_smem_bytes(int mode) { return size_t(2 * kGStageBytes + (mode == kGemmFp8Bf16 ? kGConvBytes : 0)); }

// Byte offset of 16-byte chunk c (0..7) of row r in a tile of 128-byte rows; chunks XOR-swizzled by the row so
// that the 8 rows an ldmatrix reads at one logical chunk fall in 8 distinct bank groups.
__device__ __forceinline__ int swz(int r, int c) { return r * 128 + ((c ^ (r & 7)) << 4); }

// The grouped launch's extra arguments (unused by the plain GEMM).
struct GemmGroup {
  dev_ptr<const MoeWeightPtr> table;
  dev_ptr<const int32_t> off, toff;  // (E + 1) each
  int E, table0;
  int64_t w_count;  // bytes of each expert's weight (N · ldw)
  int64_t y_zstride;
};

// a: (parts, M, lda) bytes with part stride a_pstride; sa: (M, KB) (e4m3); w: (N, ldw) bytes; sw: (scale rows, KB);
// y: (M, ldy) fp32. K in elements. grid (ceil(N / 64), ceil(M / 64) or the tile bound, nz); block 128; dynamic smem
// gemm_smem_bytes(kMode).
template <int kMode, bool kGrouped>
__global__ void __launch_bounds__(kGThreads)
    block_gemm_kernel(dev_ptr<const uint8_t> a, int64_t lda, int64_t a_pstride, int parts, dev_ptr<const float> sa,
                      dev_ptr<const uint8_t> w, int64_t ldw, dev_ptr<const float> sw, int row0, dev_ptr<float> y,
                      int64_t ldy, int M, int N, int K, GemmGroup grp) {
  constexpr bool kFp8 = kMode != kGemmBf16;
  uint8_t* smem = infer_dynamic_smem<uint8_t>();
  uint8_t* conv = smem + 2 * kGStageBytes;  // kGemmFp8Bf16 only
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;
  const int g = lane / 4, tig = lane % 4;
  const int n0 = int(blockIdx.x) * kGN;
  int m0 = int(blockIdx.y) * kGM, m_end = M;  // this block's rows: [m0, min(m0 + 64, m_end))
  if constexpr (kGrouped) {
    const int tile = int(blockIdx.y);
    if (tile >= grp.toff[grp.E]) return;  // block-uniform: past the tiles the routing produced
    int lo = 0, hi = grp.E;               // the expert: the last e with toff[e] <= tile (experts without rows skipped)
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (grp.toff[mid] <= tile)
        lo = mid;
      else
        hi = mid;
    }
    m0 = grp.off[lo] + (tile - grp.toff[lo]) * kGM;
    m_end = min(m0 + kGM, int(grp.off[lo + 1]));
    const MoeWeightPtr e = grp.table[grp.table0 + int(blockIdx.z) * grp.E + lo];
    w = make_dev_ptr(static_cast<const uint8_t*>(e.w), size_t(grp.w_count));
    if constexpr (kFp8) {
      sw = make_dev_ptr(e.scale, size_t((e.row0 + N + kFp8QBlock - 1) / kFp8QBlock) * size_t((K + kFp8QBlock - 1) / kFp8QBlock));
      row0 = int(e.row0);
    }
    y += int64_t(blockIdx.z) * grp.y_zstride;
  }
  const int Kb = kFp8 ? K : 2 * K;         // bytes of K
  const int Kp = (Kb + 15) & ~15;          // bytes K..Kp-1 are zero in both operands
  const int KT = (Kb + kGKB - 1) / kGKB;   // K tiles per part (e4m3: scale blocks)
  const int iters = KT * (kFp8 ? 1 : parts);

  // cp.async of K tile `it` into stage `stage`: 1024 chunks of 16 bytes, 8 per thread (chunk tid % 8 of rows
  // tid / 8 + 16 i: A rows for i < 4, W rows after); zero-filled past the edges.
  const int lr = tid / 8, lc = tid % 8;
  const int l_off = swz(lr, lc);  // + i * 16 rows: the swizzle depends on the row mod 8 only
  auto load_stage = [&](int stage, int it) {
    uint8_t* t = smem + stage * kGStageBytes + l_off;
    const int p = it / KT;
    const int k = (it - p * KT) * kGKB + lc * 16;
    dev_ptr<const uint8_t> ap = a + int64_t(p) * a_pstride;
#pragma unroll
    for (int i = 0; i < kGM / 16; ++i) {
      const int row = m0 + lr + 16 * i;
      const bool valid = k < Kp && row < m_end;
      cp_async_16_zfill(t + i * 16 * 128, ap + (valid ? int64_t(row) * lda + k : 0), valid);
    }
#pragma unroll
    for (int i = 0; i < kGN / 16; ++i) {
      const int row = n0 + lr + 16 * i;
      const bool valid = k < Kp && row < N;
      cp_async_16_zfill(t + (kGM + i * 16) * 128, w + (valid ? int64_t(row) * ldw + k : 0), valid);
    }
    cp_async_commit();
  };
  // ldmatrix row addresses (byte offsets in a tile) for k-step 0; step s is offset ^ (s << 5): the logical chunk
  // 2 s + b lands at (b ^ row % 8) ^ 2 s, and the tile rows of every fragment start at multiples of 8.
  int a_off[2], b_off[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) a_off[i] = swz(wm * 32 + i * 16 + lane % 8 + ((lane / 8) % 2) * 8, lane / 16);
#pragma unroll
  for (int p = 0; p < 2; ++p) b_off[p] = swz(kGM + wn * 32 + p * 16 + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

  // One MMA k-step over the 32-byte column slice of chunks (2 * s, 2 * s + 1) of `tile` (e4m3: 32 K values,
  // k32 MMA; bf16: 16 K values, k16 MMA) into `d`. A: matrices (rows 0-7, chunk 2s), (8-15, 2s), (0-7, 2s+1),
  // (8-15, 2s+1) give a[0..3]; W: (n 0-7, 2s), (0-7, 2s+1) of two n-tiles give b[0..1] of each.
  auto mma_step = [&](float (&d)[2][4][4], const uint8_t* tile, int s, auto fp8_tag) {
    uint32_t af[2][4];
#pragma unroll
    for (int i = 0; i < 2; ++i) ldmatrix_x4(af[i], tile + (a_off[i] ^ (s << 5)));
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      uint32_t bq[4];
      ldmatrix_x4(bq, tile + (b_off[p] ^ (s << 5)));
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t bf[2] = {bq[2 * h], bq[2 * h + 1]};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          if constexpr (decltype(fp8_tag)::value)
            mma_m16n8k32_e4m3(d[i][2 * p + h], af[i], bf, d[i][2 * p + h]);
          else
            mma_m16n8k16_bf16(d[i][2 * p + h], af[i], bf, d[i][2 * p + h]);
        }
      }
    }
  };

  load_stage(0, 0);
  for (int it = 0; it < iters; ++it) {
    if (it + 1 < iters)
      load_stage((it + 1) & 1, it + 1);
    else
      cp_async_commit();  // an empty group keeps "wait until 1 group is pending" uniform

    if constexpr (!kFp8) {
      cp_async_wait<1>();
      __syncthreads();
      const uint8_t* t = smem + (it & 1) * kGStageBytes;
#pragma unroll 2
      for (int s = 0; s < 4; ++s) mma_step(acc, t, s, std::false_type{});
    } else {
      // This thread's row and column scales for block kb = it (loaded before the wait, so the latency overlaps).
      // The bf16 path's operands carry 2^-8 each (see e4m3x4_to_bf16x4_scaled): 2^16 goes into the row scale.
      const int KB = KT;
      constexpr float kUnscale = kMode == kGemmFp8Mma ? 1.0f : 65536.0f;
      float s_row[4], s_col[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = m0 + wm * 32 + (i / 2) * 16 + g + (i % 2) * 8;
        s_row[i] = row < m_end ? sa[int64_t(row) * KB + it] * kUnscale : 0.0f;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int col = n0 + wn * 32 + (j / 2) * 8 + tig * 2 + (j % 2);
        s_col[j] = col < N ? sw[int64_t((row0 + col) / kFp8QBlock) * KB + it] : 0.0f;
      }

      cp_async_wait<1>();
      __syncthreads();
      const uint8_t* t = smem + (it & 1) * kGStageBytes;

      float part[2][4][4];
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) part[i][j][0] = part[i][j][1] = part[i][j][2] = part[i][j][3] = 0.0f;

      if constexpr (kMode == kGemmFp8Mma) {
#pragma unroll 2
        for (int s = 0; s < 4; ++s) mma_step(part, t, s, std::true_type{});
      } else {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          if (half) __syncthreads();  // every warp is done with the first half's bf16 tile
          // e4m3 bytes half*64 + c*8 .. +8 of row r -> bf16 chunk c of row r (1024 chunks, 8 per thread)
#pragma unroll
          for (int i = 0; i < (kGM + kGN) * 8 / kGThreads; ++i) {
            const int idx = tid + i * kGThreads;
            const int r = idx / 8, c = idx % 8;
            const uint2 src = *reinterpret_cast<const uint2*>(t + swz(r, half * 4 + c / 2) + (c % 2) * 8);
            uint4 dst;
            e4m3x4_to_bf16x4_scaled(src.x, dst.x, dst.y);
            e4m3x4_to_bf16x4_scaled(src.y, dst.z, dst.w);
            *reinterpret_cast<uint4*>(conv + swz(r, c)) = dst;
          }
          __syncthreads();
#pragma unroll 2
          for (int s = 0; s < 4; ++s) mma_step(part, conv, s, std::false_type{});
        }
      }

      // Promotion: the block's exact-product sums, scaled once (activation scale, then weight scale), into the
      // fp32 result.
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            acc[i][j][e] = fmaf(part[i][j][e] * s_row[2 * i + e / 2], s_col[2 * j + e % 2], acc[i][j][e]);
    }
    __syncthreads();  // this stage (and the bf16 tile) is consumed: the next iteration's cp.async may refill it
  }
  cp_async_wait_all();

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = m0 + wm * 32 + i * 16 + g + (e / 2) * 8;
        const int col = n0 + wn * 32 + j * 8 + tig * 2 + e % 2;
        if (row < m_end && col < N) y[int64_t(row) * ldy + col] = acc[i][j][e];
      }
}

// ------------------------------------------------------------------ activation preparation

// The rows of an activation operand: x[rows[m]] (rows null: x[m]), or silu(g[m]) * u[m] when kSwiglu.
struct ActSrc {
  dev_ptr<const float> x;
  int64_t ldx;
  dev_ptr<const int32_t> rows;
  dev_ptr<const float> g, u;
  int64_t ldgu;
};
template <bool kSwiglu>
__device__ __forceinline__ float act_value(const ActSrc& s, int m, int k) {
  if constexpr (kSwiglu) {
    const float a = s.g[int64_t(m) * s.ldgu + k];
    return a / (1.0f + expf(-a)) * s.u[int64_t(m) * s.ldgu + k];  // swiglu_kernel's formula
  } else {
    const int64_t r = s.rows ? int64_t(s.rows[m]) : int64_t(m);
    return s.x[r * s.ldx + k];
  }
}

constexpr int kQuantWarps = 4;

// DeepSeek act_quant: q (M, ldq) e4m3, s (M, KB) fp32, s = amax / 448 per (row, 128-column block), q = e4m3_rn(v / s)
// saturating, an all-zero block gets s = 0 and q = 0; columns K..ldq-1 written as zero. One warp per (row, block),
// 4 values per lane.
template <bool kSwiglu>
__global__ void __launch_bounds__(kQuantWarps * 32)
    fp8_act_quant_kernel(ActSrc src, dev_ptr<uint8_t> q, int64_t ldq, dev_ptr<float> s, int M, int K, int KB) {
  const int lane = int(threadIdx.x % 32);
  const int64_t item = int64_t(blockIdx.x) * kQuantWarps + threadIdx.x / 32;
  if (item >= int64_t(M) * KB) return;  // warp-uniform
  const int m = int(item / KB), kb = int(item % KB);
  const int k0 = kb * kFp8QBlock + lane * 4;
  float v[4];
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = k0 + i < K ? act_value<kSwiglu>(src, m, k0 + i) : 0.0f;
    amax = fmaxf(amax, fabsf(v[i]));
  }
  amax = warp_reduce_max(amax);
  const float scale = amax / 448.0f;  // DeepSeek act_quant: s = amax / 448, y = x / s
  uint32_t packed = 0;
  if (amax > 0.0f) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      packed |= uint32_t(__nv_cvt_float_to_fp8(v[i] / scale, __NV_SATFINITE, __NV_E4M3)) << (8 * i);
  }
  if (k0 < ldq) *dev_ptr_cast<uint32_t>(q + int64_t(m) * ldq + k0) = packed;  // ldq % 16 == 0: whole words
  if (lane == 0) s[int64_t(m) * KB + kb] = scale;
}

}  // namespace
}  // namespace INFER_CUDA_NS
}  // namespace infer
