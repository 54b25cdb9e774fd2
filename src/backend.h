// backend.h — what a compute backend provides to the architecture code in src/models/.
//
// Model code is written once against this interface; each backend (CPU in src/cpu/backend_cpu.cpp, CUDA later)
// implements the ops. Conventions:
//   - activations are fp32 arrays in backend memory (host memory for the CPU, device memory for CUDA), allocated
//     with alloc(); row-major with an explicit leading dimension (`ld*`, in elements) where rows may be strided;
//   - weights are passed as host views of the checkpoint (cpu::Matrix / TensorInfo, PyTorch layout); a device
//     backend maps them to its own copies (uploaded once) by their host address;
//   - the KV cache is opaque (alloc_kv); its element type is the backend's choice;
//   - ops are enqueued in order; to_host() waits for them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "cpu/ops.h"
#include "rope.h"
#include "safetensors.h"

namespace infer {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory
  virtual float* alloc(int64_t n_floats) = 0;  // throws INFER_ERR_OUT_OF_MEMORY
  virtual void release(float* p) = 0;
  virtual void to_host(const float* src, float* dst, int64_t n) = 0;     // waits for queued work
  virtual void from_host(const float* src, float* dst, int64_t n) = 0;
  // KV cache of one layer for one of K or V: n_ctx rows of `width` values.
  virtual void* alloc_kv(int64_t n_ctx, int64_t width) = 0;
  virtual void release_kv(void* kv) = 0;
  virtual int64_t kv_bytes_per_value() const = 0;

  // ---- ops (T = rows/tokens in the batch)
  // out[t, :] = table[ids[t], :] (bf16/f16/f32 table; ids are host memory, already range-checked).
  virtual void embed(const TensorInfo& table, const int32_t* ids, int64_t T, float* out, int64_t ldo) = 0;
  // out[t] = x[t] / rms(x[t]) * w, rows of width n. x and out may alias.
  virtual void rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T, int64_t n,
                       float eps) = 0;
  // y[t, n] = sum_k x[t, k] W[n, k].
  virtual void matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) = 0;
  // y[t, :] += bias (bf16/f32 vector of y's width).
  virtual void add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) = 0;
  // For each row t (position pos0 + t) and head h of x[t, h*d : (h+1)*d]: optional per-head RMSNorm with weight
  // `norm` (d,), then NeoX RoPE over all d dims with the angles of `rope`.
  virtual void head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm,
                              float eps, int64_t pos0, const RopeTable& rope) = 0;
  // cache[pos0 + t, :] = src[t, :width].
  virtual void kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) = 0;
  // Causal GQA attention for query rows t at positions pos0 + t over cached keys 0..pos0+t:
  // out[t, h*d:(h+1)*d] = softmax(q_h · K_g^T * scale) V_g with g = h / (nh / nkv).
  virtual void attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out, int64_t ldo,
                         int64_t T, int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t d, float scale) = 0;
  // y = silu(g) * u, elementwise over rows of width n (y may alias g).
  virtual void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                      int64_t n) = 0;
  // x += y, rows of width n.
  virtual void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) = 0;
};

// Creates the backend named by `device`: "cpu", "cuda"/"cuda:N", or "auto" (CUDA when this build has it and a
// usable GPU is present, else CPU). Throws INFER_ERR_UNSUPPORTED with the reason when the device is unavailable.
std::unique_ptr<Backend> make_backend(const std::string& device, int n_threads);

}  // namespace infer
