// fp8_gemm.cu — matmuls on FP8 (float8_e4m3fn) weights with 128×128 block scales (DeepSeek-V3, Qwen3-*-FP8;
// model-spec.md §6), the weights staying FP8 in device memory:
//
//   - fp8_act_quant_kernel (block_gemm.cuh): activations (M, K) fp32 → e4m3 per token per 128 channels, as
//     DeepSeek's act_quant: s = amax / 448, q = e4m3_rn(x / s) (saturating), an all-zero block gets s = 0, q = 0.
//   - block_gemm_kernel<kGemmFp8Mma | kGemmFp8Bf16> (block_gemm.cuh; w8a8, T > 1):
//     y[m, n] = Σ_kb sa[m, kb] · sw[n / 128, kb] · Σ_{k ∈ kb} qa[m, k] qw[n, k]. The inner sum of each 128-wide
//     K block is computed on tensor cores into a fresh fp32 accumulator, then scaled and added to the fp32 result
//     ("promotion" per K block, as DeepGEMM: the block scales are applied exactly once per block, in fp32). Two paths, chosen at run time by the caller (template parameter):
//       kGemmFp8Mma  (sm_89, sm_90, sm_120): mma.sync.m16n8k32 e4m3 × e4m3 → f32 straight from the tiles;
//       kGemmFp8Bf16 (sm_80, sm_86, no FP8 mma): each half K block of the e4m3 tiles is dequantised to bf16
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
// GEMM tiling and shared memory: block_gemm.cuh (also the grouped expert GEMM of moe_gemm.cu). e4m3 → bf16/f32
// dequantisation (bf16 path, GEMV): fp8.cuh (exact, the factor 2^8 per operand folded into the block scale).
#include "block_gemm.cuh"
#include "common.cuh"
#include "fp8.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {

constexpr int kQBlock = kFp8QBlock;

// ------------------------------------------------------------------ decode GEMV

constexpr int kVWarps = 4;
constexpr int kVRows = 4;  // output rows per warp (share the x loads; four 16-byte weight loads in flight)

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
    load_x_chunk16<kVecX>(x, c, K, xs);
    const int kb = c / 8;  // 8 chunks per scale block
#pragma unroll
    for (int r = 0; r < kVRows; ++r) acc[r] = fmaf(e4m3x16_dot_scaled(rows[r][c], xs), sw[srow[r] + kb], acc[r]);
  }
  const float v = warp_reduce_rows<kVRows>(acc, unsigned(lane));
  const int r = warp_reduced_row<kVRows>(unsigned(lane));
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
  const ActSrc src{make_dev_ptr(x, size_t((M - 1) * ldx + K)), ldx, nullptr, nullptr, nullptr, 0};
  infer_launch(fp8_act_quant_kernel<false>, dim3(unsigned((items + kQuantWarps - 1) / kQuantWarps)),
               dim3(kQuantWarps * 32), 0, stream, src, make_dev_ptr(q, size_t(M * ldq)), ldq,
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
  const GemmGroup none{};
  if (path == Fp8MmaPath::kFp8)
    infer_launch(block_gemm_kernel<kGemmFp8Mma, false>, grid, dim3(kGThreads), gemm_smem_bytes(kGemmFp8Mma), stream,
                 pa, lda, int64_t(0), 1, psa, pw, w.ldw, psw, int(w.row0), py, ldy, int(M), int(w.N), int(w.K), none);
  else
    infer_launch(block_gemm_kernel<kGemmFp8Bf16, false>, grid, dim3(kGThreads), gemm_smem_bytes(kGemmFp8Bf16), stream,
                 pa, lda, int64_t(0), 1, psa, pw, w.ldw, psw, int(w.row0), py, ldy, int(M), int(w.N), int(w.K), none);
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
  if (cudaFuncGetAttributes(&attr, block_gemm_kernel<kGemmFp8Mma, false>) != cudaSuccess) {
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
