// backend_cpu.h — the CPU backend: the reference every other backend is tested against, and a fast one
// (SIMD kernels in ops.cpp, a fork-join thread pool). fp32 activations and KV cache.
#pragma once
#include <memory>
#include <vector>

#include "backend.h"
#include "cpu/attention.h"
#include "cpu/thread_pool.h"

namespace infer {

class CpuBackend final : public Backend {
 public:
  // Matmuls on bf16 model weights (cpu::Matrix::pack set) run the packed GEMM of cpu/gemm.h, packing each weight
  // (or q/k/v, gate/up concatenation) on first use; other matrices run the kernels of cpu/ops.h.
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
  void matmul_concat(const float* x, int64_t ldx, const std::vector<const cpu::Matrix*>& ws, float* y, int64_t ldy,
                     int64_t T) override;
  void prepare_matmul(const std::vector<const cpu::Matrix*>& ws) override;
  void add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) override;
  void head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm, float eps,
                      int64_t pos0, const RopeTable& rope) override;
  void kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) override;
  void attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out, int64_t ldo,
                 int64_t T, int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t d, float scale) override;
  void kv_write_rows(void* cache, int64_t width, const int32_t* rows, const float* src, int64_t lds,
                     int64_t T) override;
  void paged_attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out, int64_t ldo,
                       const PagedSeq* seqs, int64_t n_seqs, int64_t block_size, int64_t n_heads, int64_t n_kv_heads,
                       int64_t d, float scale) override;
  void swiglu_matmul(float* gu, int64_t ldgu, int64_t I, const cpu::Matrix& w, float* y, int64_t ldy,
                     int64_t T) override;
  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
              int64_t n) override;
  void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) override;
  void add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const TensorInfo& w, float* out, int64_t ldo,
                   int64_t T, int64_t n, float eps) override;

  // MoE
  void gather_rows(const float* src, int64_t lds, const int32_t* rows, int64_t n, float* dst, int64_t ldd,
                   int64_t width) override;
  void scatter_add_rows(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows,
                        const float* weights, int64_t n, int64_t width) override;

  // MLA
  void rope_strided(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t head_stride, int64_t d,
                    bool interleaved, int64_t pos0, const RopeTable& rope) override;
  void kv_read(const void* cache, int64_t width, int64_t pos0, int64_t n, float* dst, int64_t ldd) override;
  void mla_absorb_q(const float* q, int64_t ldq, const cpu::Matrix& kv_b, float* qa, int64_t ldqa, int64_t T,
                    int64_t nh, int64_t dn, int64_t dr, int64_t dv) override;
  void mla_attention_absorbed(const float* qa, int64_t ldqa, const void* cache, int64_t r, int64_t dr, float* o,
                              int64_t ldo, int64_t T, int64_t pos0, int64_t nh, float scale) override;
  void mla_absorb_out(const float* o, int64_t ldo, const cpu::Matrix& kv_b, float* out, int64_t ldout, int64_t T,
                      int64_t nh, int64_t dn, int64_t dv) override;
  void mla_attention_block(const float* q, int64_t ldq, const float* kvb, int64_t ldkvb, const float* kr,
                           int64_t ldkr, int64_t j0, int64_t nj, float* m, float* l, float* out, int64_t ldo,
                           int64_t T, int64_t pos0, int64_t nh, int64_t dn, int64_t dr, int64_t dv, float scale,
                           bool first, bool last) override;

 private:
  ThreadPool pool_;
  std::vector<cpu::AttnSeq> attn_seqs_;  // paged_attention: its sequences in the kernel's form
  // RoPE cos/sin of the rows being processed, (T, 2·half): row t holds cos then sin of position pos0 + t. Every
  // layer's q and k use the same angles, so they are computed once per (table, pos0, T) and reused.
  const float* rope_angles(const RopeTable& rope, int64_t pos0, int64_t T, int64_t half);
  std::vector<float> rope_cs_;
  const RopeTable* rope_key_table_ = nullptr;
  int64_t rope_key_pos0_ = -1, rope_key_T_ = 0, rope_key_half_ = 0;
  std::vector<float> mla_scores_;  // (nh, keys) absorbed-attention scores of one query row
  std::vector<float> mla_rows_;    // (threads, r) dequantised weight rows
};

}  // namespace infer
