// embedding.cu — token embedding gather: out[t, :] = table[ids[t], :] as fp32 (bf16 / f16 / f32 tables).
//
// Memory-bound and tiny (T rows of hidden values per forward); one block column per row, grid-stride
// over the row. Build: nvcc (cmake/cuda.cmake) and the SIMT emulator (cmake/simt.cmake).
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
}  // namespace

// table: (vocab, hidden); ids: (T,); out: (T, ldo). grid (column blocks, rows), rows strided by gridDim.y.
template <class E>
__global__ void embed_kernel(dev_ptr<const E> table, dev_ptr<const int32_t> ids, dev_ptr<float> out, int64_t ldo,
                             int hidden, int T) {
  for (int t = int(blockIdx.y); t < T; t += int(gridDim.y)) {
    const int64_t row = int64_t(ids[t]) * hidden;
    for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < hidden; i += int(gridDim.x * blockDim.x))
      out[t * ldo + i] = to_f32(table[row + i]);
  }
}

void launch_embed(const void* table, KType type, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t T,
                  float* out, int64_t ldo, cudaStream_t stream) {
  const dim3 block(unsigned(std::min<int64_t>(256, (hidden + 31) / 32 * 32)));
  const dim3 grid(unsigned(std::min<int64_t>((hidden + 255) / 256, 64)), unsigned(std::min<int64_t>(T, 65535)));
  const size_t n = size_t(vocab * hidden);
  auto pids = make_dev_ptr(ids, size_t(T));
  auto pout = make_dev_ptr(out, size_t((T - 1) * ldo + hidden));
  switch (type) {
    case KType::kF32:
      infer_launch(embed_kernel<float>, grid, block, 0, stream, make_dev_ptr(static_cast<const float*>(table), n),
                   pids, pout, ldo, int(hidden), int(T));
      break;
    case KType::kBF16:
      infer_launch(embed_kernel<__nv_bfloat16>, grid, block, 0, stream,
                   make_dev_ptr(static_cast<const __nv_bfloat16*>(table), n), pids, pout, ldo, int(hidden), int(T));
      break;
    case KType::kF16:
      infer_launch(embed_kernel<__half>, grid, block, 0, stream, make_dev_ptr(static_cast<const __half*>(table), n),
                   pids, pout, ldo, int(hidden), int(T));
      break;
    case KType::kFP8:  // not an embedding dtype: the backend's ktype() never yields it (MoE expert tables only)
      break;
  }
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
