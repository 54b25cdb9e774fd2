// moe_gemm.cu — the grouped expert GEMM of the MoE layers (T > 1): every expert's rows in one launch, the expert of
// each 64-row tile found on the device, so a prefill MoE layer needs no host sync (and could be graph-captured).
//
// Per MoE layer (n = T·k permuted rows; launch_moe_permute gives offsets, rows, pos and the tile offsets):
//   1. the activation operand: the tokens' rows gathered in expert order and converted (bf16 parts or e4m3 act_quant)
//   2. gate and up of every expert: one block_gemm_kernel<·, grouped> launch with grid.z = 2
//   3. h = silu(g) · u, converted as in 1
//   4. down of every expert: one grouped launch
//   5. launch_moe_unpermute (moe.cu): the weighted sum per token in the CPU's order.
// bf16 experts run kGemmBf16 (A in 1 or 3 bf16 parts, as the dense prefill's cuBLAS GEMM in kFast / kFp32);
// FP8 experts run the FP8 GEMM's block-scaled tiles (w8a8, DeepSeek's act_quant) on the e4m3 or bf16 mma path.
#include "block_gemm.cuh"
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {

constexpr int kPackThreads = 256;

ActSrc act_src(const MoeActSource& s, int64_t n, int64_t K) {
  ActSrc a{};
  if (s.g) {
    a.g = make_dev_ptr(s.g, size_t((n - 1) * s.ldgu + K));
    a.u = make_dev_ptr(s.u, size_t((n - 1) * s.ldgu + K));
    a.ldgu = s.ldgu;
    a.ldx = 0;
  } else {
    a.x = make_dev_ptr(s.x, size_t((s.n_x - 1) * s.ldx + K));
    a.ldx = s.ldx;
    a.rows = make_dev_ptr(s.rows, s.rows ? size_t(n) : 0);
    a.ldgu = 0;
  }
  return a;
}

// out[p, m, c] for c < ld: part p of the row's value (0 for c >= K); grid (ceil(ld / 256), rows strided).
template <bool kSwiglu>
__global__ void __launch_bounds__(kPackThreads)
    moe_pack_bf16_kernel(ActSrc src, dev_ptr<__nv_bfloat16> out, int64_t ld, int parts, int M, int K) {
  for (int m = int(blockIdx.y); m < M; m += int(gridDim.y)) {
    const int c = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= ld) continue;
    float rest = c < K ? act_value<kSwiglu>(src, m, c) : 0.0f;
    for (int p = 0; p < parts; ++p) {  // launch_f32_to_bf16's split
      const __nv_bfloat16 h = __float2bfloat16_rn(rest);
      out[(int64_t(p) * M + m) * ld + c] = h;
      rest -= __bfloat162float(h);
    }
  }
}

}  // namespace

void launch_moe_act_bf16(const MoeActSource& s, int64_t n, int64_t K, uint16_t* out, int64_t ld, int parts,
                         cudaStream_t stream) {
  if (n <= 0) return;
  const ActSrc src = act_src(s, n, K);
  const dim3 grid(unsigned((ld + kPackThreads - 1) / kPackThreads), unsigned(std::min<int64_t>(n, 65535)));
  auto o = make_dev_ptr(reinterpret_cast<__nv_bfloat16*>(out), size_t(parts * n * ld));
  if (s.g)
    infer_launch(moe_pack_bf16_kernel<true>, grid, dim3(kPackThreads), 0, stream, src, o, ld, parts, int(n), int(K));
  else
    infer_launch(moe_pack_bf16_kernel<false>, grid, dim3(kPackThreads), 0, stream, src, o, ld, parts, int(n), int(K));
}

void launch_moe_act_fp8(const MoeActSource& s, int64_t n, int64_t K, uint8_t* q, int64_t ldq, float* sc,
                        cudaStream_t stream) {
  if (n <= 0) return;
  const ActSrc src = act_src(s, n, K);
  const int64_t KB = fp8_scale_cols(K), items = n * KB;
  const dim3 grid(unsigned((items + kQuantWarps - 1) / kQuantWarps));
  auto pq = make_dev_ptr(q, size_t(n * ldq));
  auto ps = make_dev_ptr(sc, size_t(items));
  if (s.g)
    infer_launch(fp8_act_quant_kernel<true>, grid, dim3(kQuantWarps * 32), 0, stream, src, pq, ldq, ps, int(n), int(K),
                 int(KB));
  else
    infer_launch(fp8_act_quant_kernel<false>, grid, dim3(kQuantWarps * 32), 0, stream, src, pq, ldq, ps, int(n),
                 int(K), int(KB));
}

bool moe_grouped_supported(KType wtype, int64_t K) {
  return (wtype == KType::kFP8 || (wtype == KType::kBF16 && K % 8 == 0)) && K > 0;
}

void launch_moe_grouped_gemm(const MoeGroupedGemmArgs& a, cudaStream_t stream) {
  if (a.n <= 0 || a.N <= 0) return;
  const bool fp8 = a.wtype == KType::kFP8;
  const int64_t es = fp8 ? 1 : 2;               // bytes per element
  const int64_t ldw = fp8 ? fp8_padded_k(a.K) : a.K;
  const int64_t KB = fp8_scale_cols(a.K);
  GemmGroup grp;
  grp.table = make_dev_ptr(a.table, size_t(a.table0 + a.nz * a.E));
  grp.off = make_dev_ptr(a.offsets, size_t(a.E + 1));
  grp.toff = make_dev_ptr(a.tile_off, size_t(a.E + 1));
  grp.E = int(a.E);
  grp.table0 = int(a.table0);
  grp.w_count = a.N * ldw * es;
  grp.y_zstride = a.y_zstride;
  const dim3 grid(unsigned((a.N + kGN - 1) / kGN), unsigned(moe_max_tiles(a.n, a.E)), unsigned(a.nz));
  const int parts = fp8 ? 1 : a.parts;
  auto pa = make_dev_ptr(static_cast<const uint8_t*>(a.a), size_t(parts * a.n * a.lda * es));
  auto psa = make_dev_ptr(a.a_scale, fp8 ? size_t(a.n * KB) : 0);
  auto py = make_dev_ptr(a.y, size_t((a.nz - 1) * a.y_zstride + (a.n - 1) * a.ldy + a.N));
  const dev_ptr<const uint8_t> no_w = nullptr;
  const dev_ptr<const float> no_s = nullptr;
  const int64_t lda = a.lda * es, pstride = a.n * a.lda * es, ldwb = ldw * es;
#define INFER_GROUPED_LAUNCH(mode)                                                                                  \
  infer_launch(block_gemm_kernel<mode, true>, grid, dim3(kGThreads), gemm_smem_bytes(mode), stream, pa, lda, pstride, \
               parts, psa, no_w, ldwb, no_s, 0, py, a.ldy, int(a.n), int(a.N), int(a.K), grp)
  if (!fp8)
    INFER_GROUPED_LAUNCH(kGemmBf16);
  else if (a.path == Fp8MmaPath::kFp8)
    INFER_GROUPED_LAUNCH(kGemmFp8Mma);
  else
    INFER_GROUPED_LAUNCH(kGemmFp8Bf16);
#undef INFER_GROUPED_LAUNCH
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
