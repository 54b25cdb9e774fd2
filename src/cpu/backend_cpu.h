// backend_cpu.h — the CPU backend: the reference every other backend is tested against, and a fast one
// (SIMD kernels in ops.cpp, a fork-join thread pool). fp32 activations and KV cache.
#pragma once
#include <memory>
#include <vector>

#include "backend.h"
#include "cpu/thread_pool.h"

namespace infer {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads) : pool_(n_threads) {}
  std::string name() const override { return "cpu"; }
  ThreadPool& pool() { return pool_; }

  float* alloc(int64_t n) override;
  void release(float* p) override;
  void to_host(const float* src, float* dst, int64_t n) override;
  void from_host(const float* src, float* dst, int64_t n) override;
  void* alloc_kv(int64_t n_ctx, int64_t width) override;
  void release_kv(void* kv) override;
  int64_t kv_bytes_per_value() const override { return sizeof(float); }

  void embed(const TensorInfo& table, const int32_t* ids, int64_t T, float* out, int64_t ldo) override;
  void rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T, int64_t n,
               float eps) override;
  void matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) override;
  void add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) override;
  void head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm, float eps,
                      int64_t pos0, const RopeTable& rope) override;
  void kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) override;
  void attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out, int64_t ldo,
                 int64_t T, int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t d, float scale) override;
  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
              int64_t n) override;
  void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) override;

 private:
  ThreadPool pool_;
  std::vector<float> scores_;  // (threads, keys) softmax scratch
  std::vector<float> rope_cs_;
};

}  // namespace infer
