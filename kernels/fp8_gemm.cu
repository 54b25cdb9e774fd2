// fp8_gemm.cu — matmuls on FP8 (float8_e4m3fn) weights with 128×128 block scales (DeepSeek-V3, Qwen3-*-FP8;
// model-spec.md §6), the weights staying FP8 in device memory:
//
//   - fp8_act_quant_kernel: activations (M, K) fp32 → e4m3 per token per 128 channels, as DeepSeek's act_quant:
//     s = amax / 448, q = e4m3_rn(x / s) (saturating), an all-zero block gets s = 0 and q = 0.
//   - fp8_gemm_kernel<kFp8Mma> (w8a8, T > 1): y[m, n] = Σ_kb sa[m, kb] · sw[n / 128, kb] · Σ_{k ∈ kb} qa[m, k] qw[n, k].
//     The inner sum of each 128-wide K block is computed on tensor cores into a fresh fp32 accumulator, then
//     scaled and added to the fp32 result ("promotion" per K block, as DeepGEMM: the block scales are applied
//     exactly once per block, in fp32). Two paths, chosen at run time by the caller (template parameter):
//       kFp8Mma = true  (sm_89, sm_90, sm_120): mma.sync.m16n8k32 e4m3 × e4m3 → f32 straight from the tiles;
//       kFp8Mma = false (sm_80, sm_86, no FP8 mma): each half K block of the e4m3 tiles is dequantised to bf16
//         in shared memory (exact: e4m3 ⊂ bf16) and fed to mma.sync.m16n8k16 bf16. Both paths compute the same
//         exact products and differ only in fp32 summation order; never a whole-matrix dequantisation.
//   - fp8_gemv_kernel (decode, T = 1): every weight byte read exactly once with 16-byte loads, dequantised in
//     registers and multiplied by the fp32 activation (w8a16, as the CPU backend: no activation quantisation).
//
// Layouts (all device memory): W (N, ldw) e4m3 row-major with ldw = round_up(K, 16) and columns K..ldw-1 zero
// (the backend pads at upload), so every row starts 16-byte aligned; scales fp32 (scale_rows, KB), KB =
// ceil(K / 128), row n of W uses scale row (row0 + n) / 128 (row0 > 0: a view whose first row sits inside a
// scale block); quantised activations (M, lda) e4m3, lda a multiple of 16, columns K..lda-1 zero, with their
// scales (M, KB) fp32.
//
// GEMM tiling: 64 (M) × 64 (N) × 128 (K = one scale block) per block of 4 warps (2 × 2, each 32 × 32: 2 m16 ×
// 4 n8 MMA tiles); A and W tiles double-buffered with cp.async (16-byte chunks, XOR-swizzled so that the 8 rows
// of an ldmatrix hit distinct banks); fragments by ldmatrix (an 8 × 16-byte matrix is the same bytes for 8×8
// bf16 and 8×16 e4m3). Shared memory: 32 KB (fp8 path), 48 KB (bf16 path: + a 64-wide bf16 copy of both tiles).
//
// Numerics of the e4m3 → bf16/f32 dequantisation (bf16 path, GEMV): the byte's sign, exponent and mantissa
// are shifted into f16 bits, which is exactly v · 2^-8 for every finite e4m3 value including subnormals, then
// widened to f32 (exact); the factor 2^8 per operand is folded into the block scale. The e4m3 NaN code (0x7f,
// absent from checkpoints) reads as 480 here, while the fp8 mma path treats it as NaN.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {

constexpr int kQBlock = 128;  // scale block side (K and N)

// ------------------------------------------------------------------ e4m3 helpers

// f32 of one f16 bit pattern (low 16 bits of h).
__device__ __forceinline__ float f16_bits_to_f32(uint32_t h) {
  __half_raw r;
  r.x = static_cast<unsigned short>(h & 0xffffu);
  return __half2float(__half(r));
}

// Four e4m3 (byte i of u = element i) as fp32 values v_i · 2^-8, exactly.
__device__ __forceinline__ void e4m3x4_to_f32_scaled(uint32_t u, float (&f)[4]) {
  const uint32_t ev = u & 0x00ff00ffu, od = (u >> 8) & 0x00ff00ffu;                  // elements {0, 2}, {1, 3}
  const uint32_t he = ((ev & 0x00800080u) << 8) | ((ev & 0x007f007fu) << 7);         // f16 bits of v · 2^-8
  const uint32_t ho = ((od & 0x00800080u) << 8) | ((od & 0x007f007fu) << 7);
  f[0] = f16_bits_to_f32(he);
  f[1] = f16_bits_to_f32(ho);
  f[2] = f16_bits_to_f32(he >> 16);
  f[3] = f16_bits_to_f32(ho >> 16);
}

// Four e4m3 as two registers of bf16 pairs (lo: elements 0, 1; hi: 2, 3), each value v_i · 2^-8, exactly
// (at most 4 significant bits: the f32's upper half is the bf16).
__device__ __forceinline__ void e4m3x4_to_bf16x4_scaled(uint32_t u, uint32_t& lo, uint32_t& hi) {
  float f[4];
  e4m3x4_to_f32_scaled(u, f);
  lo = (__float_as_uint(f[0]) >> 16) | (__float_as_uint(f[1]) & 0xffff0000u);
  hi = (__float_as_uint(f[2]) >> 16) | (__float_as_uint(f[3]) & 0xffff0000u);
}

// ------------------------------------------------------------------ activation quantisation

constexpr int kQuantWarps = 4;

// x: (M, ldx) fp32; q: (M, ldq) e4m3; s: (M, KB) fp32. One warp per (row, K block), 4 values per lane.
__global__ void __launch_bounds__(kQuantWarps * 32)
    fp8_act_quant_kernel(dev_ptr<const float> x, int64_t ldx, dev_ptr<uint8_t> q, int64_t ldq, dev_ptr<float> s,
                         int M, int K, int KB) {
  const int lane = int(threadIdx.x % 32);
  const int64_t item = int64_t(blockIdx.x) * kQuantWarps + threadIdx.x / 32;
  if (item >= int64_t(M) * KB) return;  // warp-uniform
  const int m = int(item / KB), kb = int(item % KB);
  const int k0 = kb * kQBlock + lane * 4;
  float v[4];
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = k0 + i < K ? x[int64_t(m) * ldx + k0 + i] : 0.0f;
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

// ------------------------------------------------------------------ GEMM (tensor cores)

constexpr int kGM = 64, kGN = 64, kGK = 128;  // block tile; kGK is one scale block
constexpr int kGThreads = 128;                // 4 warps, 2 (M) x 2 (N), each 32 x 32
constexpr int kGStageBytes = (kGM + kGN) * kGK;  // one stage: A rows 0..63, then W rows 64..127, 128 bytes each
constexpr int kGConvBytes = (kGM + kGN) * 64 * 2;  // bf16 path: 64 K columns of both tiles as bf16

constexpr size_t gemm_smem_bytes(bool fp8_mma) { return size_t(2 * kGStageBytes + (fp8_mma ? 0 : kGConvBytes)); }

// Byte offset of 16-byte chunk c (0..7) of row r in a tile of 128-byte rows; chunks XOR-swizzled by the row so
// that the 8 rows an ldmatrix reads at one logical chunk fall in 8 distinct bank groups.
__device__ __forceinline__ int swz(int r, int c) { return r * 128 + ((c ^ (r & 7)) << 4); }

// a: (M, lda) e4m3; sa: (M, KB); w: (N, ldw) e4m3; sw: (scale rows, KB); y: (M, ldy) fp32.
// grid (ceil(N / 64), ceil(M / 64)); block 128; dynamic smem gemm_smem_bytes(kFp8Mma).
template <bool kFp8Mma>
__global__ void __launch_bounds__(kGThreads)
    fp8_gemm_kernel(dev_ptr<const uint8_t> a, int64_t lda, dev_ptr<const float> sa, dev_ptr<const uint8_t> w,
                    int64_t ldw, dev_ptr<const float> sw, int row0, dev_ptr<float> y, int64_t ldy, int M, int N,
                    int K) {
  uint8_t* smem = infer_dynamic_smem<uint8_t>();
  uint8_t* conv = smem + 2 * kGStageBytes;  // bf16 path only
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;
  const int g = lane / 4, tig = lane % 4;
  const int m0 = int(blockIdx.y) * kGM, n0 = int(blockIdx.x) * kGN;
  const int KB = (K + kQBlock - 1) / kQBlock;
  const int Kp = (K + 15) & ~15;  // columns K..Kp-1 are zero in both operands

  // cp.async of K block kb into stage `stage`: 1024 chunks of 16 bytes, 8 per thread (chunk tid % 8 of rows
  // tid / 8 + 16 i: A rows for i < 4, W rows after); zero-filled past the edges.
  const int lr = tid / 8, lc = tid % 8;
  const int l_off = swz(lr, lc);  // + i * 16 rows: the swizzle depends on the row mod 8 only
  auto load_stage = [&](int stage, int kb) {
    uint8_t* t = smem + stage * kGStageBytes + l_off;
    const int k = kb * kGK + lc * 16;
#pragma unroll
    for (int i = 0; i < kGM / 16; ++i) {
      const int row = m0 + lr + 16 * i;
      const bool valid = k < Kp && row < M;
      cp_async_16_zfill(t + i * 16 * 128, a + (valid ? int64_t(row) * lda + k : 0), valid);
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

  load_stage(0, 0);
  for (int kb = 0; kb < KB; ++kb) {
    if (kb + 1 < KB)
      load_stage((kb + 1) & 1, kb + 1);
    else
      cp_async_commit();  // an empty group keeps "wait until 1 group is pending" uniform

    // This thread's row and column scales for block kb (loaded before the wait, so the latency overlaps). The
    // bf16 path's operands carry 2^-8 each (see e4m3x4_to_bf16x4_scaled): 2^16 goes into the row scale.
    constexpr float kUnscale = kFp8Mma ? 1.0f : 65536.0f;
    float s_row[4], s_col[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + wm * 32 + (i / 2) * 16 + g + (i % 2) * 8;
      s_row[i] = row < M ? sa[int64_t(row) * KB + kb] * kUnscale : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = n0 + wn * 32 + (j / 2) * 8 + tig * 2 + (j % 2);
      s_col[j] = col < N ? sw[int64_t((row0 + col) / kQBlock) * KB + kb] : 0.0f;
    }

    cp_async_wait<1>();
    __syncthreads();
    const uint8_t* t = smem + (kb & 1) * kGStageBytes;

    float part[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) part[i][j][0] = part[i][j][1] = part[i][j][2] = part[i][j][3] = 0.0f;

    // One MMA k-step over the 32-byte column slice of chunks (2 * s, 2 * s + 1) of `tile` (e4m3: 32 K values,
    // k32 MMA; bf16: 16 K values, k16 MMA). A: matrices (rows 0-7, chunk 2s), (8-15, 2s), (0-7, 2s+1), (8-15, 2s+1)
    // give a[0..3]; W: (n 0-7, 2s), (0-7, 2s+1) of two n-tiles give b[0..1] of each.
    auto mma_step = [&](const uint8_t* tile, int s, auto fp8_tag) {
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
              mma_m16n8k32_e4m3(part[i][2 * p + h], af[i], bf, part[i][2 * p + h]);
            else
              mma_m16n8k16_bf16(part[i][2 * p + h], af[i], bf, part[i][2 * p + h]);
          }
        }
      }
    };

    if constexpr (kFp8Mma) {
#pragma unroll 2
      for (int s = 0; s < 4; ++s) mma_step(t, s, std::true_type{});
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
        for (int s = 0; s < 4; ++s) mma_step(conv, s, std::false_type{});
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
        if (row < M && col < N) y[int64_t(row) * ldy + col] = acc[i][j][e];
      }
}

// ------------------------------------------------------------------ decode GEMV

constexpr int kVWarps = 4;
constexpr int kVRows = 4;  // output rows per warp (share the x loads; four 16-byte weight loads in flight)

// Sums acc[r] over the warp for each of the kVRows rows (as gemv.cu): returns the sum of row reduced_row(lane).
__device__ __forceinline__ float warp_reduce_rows4(float (&acc)[kVRows], unsigned lane) {
#pragma unroll
  for (int step = 0; (kVRows >> (step + 1)) > 0; ++step) {
    const int n = kVRows >> (step + 1), offset = 16 >> step;
    const bool upper = (lane & unsigned(offset)) != 0;
#pragma unroll
    for (int i = 0; i < n; ++i) {
      const float send = upper ? acc[i] : acc[i + n];
      const float keep = upper ? acc[i + n] : acc[i];
      acc[i] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
    }
  }
  float v = acc[0];
#pragma unroll
  for (int offset = 16 / kVRows; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ int reduced_row4(unsigned lane) {
  int row = 0;
#pragma unroll
  for (int step = 0; (kVRows >> (step + 1)) > 0; ++step)
    if (lane & unsigned(16 >> step)) row += kVRows >> (step + 1);
  return row;
}

// w: (N, ldw) e4m3; sw: (scale rows, KB); x: (K,) fp32 (16-byte aligned when kVecX); y: (N,).
// grid ceil(N / 16); block 128. Lanes stride over the 16-byte chunks of 4 rows; each chunk lies in one K block.
template <bool kVecX>
__global__ void __launch_bounds__(kVWarps * 32)
    fp8_gemv_kernel(dev_ptr<const uint8_t> w, int64_t ldw, dev_ptr<const float> sw, int row0, int KB,
                    dev_ptr<const float> x, dev_ptr<float> y, int N, int K) {
  const int lane = int(threadIdx.x % 32);
  const int n0 = (int(blockIdx.x) * kVWarps + int(threadIdx.x / 32)) * kVRows;
  if (n0 >= N) return;  // warp-uniform
  const int chunks = (K + 15) / 16;
  float acc[kVRows];
  dev_ptr<const uint4> rows[kVRows];
  int64_t srow[kVRows];
#pragma unroll
  for (int r = 0; r < kVRows; ++r) {
    const int n = min(n0 + r, N - 1);  // a clamped row is computed but not stored
    acc[r] = 0.0f;
    rows[r] = dev_ptr_cast<const uint4>(w + int64_t(n) * ldw);
    srow[r] = int64_t((row0 + n) / kQBlock) * KB;
  }
#pragma unroll 2
  for (int c = lane; c < chunks; c += 32) {
    float xs[16];
    if (kVecX && c * 16 + 16 <= K) {
      dev_ptr<const float4> xv = dev_ptr_cast<const float4>(x);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float4 v = xv[c * 4 + q];
        xs[4 * q] = v.x, xs[4 * q + 1] = v.y, xs[4 * q + 2] = v.z, xs[4 * q + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int q = 0; q < 16; ++q) xs[q] = c * 16 + q < K ? x[c * 16 + q] : 0.0f;
    }
    const int kb = c / 8;  // 8 chunks per scale block
#pragma unroll
    for (int r = 0; r < kVRows; ++r) {
      const uint4 raw = rows[r][c];
      const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
      float d = 0.0f;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        float f[4];
        e4m3x4_to_f32_scaled(u[q], f);
        d = fmaf(f[0], xs[4 * q], d);
        d = fmaf(f[1], xs[4 * q + 1], d);
        d = fmaf(f[2], xs[4 * q + 2], d);
        d = fmaf(f[3], xs[4 * q + 3], d);
      }
      acc[r] = fmaf(d, sw[srow[r] + kb], acc[r]);
    }
  }
  const float v = warp_reduce_rows4(acc, unsigned(lane));
  const int r = reduced_row4(unsigned(lane));
  if (lane % (32 / kVRows) == 0 && n0 + r < N) y[n0 + r] = v * 256.0f;  // the weights carried 2^-8
}

size_t scale_count(const Fp8Weight& w) {
  return size_t(fp8_scale_rows(w.N, w.row0) * fp8_scale_cols(w.K));
}

}  // namespace

// ------------------------------------------------------------------ host wrappers

void launch_fp8_act_quant(const float* x, int64_t ldx, int64_t M, int64_t K, uint8_t* q, int64_t ldq, float* s,
                          cudaStream_t stream) {
  if (M <= 0 || K <= 0) return;
  const int64_t KB = fp8_scale_cols(K);
  const int64_t items = M * KB;
  infer_launch(fp8_act_quant_kernel, dim3(unsigned((items + kQuantWarps - 1) / kQuantWarps)), dim3(kQuantWarps * 32),
               0, stream, make_dev_ptr(x, size_t((M - 1) * ldx + K)), ldx, make_dev_ptr(q, size_t(M * ldq)), ldq,
               make_dev_ptr(s, size_t(items)), int(M), int(K), int(KB));
}

void launch_fp8_gemm(const uint8_t* aq, int64_t lda, const float* as, int64_t M, const Fp8Weight& w, float* y,
                     int64_t ldy, Fp8MmaPath path, cudaStream_t stream) {
  if (M <= 0 || w.N <= 0) return;
  const dim3 grid(unsigned((w.N + kGN - 1) / kGN), unsigned((M + kGM - 1) / kGM));
  auto pa = make_dev_ptr(aq, size_t(M * lda));
  auto psa = make_dev_ptr(as, size_t(M * fp8_scale_cols(w.K)));
  auto pw = make_dev_ptr(w.w, size_t(w.N * w.ldw));
  auto psw = make_dev_ptr(w.scale, scale_count(w));
  auto py = make_dev_ptr(y, size_t((M - 1) * ldy + w.N));
  if (path == Fp8MmaPath::kFp8)
    infer_launch(fp8_gemm_kernel<true>, grid, dim3(kGThreads), gemm_smem_bytes(true), stream, pa, lda, psa, pw, w.ldw,
                 psw, int(w.row0), py, ldy, int(M), int(w.N), int(w.K));
  else
    infer_launch(fp8_gemm_kernel<false>, grid, dim3(kGThreads), gemm_smem_bytes(false), stream, pa, lda, psa, pw,
                 w.ldw, psw, int(w.row0), py, ldy, int(M), int(w.N), int(w.K));
}

void launch_fp8_gemv(const Fp8Weight& w, const float* x, float* y, cudaStream_t stream) {
  if (w.N <= 0) return;
  const dim3 grid(unsigned((w.N + kVWarps * kVRows - 1) / (kVWarps * kVRows)));
  auto pw = make_dev_ptr(w.w, size_t(w.N * w.ldw));
  auto psw = make_dev_ptr(w.scale, scale_count(w));
  auto px = make_dev_ptr(x, size_t(w.K));
  auto py = make_dev_ptr(y, size_t(w.N));
  const int KB = int(fp8_scale_cols(w.K));
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0)
    infer_launch(fp8_gemv_kernel<true>, grid, dim3(kVWarps * 32), 0, stream, pw, w.ldw, psw, int(w.row0), KB, px, py,
                 int(w.N), int(w.K));
  else
    infer_launch(fp8_gemv_kernel<false>, grid, dim3(kVWarps * 32), 0, stream, pw, w.ldw, psw, int(w.row0), KB, px,
                 py, int(w.N), int(w.K));
}

int fp8_mma_kernel_arch() {
#if defined(__CUDACC__)
  // The PTX architecture the fp8-mma GEMM was compiled for, in the image the current device runs (an sm_80
  // image on an sm_89 GPU has the e4m3 mma compiled out: it would trap).
  cudaFuncAttributes attr;
  if (cudaFuncGetAttributes(&attr, fp8_gemm_kernel<true>) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return attr.ptxVersion;
#else
  return -1;  // the emulator runs every path
#endif
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
