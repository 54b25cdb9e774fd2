// kv.cu — appends rows to the fp32 KV cache: cache[pos0 + t, :] = src[t, :]. The position comes from the
// host (eager) or from device memory (CUDA-graph replay, where it changes every step).
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

// cache: (n_ctx, width); src: (T, lds). grid (column blocks, rows strided by gridDim.y).
__global__ void kv_write_kernel(dev_ptr<float> cache, int64_t width, int pos0, dev_ptr<const int32_t> pos_dev,
                                dev_ptr<const float> src, int64_t lds, int T) {
  const int64_t p0 = pos_dev ? pos_dev[0] : pos0;
  for (int t = int(blockIdx.y); t < T; t += int(gridDim.y))
    for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += int64_t(gridDim.x) * blockDim.x)
      cache[(p0 + t) * width + i] = src[t * lds + i];
}

void launch_kv_write(float* cache, int64_t n_ctx, int64_t width, int64_t pos0, const int32_t* pos_dev,
                     const float* src, int64_t lds, int64_t T, cudaStream_t stream) {
  const dim3 grid(unsigned(std::min<int64_t>((width + 255) / 256, 256)), unsigned(std::min<int64_t>(T, 65535)));
  infer_launch(kv_write_kernel, grid, dim3(unsigned(std::min<int64_t>(256, (width + 31) / 32 * 32))), 0, stream, make_dev_ptr(cache, size_t(n_ctx * width)), width, int(pos0),
               make_dev_ptr(pos_dev, pos_dev ? 1 : 0), make_dev_ptr(src, size_t((T - 1) * lds + width)), lds, int(T));
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
