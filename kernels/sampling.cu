// sampling.cu — the next token from a row of logits on the device: argmax (temperature <= 0), or
// temperature + top-k + top-p + min-p + one draw, exactly as infer::Sampler::sample orders them (its
// penalties are applied by the caller first). One block of 1024 threads:
//   1. top-k by radix select: four 8-bit histogram passes over order-preserving keys of the logits find
//      the k-th largest value; candidates above it are gathered, and ties at it are taken in index order
//      (a block scan), so the candidate set equals the CPU's partial_sort with its (logit desc, index asc)
//      order;
//   2. a bitonic sort of the <= 1024 candidates by (logit desc, index asc);
//   3. the softmax over the candidates in double, with the CPU's max subtraction, cumulative sums by a
//      block scan, the top-p / min-p cut, and the first candidate whose cumulative mass passes u * mass.
// Cost: ~4 reads of the logits (radix passes) + O(k log^2 k) shared-memory work; a few microseconds per
// token for a 150K vocabulary, versus a 600 KB device-to-host copy and a host sort.
#include "common.cuh"
#include "kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

constexpr int kSampleThreads = 1024;
constexpr int kSampleMax = 1024;  // candidates sorted on the device

namespace {
// Monotone map of a float to uint32 (larger float -> larger key).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
// Candidate order: larger logit first, then lower index.
__device__ __forceinline__ bool before(float la, int ia, float lb, int ib) {
  return la > lb || (la == lb && ia < ib);
}
}  // namespace

// logits: (vocab,); token: (1,). One block of kSampleThreads.
__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(dev_ptr<const float> logits, int vocab, float temperature, int top_k, float top_p, float min_p,
                  double u, dev_ptr<int32_t> token) {
  __shared__ float cand_l[kSampleMax];
  __shared__ int cand_i[kSampleMax];
  __shared__ double cum[kSampleMax];
  __shared__ unsigned hist[256];
  __shared__ double warp_tot[32];
  __shared__ unsigned long long scan64[32];
  __shared__ float red_l[32];
  __shared__ int red_i[32];
  // note: shared scalars are written by thread 0 and read by all after a barrier. (In the emulator, accesses
  // to a __shared__ scalar are not tracked: compilers do not instrument provably in-bounds accesses to
  // thread_local variables; so no atomics on them here, which would be reported as uninitialized reads.)
  __shared__ uint32_t s_prefix, s_mask;
  __shared__ int s_remaining;
  __shared__ double s_p0;
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;

  if (temperature <= 0.0f) {  // argmax, first index on ties (as torch.argmax and infer::argmax)
    float bl = -INFINITY;
    int bi = vocab;
    for (int i = tid; i < vocab; i += kSampleThreads) {
      const float v = logits[i];
      if (bi == vocab || v > bl) bl = v, bi = i;  // i increases within a thread: ties keep the first
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ol = __shfl_xor_sync(0xffffffffu, bl, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi < vocab && (bi == vocab || before(ol, oi, bl, bi))) bl = ol, bi = oi;
    }
    if (lane == 0) red_l[warp] = bl, red_i[warp] = bi;
    __syncthreads();
    if (warp == 0) {
      bl = red_l[lane];
      bi = red_i[lane];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ol = __shfl_xor_sync(0xffffffffu, bl, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi < vocab && (bi == vocab || before(ol, oi, bl, bi))) bl = ol, bi = oi;
      }
      if (lane == 0) token[0] = bi < vocab ? bi : 0;
    }
    return;
  }

  const int k = top_k > 0 && top_k < vocab ? top_k : vocab;  // <= kSampleMax (checked by the host)

  // 1. radix select of the k-th largest key: after the passes, s_prefix is that key and s_remaining how
  //    many elements equal to it belong to the top k.
  if (tid == 0) s_prefix = 0, s_mask = 0, s_remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += kSampleThreads) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix, mask = s_mask;
    for (int i = tid; i < vocab; i += kSampleThreads) {
      const uint32_t key = order_key(logits[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      int above = 0, b = 255;
      for (; b > 0 && above + int(hist[b]) < s_remaining; --b) above += int(hist[b]);
      s_remaining -= above;
      s_prefix = prefix | (uint32_t(b) << shift);
      s_mask = mask | (255u << shift);
    }
    __syncthreads();
  }
  const uint32_t kth = s_prefix;
  const int ties_wanted = s_remaining;

  // 2. gather in index order: each thread takes a contiguous range of indices; a block scan of the counts of
  //    keys above kth (slots [0, k - ties_wanted)) and equal to it (the first ties_wanted of them follow).
  const int per = (vocab + kSampleThreads - 1) / kSampleThreads;
  const int lo = min(vocab, tid * per), hi = min(vocab, lo + per);
  unsigned long long counts = 0;  // above << 32 | equal
  for (int i = lo; i < hi; ++i) {
    const uint32_t key = order_key(logits[i]);
    counts += key > kth ? (1ull << 32) : key == kth ? 1ull : 0ull;
  }
  unsigned long long incl = counts;  // inclusive scan over the warp, then over the warps
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long v = __shfl_up_sync(0xffffffffu, incl, unsigned(o));
    if (lane >= o) incl += v;
  }
  if (lane == 31) scan64[warp] = incl;
  __syncthreads();
  unsigned long long before_me = incl - counts;
  for (int w = 0; w < warp; ++w) before_me += scan64[w];
  int above = int(before_me >> 32), rank = int(before_me & 0xffffffffu);
  for (int i = lo; i < hi; ++i) {
    const float v = logits[i];
    const uint32_t key = order_key(v);
    if (key > kth) {
      cand_l[above] = v, cand_i[above] = i;
      ++above;
    } else if (key == kth) {
      if (rank < ties_wanted) cand_l[k - ties_wanted + rank] = v, cand_i[k - ties_wanted + rank] = i;
      ++rank;
    }
  }
  int n = 1;  // sort size: the next power of two >= k
  while (n < k) n <<= 1;
  for (int i = k + tid; i < n; i += kSampleThreads) cand_l[i] = -INFINITY, cand_i[i] = 0x7fffffff;
  __syncthreads();

  // 3. bitonic sort of cand[0, n) by (logit desc, index asc)
  for (int size = 2; size <= n; size <<= 1)
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int i = tid; i < n; i += kSampleThreads) {
        const int j = i ^ stride;
        if (j > i) {
          const bool asc = (i & size) == 0;
          const bool swap = asc ? before(cand_l[j], cand_i[j], cand_l[i], cand_i[i])
                                : before(cand_l[i], cand_i[i], cand_l[j], cand_i[j]);
          if (swap) {
            const float tl = cand_l[i];
            const int ti = cand_i[i];
            cand_l[i] = cand_l[j], cand_i[i] = cand_i[j];
            cand_l[j] = tl, cand_i[j] = ti;
          }
        }
      }
      __syncthreads();
    }

  // 4. softmax at the temperature in double (as the CPU: max = logit_0 / T in float), cumulative sums
  const double mx = double(cand_l[0] / temperature);
  double p = tid < k ? exp(double(cand_l[tid]) / double(temperature) - mx) : 0.0;
  double c = p;  // inclusive scan
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double v = __shfl_up_sync(0xffffffffu, c, unsigned(o));
    if (lane >= o) c += v;
  }
  if (lane == 31) warp_tot[warp] = c;
  __syncthreads();
  double off = 0.0, total = 0.0;
  for (int w = 0; w < kSampleThreads / 32; ++w) {
    if (w < warp) off += warp_tot[w];
    total += warp_tot[w];
  }
  if (tid < k) cum[tid] = (off + c) / total;  // cumulative normalized probability: non-decreasing in tid
  if (tid == 0) s_p0 = p;
  __syncthreads();
  // Candidates are sorted, so each cut is a count: top-p keeps the first i with cum >= top_p (and all before
  // it); min-p cuts at the first i >= 1 with p_i < min_p * p_0 (p is non-increasing).
  int keep = k;
  if (top_p > 0.0f && top_p < 1.0f) keep = min(keep, 1 + __syncthreads_count(tid < k && cum[tid] < double(top_p)));
  if (min_p > 0.0f) keep = min(keep, 1 + __syncthreads_count(tid >= 1 && tid < k && p >= double(min_p) * s_p0));
  // The draw: the first candidate whose cumulative mass passes u * mass.
  const double r = u * cum[keep - 1];
  const int pick = __syncthreads_count(tid < keep && cum[tid] <= r);
  if (tid == 0) token[0] = cand_i[pick < keep ? pick : keep - 1];
}

// logprob[0] = logits[token[0]] - (max + log(sum_i exp(logits[i] - max))). One block of kSampleThreads.
__global__ void __launch_bounds__(kSampleThreads)
    token_logprob_kernel(dev_ptr<const float> logits, int vocab, dev_ptr<const int32_t> token, dev_ptr<float> logprob) {
  __shared__ float red_m[32];
  __shared__ double red_s[32];
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  float m = -INFINITY;
  for (int i = tid; i < vocab; i += kSampleThreads) m = fmaxf(m, logits[i]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (lane == 0) red_m[warp] = m;
  __syncthreads();
  m = red_m[0];
  for (int w = 1; w < kSampleThreads / 32; ++w) m = fmaxf(m, red_m[w]);
  double s = 0.0;
  for (int i = tid; i < vocab; i += kSampleThreads) s += exp(double(logits[i] - m));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) red_s[warp] = s;
  __syncthreads();
  if (tid == 0) {
    double tot = 0.0;
    for (int w = 0; w < kSampleThreads / 32; ++w) tot += red_s[w];
    const int t = token[0];
    logprob[0] = logits[t] - (m + float(log(tot)));
  }
}

int sample_max_candidates() { return kSampleMax; }

void launch_token_logprob(const float* logits, int64_t vocab, const int32_t* token, float* logprob,
                          cudaStream_t stream) {
  infer_launch(token_logprob_kernel, dim3(1), dim3(kSampleThreads), 0, stream,
               make_dev_ptr(logits, size_t(vocab)), int(vocab), make_dev_ptr(token, 1), make_dev_ptr(logprob, 1));
}

void launch_sample(const float* logits, int64_t vocab, const SampleArgs& a, int32_t* token, cudaStream_t stream) {
  infer_launch(sample_kernel, dim3(1), dim3(kSampleThreads), 0, stream, make_dev_ptr(logits, size_t(vocab)), int(vocab),
               a.temperature, a.top_k, a.top_p, a.min_p, a.u, make_dev_ptr(token, 1));
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
