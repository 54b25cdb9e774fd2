// forwarding_backend.h — a test Backend that forwards every op to a CpuBackend. Tests derive from it and override
// the ops they want to observe (calling ForwardingBackend's version to do the work), so a spy backend does not
// restate the whole interface.
#pragma once
#include <string>

#include "backend.h"
#include "cpu/backend_cpu.h"

namespace infer {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(int n_threads = 2) : cpu_(n_threads) {}
  std::string name() const override { return "forwarding-cpu"; }
  float* alloc(int64_t n) override { return cpu_.alloc(n); }
  void release(float* p) override { cpu_.release(p); }
  void to_host(const float* s, float* d, int64_t n) override { cpu_.to_host(s, d, n); }
  void from_host(const float* s, float* d, int64_t n) override { cpu_.from_host(s, d, n); }
  void* alloc_kv(int64_t n, int64_t w) override { return cpu_.alloc_kv(n, w); }
  void release_kv(void* kv) override { cpu_.release_kv(kv); }
  int64_t kv_bytes_per_value() const override { return cpu_.kv_bytes_per_value(); }
  void embed(const TensorInfo& t, const int32_t* ids, int64_t T, float* out, int64_t ldo) override {
    cpu_.embed(t, ids, T, out, ldo);
  }
  void rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T, int64_t n,
               float eps) override {
    cpu_.rmsnorm(x, ldx, w, out, ldo, T, n, eps);
  }
  void matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) override {
    cpu_.matmul(x, ldx, w, y, ldy, T);
  }
  void add_bias(float* y, int64_t ldy, const TensorInfo& b, int64_t T) override { cpu_.add_bias(y, ldy, b, T); }
  void head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t nh, int64_t d, const TensorInfo* norm, float eps,
                      int64_t pos0, const RopeTable& rope) override {
    cpu_.head_norm_rope(x, ldx, T, nh, d, norm, eps, pos0, rope);
  }
  void kv_write(void* c, int64_t w, int64_t pos0, const float* s, int64_t lds, int64_t T) override {
    cpu_.kv_write(c, w, pos0, s, lds, T);
  }
  void attention(const float* q, int64_t ldq, const void* k, const void* v, float* out, int64_t ldo, int64_t T,
                 int64_t pos0, int64_t nh, int64_t nkv, int64_t d, float scale) override {
    cpu_.attention(q, ldq, k, v, out, ldo, T, pos0, nh, nkv, d, scale);
  }
  void kv_write_rows(void* c, int64_t w, const int32_t* rows, const float* s, int64_t lds, int64_t T) override {
    cpu_.kv_write_rows(c, w, rows, s, lds, T);
  }
  void paged_attention(const float* q, int64_t ldq, const void* k, const void* v, float* out, int64_t ldo,
                       const PagedSeq* seqs, int64_t n_seqs, int64_t bs, int64_t nh, int64_t nkv, int64_t d,
                       float scale) override {
    cpu_.paged_attention(q, ldq, k, v, out, ldo, seqs, n_seqs, bs, nh, nkv, d, scale);
  }
  void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
              int64_t n) override {
    cpu_.swiglu(g, ldg, u, ldu, y, ldy, T, n);
  }
  void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) override {
    cpu_.add(x, ldx, y, ldy, T, n);
  }
  void gather_rows(const float* s, int64_t lds, const int32_t* r, int64_t n, float* d, int64_t ldd,
                   int64_t w) override {
    cpu_.gather_rows(s, lds, r, n, d, ldd, w);
  }
  void scatter_add_rows(float* d, int64_t ldd, const float* s, int64_t lds, const int32_t* r, const float* w,
                        int64_t n, int64_t width) override {
    cpu_.scatter_add_rows(d, ldd, s, lds, r, w, n, width);
  }
  void rope_strided(float* x, int64_t ldx, int64_t T, int64_t nh, int64_t hs, int64_t d, bool il, int64_t pos0,
                    const RopeTable& rope) override {
    cpu_.rope_strided(x, ldx, T, nh, hs, d, il, pos0, rope);
  }
  void kv_read(const void* c, int64_t w, int64_t pos0, int64_t n, float* d, int64_t ldd) override {
    cpu_.kv_read(c, w, pos0, n, d, ldd);
  }
  void mla_absorb_q(const float* q, int64_t ldq, const cpu::Matrix& kv_b, float* qa, int64_t ldqa, int64_t T,
                    int64_t nh, int64_t dn, int64_t dr, int64_t dv) override {
    cpu_.mla_absorb_q(q, ldq, kv_b, qa, ldqa, T, nh, dn, dr, dv);
  }
  void mla_attention_absorbed(const float* qa, int64_t ldqa, const void* c, int64_t r, int64_t dr, float* o,
                              int64_t ldo, int64_t T, int64_t pos0, int64_t nh, float scale) override {
    cpu_.mla_attention_absorbed(qa, ldqa, c, r, dr, o, ldo, T, pos0, nh, scale);
  }
  void mla_absorb_out(const float* o, int64_t ldo, const cpu::Matrix& kv_b, float* out, int64_t ldout, int64_t T,
                      int64_t nh, int64_t dn, int64_t dv) override {
    cpu_.mla_absorb_out(o, ldo, kv_b, out, ldout, T, nh, dn, dv);
  }
  void mla_attention_block(const float* q, int64_t ldq, const float* kvb, int64_t ldkvb, const float* kr,
                           int64_t ldkr, int64_t j0, int64_t nj, float* m, float* l, float* out, int64_t ldo,
                           int64_t T, int64_t pos0, int64_t nh, int64_t dn, int64_t dr, int64_t dv, float scale,
                           bool first, bool last) override {
    cpu_.mla_attention_block(q, ldq, kvb, ldkvb, kr, ldkr, j0, nj, m, l, out, ldo, T, pos0, nh, dn, dr, dv, scale,
                             first, last);
  }

 protected:
  CpuBackend cpu_;
};

}  // namespace infer
