// backend_cuda.h — the CUDA backend: every op of backend.h on one GPU, one stream.
//
// Memory: weights are uploaded once per backend on first use and found again by their host address
// (bf16/f32 matrices and the embedding stay as stored; norm weights and biases become fp32); activations are
// fp32 device buffers; the KV cache is fp32 (kv_bytes_per_value() == 4), which keeps parity with the CPU
// backend tight at twice the memory of bf16.
// Matmuls: T == 1 runs the GEMV kernel (fp32 x, 16-byte weight loads); T > 1 runs cuBLAS (cublasGemmEx,
// bf16 x bf16 -> fp32) on activations converted to bf16. Attention: split-K decode kernel for T == 1, flash
// attention on tensor cores for prefill. CudaPrecision::kFp32 keeps prefill activations exact instead (three
// bf16 parts per activation, three GEMMs; the fp32 attention kernel on every row), for HF parity.
// Decode graphs: the ops of a T == 1 forward (from embed to the to_host of its logits) are queued, not
// issued; at to_host the step runs as a CUDA graph when it is the same op sequence (same buffers, shapes,
// weights; only the token and the position differ) as one of the kept graphs' (up to kMaxGraphs, so that
// DeepSeek's MTP draft steps and the main model's steps both replay), else eagerly. A sequence seen again
// among the last kMaxGraphs eager steps is captured. The token and the position reach the graph through a pinned host buffer
// that the graph's first node copies to the device, so replay needs no parameter updates.
//
// The same source builds twice: against the CUDA runtime (namespace infer::cuda, in libinfer when
// INFER_HAVE_CUDA) and against the SIMT emulator's runtime shim (namespace infer::simt_cuda, in infer_simt
// for tests); the inline namespace makes both infer::CudaBackend.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "backend.h"
#include "infer/infer.h"

#if !defined(INFER_CUDA_NS)
#if defined(INFER_SIMT)
#define INFER_CUDA_NS simt_cuda
#else
#define INFER_CUDA_NS cuda
#endif
#endif

// The CUDA runtime's opaque handle types (defined by the driver, or by the emulator's shim).
struct CUstream_st;
struct CUgraphExec_st;
struct cublasContext;

namespace infer {
inline namespace INFER_CUDA_NS {

enum class CudaPrecision {
  kFast,  // prefill GEMM and attention on bf16 activations (fp32 accumulation): logits within ~1e-1 of fp32
  kFp32,  // prefill activations exact: 3 bf16-part GEMMs, fp32 CUDA-core attention: logits within ~1e-5
};

// FP8 block-scaled weights (docs/kernels.md "FP8 block-scaled GEMM"): which tensor-core path the w8a8 GEMM takes.
enum class CudaFp8Mma {
  kAuto,  // e4m3 mma on compute capability >= 8.9 (when the kernel image has it), else bf16
  kFp8,   // mma.m16n8k32 e4m3 (sm_89, sm_90, sm_120): construction fails on an older GPU
  kBf16,  // tiles dequantised to bf16 in shared memory, mma.m16n8k16 bf16 (the sm_80/86 path; any GPU)
};

struct CudaOptions {
  int device = 0;
  bool graphs = true;  // capture and replay decode steps
  CudaPrecision precision = CudaPrecision::kFast;
  CudaFp8Mma fp8_mma = CudaFp8Mma::kAuto;
  // Defaults overridden by INFER_CUDA_GRAPHS=0|1, INFER_CUDA_PRECISION=fast|fp32 and INFER_CUDA_FP8_MMA=auto|fp8|bf16.
  static CudaOptions from_env(int device);
};

// Counters (for tests and `infer bench` notes).
struct CudaStats {
  int64_t ops = 0;            // ops submitted
  int64_t eager_steps = 0;    // decode steps issued op by op
  int64_t graph_captures = 0; // decode graphs captured
  int64_t graph_replays = 0;  // decode steps run as a graph launch
  int64_t gemm_calls = 0;     // cuBLAS GEMMs
  int64_t weight_bytes = 0;   // uploaded weights
  int64_t fp8_gemm_calls = 0; // FP8 weights: w8a8 GEMMs (T > 1)
  int64_t fp8_gemv_calls = 0; // FP8 weights: decode GEMVs (T == 1)
};

struct Fp8Weight;  // kernels/kernels.h

class CudaBackend final : public Backend {
 public:
  // Throws INFER_ERR_UNSUPPORTED with the reason when there is no driver or GPU, the device index is out of
  // range, the compute capability is below 8.0, or this build has no kernels for the GPU.
  explicit CudaBackend(const CudaOptions& opts = CudaOptions{});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  const std::string& device_name() const { return device_name_; }
  const CudaOptions& options() const { return opts_; }
  const CudaStats& stats() const { return stats_; }
  // True when FP8 matmuls with T > 1 use the e4m3 tensor-core path, false for the bf16 (sm_80/86) path.
  bool fp8_mma() const { return fp8_mma_; }

  float* alloc(int64_t n_floats) override;
  void release(float* p) override;
  void to_host(const float* src, float* dst, int64_t n) override;
  void from_host(const float* src, float* dst, int64_t n) override;
  void* alloc_kv(int64_t n_ctx, int64_t width) override;
  void release_kv(void* kv) override;
  int64_t kv_bytes_per_value() const override { return sizeof(float); }

  void embed(const TensorInfo& table, const int32_t* ids, int64_t T, float* out, int64_t ldo) override;
  void rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T, int64_t n,
               float eps) override;
  void add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const TensorInfo& w, float* out, int64_t ldo,
                   int64_t T, int64_t n, float eps) override;
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

  // ---- MoE and MLA (kernels/moe.cu, kernels/mla.cu)
  // Routing on the device (ids and weights stay there). Experts: T == 1 with bf16/f32 weights runs the decode
  // kernels on the selected experts only (no host sync: part of a decode graph); otherwise the rows are permuted
  // on the device, the expert offsets read back (one sync per layer), each expert runs through matmul (so FP8
  // experts use the FP8 matmul) and a weighted un-permute adds the outputs in the CPU's order.
  void moe_route(const MoeRouter& r, const float* logits, int64_t ld, const float* score_bias, int64_t T, int32_t* ids,
                 float* weights) override;
  void moe_experts(const float* x, int64_t ldx, const MoeExpert* experts, int64_t n_experts, int64_t I,
                   const int32_t* ids, const float* weights, int64_t T, int64_t k, float* out, int64_t ldo, int64_t H,
                   float* scratch) override;
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

  // Device sampling (Backend::sample): the next token from device logits (vocab,) as infer::Sampler::sample picks
  // it after its penalties, with the uniform draw u in [0, 1) (Sampler draws u * mass from its RNG), and its
  // log-softmax when logprob is given. Returns -1 when the device sampler cannot take these parameters (top-k off
  // or above sample_max_candidates() with a larger vocabulary): then copy the logits to the host and use
  // infer::Sampler.
  bool can_sample(int64_t vocab, float temperature, int32_t top_k) const override;
  int32_t sample(const float* logits, int64_t vocab, float temperature, int32_t top_k, float top_p, float min_p,
                 double u, float* logprob = nullptr) override;
  // Index of the largest logit (first on ties), on the device.
  int32_t argmax(const float* logits, int64_t vocab) { return sample(logits, vocab, 0.0f, 0, 1.0f, 0.0f, 0.0); }

  // Finishes queued work (a pending decode step runs eagerly) and waits for the stream.
  void synchronize();

  // ---- queued ops (public for the graph's bookkeeping; not an API)
  struct EmbedOp {
    const void* table;
    DType dtype;
    int64_t vocab, hidden, T;
    float* out;
    int64_t ldo;
    bool operator==(const EmbedOp&) const = default;
  };
  struct RmsnormOp {
    float* x;  // written when fused with a preceding add
    int64_t ldx;
    const float* y;  // the add's y (fused), else null
    int64_t ldy;
    const void* w;
    DType wtype;
    float* out;
    int64_t ldo, T, n;
    float eps;
    bool operator==(const RmsnormOp&) const = default;
  };
  struct MatmulOp {
    const float* x;
    int64_t ldx;
    const void* w;
    DType wtype;
    int64_t rows, cols;
    float* y;
    int64_t ldy, T;
    bool operator==(const MatmulOp&) const = default;
  };
  // FP8 (e4m3) weight with 128x128 block scales: T == 1 runs the decode GEMV (w8a16), T > 1 quantises x per token
  // per 128 channels and runs the w8a8 GEMM.
  struct Fp8MatmulOp {
    const float* x;
    int64_t ldx;
    const void* w;      // host e4m3 (rows, cols)
    const void* scale;  // host weight_scale_inv grid, scale_dtype; row n uses scale row (scale_row0 + n) / 128
    DType scale_dtype;
    int64_t scale_row0, scale_cols, rows, cols;
    float* y;
    int64_t ldy, T;
    bool operator==(const Fp8MatmulOp&) const = default;
  };
  struct AddBiasOp {
    float* y;
    int64_t ldy;
    const void* bias;
    DType btype;
    int64_t n, T;
    bool operator==(const AddBiasOp&) const = default;
  };
  struct RopeOp {
    float* x;
    int64_t ldx, T, n_heads, d;
    const void* norm;
    DType ntype;
    float eps;
    const RopeTable* rope;
    bool operator==(const RopeOp&) const = default;
  };
  struct KvWriteOp {
    float* cache;
    int64_t width;
    const float* src;
    int64_t lds, T;
    bool operator==(const KvWriteOp&) const = default;
  };
  struct AttentionOp {
    const float* q;
    int64_t ldq;
    const float* k;
    const float* v;
    float* out;
    int64_t ldo, T, n_heads, n_kv_heads, d;
    float scale;
    int splits;  // decode: fixed when the op is queued (a graph keeps it)
    bool operator==(const AttentionOp&) const = default;
  };
  struct SwigluOp {
    const float* g;
    int64_t ldg;
    const float* u;
    int64_t ldu;
    float* y;
    int64_t ldy, T, n;
    bool operator==(const SwigluOp&) const = default;
  };
  struct AddOp {
    float* x;
    int64_t ldx;
    const float* y;
    int64_t ldy, T, n;
    bool operator==(const AddOp&) const = default;
  };
  // MoE / MLA ops
  struct MoeRouteOp {
    const float* logits;
    int64_t ld, T, E, k;
    bool softmax, norm;
    int64_t n_group, topk_group;
    float scaling;
    const float* bias;  // host (uploaded as fp32) or null
    int32_t* ids;
    float* weights;
    bool operator==(const MoeRouteOp&) const = default;
  };
  struct MoeDecodeOp {
    const float* x;
    const MoeExpert* experts;  // host array: the key of the device pointer table
    int64_t E, H, I, k;
    DType wtype;
    const int32_t* ids;
    const float* weights;
    float* out;
    bool operator==(const MoeDecodeOp&) const = default;
  };
  struct RopeStridedOp {
    float* x;
    int64_t ldx, T, n_heads, head_stride, d;
    bool interleaved;
    const RopeTable* rope;
    bool operator==(const RopeStridedOp&) const = default;
  };
  struct KvReadOp {
    const float* cache;
    int64_t width, row0, n;  // row0: a host constant of the op (not the step's position)
    float* dst;
    int64_t ldd;
    bool operator==(const KvReadOp&) const = default;
  };
  struct MlaAbsorbOp {  // q absorption (out = false) or output absorption (out = true)
    bool out;
    const float* x;
    int64_t ldx;
    const void* kvb;
    DType wtype;
    int64_t kv_rows, r;
    float* y;
    int64_t ldy, T, nh, dn, dr, dv;
    bool operator==(const MlaAbsorbOp&) const = default;
  };
  struct MlaAttentionOp {
    const float* qa;
    int64_t ldqa;
    const float* cache;
    int64_t r, dr;
    float* o;
    int64_t ldo, T, nh;
    float scale;
    int splits;  // fixed when queued (a graph keeps it)
    bool operator==(const MlaAttentionOp&) const = default;
  };
  struct MlaBlockOp {
    const float* q;
    int64_t ldq;
    const float* kvb;
    int64_t ldkvb;
    const float* kr;
    int64_t ldkr, j0, nj;
    float* m;
    float* l;
    float* out;
    int64_t ldo, T, nh, dn, dr, dv;
    float scale;
    bool first, last;
    bool operator==(const MlaBlockOp&) const = default;
  };
  using OpArgs = std::variant<EmbedOp, RmsnormOp, MatmulOp, AddBiasOp, RopeOp, KvWriteOp, AttentionOp, SwigluOp, AddOp,
                              MoeRouteOp, MoeDecodeOp, RopeStridedOp, KvReadOp, MlaAbsorbOp, MlaAttentionOp, MlaBlockOp,
                              Fp8MatmulOp>;
  struct Op {
    OpArgs args;        // what the op computes on: the graph key
    int64_t pos0 = 0;   // per step (not part of the key)
    int32_t token = 0;  // embed of one token: per step
  };

 private:
  struct Weight {
    void* ptr = nullptr;
    size_t bytes = 0;
    std::vector<float> host;  // RoPE tables: the uploaded values
  };
  struct DecodeGraph;  // an instantiated decode graph and its op list

  void submit(Op op, const int32_t* ids = nullptr);
  void issue(const Op& op, bool graph, const int32_t* ids);
  void issue_list(const std::vector<Op>& ops, bool graph);
  void flush_held();
  void finish_step();
  void prepare(const std::vector<Op>& ops);
  bool fuse(const Op& add, const Op& next, Op* fused) const;
  const void* weight(const void* host, size_t bytes);              // as stored
  const float* weight_f32(const void* host, DType t, int64_t n);  // converted to fp32
  const float* rope_table(const RopeTable& rope);
  int decode_splits(int64_t n_keys, int64_t n_kv_heads) const;
  void* scratch(int slot, size_t bytes);
  int64_t kv_rows(const void* cache) const;
  void check_launch(const char* what);
  // MoE / MLA helpers
  void issue_moe_mla(const Op& op, bool graph);
  const void* const* moe_table(const MoeExpert* experts, int64_t E, DType* wtype);  // null: not bf16/f32 alike
  const void* mla_weight(const cpu::Matrix& m, DType* type);  // kv_b as bf16/f32 (FP8 dequantised to f32 once)
  int mla_splits(int64_t n_keys, int64_t nh) const;
  void moe_experts_grouped(const float* x, int64_t ldx, const MoeExpert* experts, int64_t E, int64_t I,
                           const int32_t* ids, const float* weights, int64_t T, int64_t k, float* out, int64_t ldo,
                           int64_t H);
  Fp8Weight fp8_weight(const Fp8MatmulOp& o);  // uploaded once: rows padded to 16 bytes, scales as fp32

  CudaOptions opts_;
  std::string device_name_;
  int sm_count_ = 1;
  CUstream_st* stream_ = nullptr;
  cublasContext* cublas_ = nullptr;
  std::unordered_map<const void*, Weight> weights_;      // host address -> device copy as stored
  std::unordered_map<const void*, Weight> weights_f32_;  // host address -> fp32 device copy (vectors)
  std::unordered_map<const void*, Weight> ropes_;        // RopeTable::inv_freq.data() -> fp32 device copy
  std::unordered_map<const void*, int64_t> kv_rows_;     // KV buffer -> n_ctx
  std::unordered_map<const void*, Weight> moe_tables_;   // host MoeExpert array -> device table of 3 E pointers
  std::vector<void*> allocations_;                        // activations and KV caches (released by the owner)
  std::vector<Weight> scratch_;                           // per-slot device scratch (bf16 copies, partials, ids)
  int32_t* step_host_ = nullptr;  // pinned {token, pos0} of the decode step
  int32_t* step_dev_ = nullptr;   // its device copy, read by the graph's kernels
  int32_t* token_dev_ = nullptr;  // sampler output
  int32_t* token_host_ = nullptr; // pinned

  bool step_active_ = false;
  std::vector<Op> step_;       // the queued ops of the decode step in progress
  // Decode graphs by op sequence (a few: DeepSeek's MTP steps alternate with the main model's), newest last; the
  // eager steps seen last, for capture when one repeats.
  std::vector<std::unique_ptr<DecodeGraph>> graphs_;
  std::vector<std::vector<Op>> candidates_;
  std::vector<Op> held_;       // eager mode: an add waiting for a following rmsnorm to fuse with (0 or 1)
  CudaStats stats_;
  // ---- FP8 weights (fp8_gemm.cu)
  struct Fp8Device {
    void* w = nullptr;      // (rows, ldw) e4m3
    void* scale = nullptr;  // fp32 scale rows covering the matrix
    int64_t ldw = 0;
  };
  std::map<std::tuple<const void*, const void*, int64_t, int64_t, int64_t>, Fp8Device> fp8_weights_;  // (w, scale, row0, rows, cols)
  bool fp8_mma_ = false;
};

}  // namespace INFER_CUDA_NS
}  // namespace infer
