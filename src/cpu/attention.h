// attention.h — the CPU backend's causal GQA attention over an fp32 KV cache.
//
// Flash style: for a work item of up to 16 query vectors that share a KV head (rows × the heads of one group), keys
// are processed in blocks of 32 — scores of every query vector against the block (with 8 or more query vectors the
// block is transposed in registers once and each query element multiplies 32 keys per two FMAs; with fewer, as
// during decode, one dot product per key row read once for all of them), an online-softmax update (running max and
// sum, the output rescaled), then P·V in register tiles of 4 query vectors × 64 values. Memory: O(block) per thread whatever the context length; every key and value row of a
// head is read once per work item, not once per query vector. Items are handed out dynamically (longest first), so
// causal prefill keeps every thread busy; each output is computed by one thread in a fixed order (results do not
// depend on the thread count). AVX-512 for head_dim a multiple of 16 up to 128, scalar otherwise.
#pragma once
#include <cstdint>

#include "cpu/thread_pool.h"

namespace infer::cpu {

// out[t, h·d : (h+1)·d] = softmax_j(scale · q[t, h·d ..] · k_j) v_j over keys j ≤ pos0 + t of KV head g = h / (nh/nkv);
// key j of head g at kc + j·ldkv + g·d (the same for vc).
void attention(ThreadPool& pool, const float* q, int64_t ldq, const float* kc, const float* vc, int64_t ldkv,
               float* out, int64_t ldo, int64_t T, int64_t pos0, int64_t nh, int64_t nkv, int64_t d, float scale);

// One sequence of a batched call: its n query rows start at row row0 of q/out and sit at positions pos0 .. pos0+n-1.
// blocks null: key j at cache row j; else a paged cache, key j at row blocks[j / bs]·bs + j % bs.
struct AttnSeq {
  int64_t row0 = 0, n = 0, pos0 = 0;
  const int32_t* blocks = nullptr;
};

// The same attention for n_seqs sequences in one parallel call (continuous batching over a paged cache). A
// sequence's outputs are bit-identical to those of the single-sequence call above with T = n over a contiguous cache
// holding the same keys: it is split into the same work items, each computed in the same order.
void attention(ThreadPool& pool, const float* q, int64_t ldq, const float* kc, const float* vc, int64_t ldkv,
               float* out, int64_t ldo, const AttnSeq* seqs, int64_t n_seqs, int64_t bs, int64_t nh, int64_t nkv,
               int64_t d, float scale);

}  // namespace infer::cpu
