// backend_cuda.cpp — see backend_cuda.h. Host code only: it allocates, uploads, queues ops, captures decode
// graphs and calls the launch wrappers of kernels/kernels.h and cuBLAS. Built against the CUDA runtime or,
// under INFER_SIMT, against the emulator's shim (cuda/cuda_api.h); the source is the same.
#include "cuda/backend_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "cpu/ops_fp8.h"
#include "cuda/cuda_api.h"
#include "kernels/kernels.h"

namespace infer {
inline namespace INFER_CUDA_NS {

namespace {

[[noreturn]] void cuda_fail(cudaError_t e, const char* expr, const char* file, int line) {
  fail(e == cudaErrorMemoryAllocation ? INFER_ERR_OUT_OF_MEMORY : INFER_ERR_INTERNAL,
       std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + expr + ": " + cudaGetErrorString(e));
}
[[noreturn]] void cublas_fail(cublasStatus_t s, const char* expr, const char* file, int line) {
  fail(INFER_ERR_INTERNAL, std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + ": " + expr +
                               ": status " + std::to_string(int(s)));
}
#define INFER_CUDA_CHECK(expr)                                              \
  do {                                                                      \
    const cudaError_t e_ = (expr);                                          \
    if (e_ != cudaSuccess) cuda_fail(e_, #expr, __FILE__, __LINE__);        \
  } while (0)
#define INFER_CUBLAS_CHECK(expr)                                            \
  do {                                                                      \
    const cublasStatus_t s_ = (expr);                                       \
    if (s_ != CUBLAS_STATUS_SUCCESS) cublas_fail(s_, #expr, __FILE__, __LINE__); \
  } while (0)

KType ktype(DType t) {
  switch (t) {
    case DType::F32: return KType::kF32;
    case DType::BF16: return KType::kBF16;
    case DType::F16: return KType::kF16;
    default: fail(INFER_ERR_UNSUPPORTED, std::string("CUDA backend: unsupported tensor dtype ") + dtype_name(t));
  }
}

// Scratch slots (device buffers that grow on demand).
enum Slot {
  kSlotXBf16, kSlotIds, kSlotPartial,
  kSlotMoeH, kSlotMoePerm, kSlotMoeX, kSlotMoeY, kSlotMoeG, kSlotMoeU, kSlotMlaPartial,  // MoE / MLA
  kSlotFp8Act, kSlotFp8Scale,  // FP8 GEMM
  kSlotCount
};

constexpr size_t kMaxGraphs = 4;  // decode graphs kept (main model, MTP chain, MTP catch-up, ...)

constexpr int kMinKeysPerSplit = 32;

bool uses_position(const CudaBackend::Op& op) {
  return std::holds_alternative<CudaBackend::RopeOp>(op.args) || std::holds_alternative<CudaBackend::KvWriteOp>(op.args) ||
         std::holds_alternative<CudaBackend::AttentionOp>(op.args) ||
         std::holds_alternative<CudaBackend::RopeStridedOp>(op.args) ||
         std::holds_alternative<CudaBackend::MlaAttentionOp>(op.args) || std::holds_alternative<CudaBackend::MlaBlockOp>(op.args);
}

bool same_ops(const std::vector<CudaBackend::Op>& a, const std::vector<CudaBackend::Op>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i].args == b[i].args)) return false;
  return true;
}

bool overlaps(const void* a, size_t an, const void* b, size_t bn) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bn && y < x + an;
}

}  // namespace

struct CudaBackend::DecodeGraph {
  cudaGraphExec_t exec = nullptr;
  std::vector<Op> ops;
  ~DecodeGraph() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

CudaOptions CudaOptions::from_env(int device) {
  CudaOptions o;
  o.device = device;
  if (const char* g = std::getenv("INFER_CUDA_GRAPHS")) o.graphs = std::string(g) != "0";
  if (const char* p = std::getenv("INFER_CUDA_PRECISION"))
    o.precision = std::string(p) == "fp32" ? CudaPrecision::kFp32 : CudaPrecision::kFast;
  if (const char* f = std::getenv("INFER_CUDA_FP8_MMA")) {
    const std::string v = f;
    if (v == "fp8") o.fp8_mma = CudaFp8Mma::kFp8;
    else if (v == "bf16") o.fp8_mma = CudaFp8Mma::kBf16;
    else if (v == "auto" || v.empty()) o.fp8_mma = CudaFp8Mma::kAuto;
    else fail(INFER_ERR_INVALID_ARG, "INFER_CUDA_FP8_MMA='" + v + "': expected auto, fp8 or bf16");
  }
  return o;
}

// ------------------------------------------------------------------ setup

CudaBackend::CudaBackend(const CudaOptions& opts) : opts_(opts) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    fail(INFER_ERR_UNSUPPORTED, std::string("CUDA: no usable GPU (") +
                                    (e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found") +
                                    "); use --device cpu");
  }
  if (opts.device < 0 || opts.device >= count)
    fail(INFER_ERR_UNSUPPORTED, "CUDA: there is no GPU " + std::to_string(opts.device) + " (this machine has " +
                                    std::to_string(count) + ")");
  INFER_CUDA_CHECK(cudaSetDevice(opts.device));
  int major = 0, minor = 0;
  INFER_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, opts.device));
  INFER_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, opts.device));
  INFER_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, opts.device));
  cudaDeviceProp prop;
  INFER_CUDA_CHECK(cudaGetDeviceProperties(&prop, opts.device));
  device_name_ = prop.name;
  const std::string which = "GPU " + std::to_string(opts.device) + " (" + device_name_ + ", compute capability " +
                            std::to_string(major) + "." + std::to_string(minor) + ")";
  if (major < 8)
    fail(INFER_ERR_UNSUPPORTED, "CUDA: " + which + " is too old; the CUDA backend needs compute capability 8.0 "
                                "(Ampere) or newer; use --device cpu");
  if (!init_kernels())
    fail(INFER_ERR_UNSUPPORTED, "CUDA: this build has no kernels for " + which +
                                    "; rebuild with CMAKE_CUDA_ARCHITECTURES including " + std::to_string(major) +
                                    std::to_string(minor));
  init_mla_kernels();
  {  // FP8 GEMM path: e4m3 mma needs compute capability 8.9 and a kernel image compiled for it
    const int cc = major * 10 + minor, image = fp8_mma_kernel_arch();
    const bool capable = cc >= 89 && (image < 0 || image >= 89);
    if (opts.fp8_mma == CudaFp8Mma::kFp8 && !capable)
      fail(INFER_ERR_UNSUPPORTED, "CUDA: FP8 tensor-core GEMM requested but " + which +
                                      (cc < 89 ? " has no FP8 mma (needs compute capability 8.9)"
                                               : " runs a kernel image built for sm_" + std::to_string(image) +
                                                     " (rebuild with CMAKE_CUDA_ARCHITECTURES including " +
                                                     std::to_string(cc) + ")"));
    fp8_mma_ = opts.fp8_mma == CudaFp8Mma::kFp8 || (opts.fp8_mma == CudaFp8Mma::kAuto && capable);
  }
  scratch_.resize(kSlotCount);
  try {
    cudaStream_t s = nullptr;
    INFER_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream_ = s;
    cublasHandle_t h = nullptr;
    INFER_CUBLAS_CHECK(cublasCreate(&h));
    cublas_ = h;
    INFER_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    void* p = nullptr;
    INFER_CUDA_CHECK(cudaMallocHost(&p, 4 * sizeof(int32_t)));
    step_host_ = static_cast<int32_t*>(p);
    token_host_ = step_host_ + 2;
    INFER_CUDA_CHECK(cudaMalloc(&p, 4 * sizeof(int32_t)));
    step_dev_ = static_cast<int32_t*>(p);
    token_dev_ = step_dev_ + 2;
    step_host_[0] = step_host_[1] = 0;
  } catch (...) {
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
    if (step_host_) cudaFreeHost(step_host_);
    throw;
  }
}

CudaBackend::~CudaBackend() {
  try {
    synchronize();
  } catch (const Error&) {  // a destructor must not throw; the error was the caller's to see at to_host
  }
  graphs_.clear();
  for (auto* m : {&weights_, &weights_f32_, &ropes_, &moe_tables_})
    for (auto& [host, w] : *m) cudaFree(w.ptr);
  for (auto& [key, w] : fp8_weights_) {
    cudaFree(w.w);
    cudaFree(w.scale);
  }
  for (Weight& w : scratch_) cudaFree(w.ptr);
  for (void* p : allocations_) cudaFree(p);
  cudaFree(step_dev_);
  cudaFreeHost(step_host_);
  cublasDestroy(cublas_);
  cudaStreamDestroy(stream_);
}

// ------------------------------------------------------------------ memory

float* CudaBackend::alloc(int64_t n) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, size_t(std::max<int64_t>(n, 1)) * sizeof(float));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail(INFER_ERR_OUT_OF_MEMORY, "CUDA: out of device memory allocating " + std::to_string((n * 4) >> 20) + " MiB");
  }
  allocations_.push_back(p);
  return static_cast<float*>(p);
}

void CudaBackend::release(float* p) {
  if (!p) return;
  synchronize();
  graphs_.clear();  // a graph may name the buffer
  candidates_.clear();
  kv_rows_.erase(p);
  std::erase(allocations_, static_cast<void*>(p));
  INFER_CUDA_CHECK(cudaFree(p));
}

void* CudaBackend::alloc_kv(int64_t n_ctx, int64_t width) {
  float* p = alloc(n_ctx * width);
  kv_rows_[p] = n_ctx;
  return p;
}

void CudaBackend::release_kv(void* kv) { release(static_cast<float*>(kv)); }

int64_t CudaBackend::kv_rows(const void* cache) const {
  const auto it = kv_rows_.find(cache);
  if (it == kv_rows_.end()) fail(INFER_ERR_INTERNAL, "CUDA backend: KV cache pointer not from alloc_kv");
  return it->second;
}

void CudaBackend::to_host(const float* src, float* dst, int64_t n) {
  if (step_active_) finish_step();
  flush_held();
  INFER_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  INFER_CUDA_CHECK(cudaStreamSynchronize(stream_));
  check_launch("to_host");
}

void CudaBackend::from_host(const float* src, float* dst, int64_t n) {
  if (step_active_) finish_step();
  flush_held();
  INFER_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::synchronize() {
  if (step_active_) finish_step();
  flush_held();
  INFER_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) cuda_fail(e, what, __FILE__, __LINE__);
}

void* CudaBackend::scratch(int slot, size_t bytes) {
  Weight& s = scratch_[size_t(slot)];
  if (s.bytes < bytes) {
    const size_t want = std::max(bytes, s.bytes * 2);
    INFER_CUDA_CHECK(cudaStreamSynchronize(stream_));  // queued kernels may still use the old buffer
    if (s.ptr) INFER_CUDA_CHECK(cudaFree(s.ptr));
    s.ptr = nullptr;
    s.bytes = 0;
    INFER_CUDA_CHECK(cudaMalloc(&s.ptr, want));
    s.bytes = want;
    graphs_.clear();  // a graph may name the old buffer
  }
  return s.ptr;
}

const void* CudaBackend::weight(const void* host, size_t bytes) {
  auto it = weights_.find(host);
  if (it != weights_.end()) return it->second.ptr;
  Weight w;
  w.bytes = bytes;
  INFER_CUDA_CHECK(cudaMalloc(&w.ptr, bytes));
  INFER_CUDA_CHECK(cudaMemcpy(w.ptr, host, bytes, cudaMemcpyHostToDevice));
  stats_.weight_bytes += int64_t(bytes);
  weights_.emplace(host, w);
  return w.ptr;
}

const float* CudaBackend::weight_f32(const void* host, DType t, int64_t n) {
  auto it = weights_f32_.find(host);
  if (it != weights_f32_.end()) return static_cast<const float*>(it->second.ptr);
  std::vector<float> v(static_cast<size_t>(n));
  cpu::row_to_f32(host, t, v.data(), n);
  Weight w;
  w.bytes = v.size() * sizeof(float);
  INFER_CUDA_CHECK(cudaMalloc(&w.ptr, w.bytes));
  INFER_CUDA_CHECK(cudaMemcpy(w.ptr, v.data(), w.bytes, cudaMemcpyHostToDevice));
  stats_.weight_bytes += int64_t(w.bytes);
  weights_f32_.emplace(host, w);
  return static_cast<const float*>(w.ptr);
}

const float* CudaBackend::rope_table(const RopeTable& rope) {
  // note: keyed by the table's address; the values are compared too, since a table is cheap to check and
  // a new model may reuse the address.
  auto it = ropes_.find(rope.inv_freq.data());
  if (it != ropes_.end()) {
    if (it->second.host == rope.inv_freq) return static_cast<const float*>(it->second.ptr);
    INFER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    cudaFree(it->second.ptr);
    ropes_.erase(it);
    graphs_.clear();
  }
  Weight w;
  w.bytes = rope.inv_freq.size() * sizeof(float);
  w.host = rope.inv_freq;
  INFER_CUDA_CHECK(cudaMalloc(&w.ptr, w.bytes));
  INFER_CUDA_CHECK(cudaMemcpy(w.ptr, rope.inv_freq.data(), w.bytes, cudaMemcpyHostToDevice));
  const float* p = static_cast<const float*>(w.ptr);
  ropes_.emplace(rope.inv_freq.data(), std::move(w));
  return p;
}

int CudaBackend::decode_splits(int64_t n_keys, int64_t n_kv_heads) const {
  // Enough blocks for two waves of the GPU's SMs, at least kMinKeysPerSplit keys per split, a power of two
  // (so a growing context re-captures the decode graph only log(n) times).
  const int64_t want = std::max<int64_t>(1, (2 * sm_count_ + n_kv_heads - 1) / n_kv_heads);
  const int64_t cap = std::max<int64_t>(1, n_keys / kMinKeysPerSplit);
  int64_t s = std::min<int64_t>({want, cap, attention_decode_max_splits()});
  int p = 1;
  while (p * 2 <= s) p *= 2;
  return p;
}

// ------------------------------------------------------------------ ops: queueing

void CudaBackend::embed(const TensorInfo& table, const int32_t* ids, int64_t T, float* out, int64_t ldo) {
  Op op{EmbedOp{table.data, table.dtype, table.shape[0], table.shape[1], T, out, ldo}};
  if (step_active_) finish_step();  // a new forward begins before the last one was read: run it
  if (T == 1 && opts_.graphs) {
    flush_held();
    step_active_ = true;
    step_.clear();
    op.token = ids[0];
    ++stats_.ops;
    step_.push_back(op);
    return;
  }
  submit(op, ids);
}

void CudaBackend::rmsnorm(const float* x, int64_t ldx, const TensorInfo& w, float* out, int64_t ldo, int64_t T,
                          int64_t n, float eps) {
  submit(Op{RmsnormOp{const_cast<float*>(x), ldx, nullptr, 0, w.data, w.dtype, out, ldo, T, n, eps}});
}

void CudaBackend::add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const TensorInfo& w, float* out,
                              int64_t ldo, int64_t T, int64_t n, float eps) {
  submit(Op{RmsnormOp{x, ldx, y, ldy, w.data, w.dtype, out, ldo, T, n, eps}});
}

void CudaBackend::matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) {
  if (w.dtype == DType::F8_E4M3) {
    if (!w.scale || w.block != 128 || w.scale_cols != fp8_scale_cols(w.cols))
      fail(INFER_ERR_UNSUPPORTED, "CUDA backend: FP8 matmul needs 128x128 block scales (block " +
                                      std::to_string(w.block) + ", " + std::to_string(w.scale_cols) + " scale columns for " +
                                      std::to_string(w.cols) + " columns)");
    submit(Op{Fp8MatmulOp{x, ldx, w.data, w.scale, w.scale_dtype, w.scale_row0, w.scale_cols, w.rows, w.cols, y, ldy, T}});
    return;
  }
  if (w.dtype != DType::BF16 && w.dtype != DType::F32)
    fail(INFER_ERR_UNSUPPORTED, std::string("CUDA backend: matmul weights must be bf16, f32 or FP8 e4m3, not ") +
                                    dtype_name(w.dtype));
  submit(Op{MatmulOp{x, ldx, w.data, w.dtype, w.rows, w.cols, y, ldy, T}});
}

void CudaBackend::add_bias(float* y, int64_t ldy, const TensorInfo& bias, int64_t T) {
  submit(Op{AddBiasOp{y, ldy, bias.data, bias.dtype, bias.numel(), T}});
}

void CudaBackend::head_norm_rope(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t d, const TensorInfo* norm,
                                 float eps, int64_t pos0, const RopeTable& rope) {
  if (int64_t(rope.inv_freq.size()) * 2 != d)
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: RoPE over " + std::to_string(rope.inv_freq.size() * 2) +
                                    " of " + std::to_string(d) + " head dims is not supported");
  if (d > 512) fail(INFER_ERR_UNSUPPORTED, "CUDA backend: head_dim " + std::to_string(d) + " > 512");
  Op op{RopeOp{x, ldx, T, n_heads, d, norm ? norm->data : nullptr, norm ? norm->dtype : DType::F32, eps, &rope}};
  op.pos0 = pos0;
  submit(op);
}

void CudaBackend::kv_write(void* cache, int64_t width, int64_t pos0, const float* src, int64_t lds, int64_t T) {
  Op op{KvWriteOp{static_cast<float*>(cache), width, src, lds, T}};
  op.pos0 = pos0;
  submit(op);
}

void CudaBackend::attention(const float* q, int64_t ldq, const void* k_cache, const void* v_cache, float* out,
                            int64_t ldo, int64_t T, int64_t pos0, int64_t n_heads, int64_t n_kv_heads, int64_t d,
                            float scale) {
  const int64_t rep = n_kv_heads > 0 ? n_heads / n_kv_heads : 0;
  if (rep <= 0 || rep * n_kv_heads != n_heads || (2 * rep * d + 67 * rep) * 4 > 96 * 1024)
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: attention with " + std::to_string(n_heads) + " query heads, " +
                                    std::to_string(n_kv_heads) + " KV heads of dim " + std::to_string(d) +
                                    " is not supported");
  const int splits = T == 1 ? decode_splits(pos0 + 1, n_kv_heads) : 1;
  Op op{AttentionOp{q, ldq, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), out, ldo, T,
                    n_heads, n_kv_heads, d, scale, splits}};
  op.pos0 = pos0;
  submit(op);
}

void CudaBackend::swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* y, int64_t ldy, int64_t T,
                         int64_t n) {
  submit(Op{SwigluOp{g, ldg, u, ldu, y, ldy, T, n}});
}

void CudaBackend::add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t T, int64_t n) {
  submit(Op{AddOp{x, ldx, y, ldy, T, n}});
}

void CudaBackend::submit(Op op, const int32_t* ids) {
  ++stats_.ops;
  if (step_active_) {
    step_.push_back(std::move(op));
    return;
  }
  if (!held_.empty()) {
    Op fused;
    const Op add = held_.front();
    held_.clear();
    if (fuse(add, op, &fused)) {
      issue(fused, false, nullptr);
      return;
    }
    issue(add, false, nullptr);
  }
  if (std::holds_alternative<AddOp>(op.args)) {  // wait: the next op may be the norm it fuses with
    held_.push_back(std::move(op));
    return;
  }
  issue(op, false, ids);
}

void CudaBackend::flush_held() {
  if (held_.empty()) return;
  const Op add = held_.front();
  held_.clear();
  issue(add, false, nullptr);
}

bool CudaBackend::fuse(const Op& a, const Op& b, Op* fused) const {
  const auto* add = std::get_if<AddOp>(&a.args);
  const auto* norm = std::get_if<RmsnormOp>(&b.args);
  if (!add || !norm || norm->y || norm->x != add->x || norm->ldx != add->ldx || norm->T != add->T || norm->n != add->n)
    return false;
  RmsnormOp f = *norm;
  f.y = add->y;
  f.ldy = add->ldy;
  *fused = Op{f, b.pos0, b.token};
  return true;
}

// ------------------------------------------------------------------ decode steps and graphs

void CudaBackend::finish_step() {
  step_active_ = false;
  std::vector<Op> ops;
  ops.swap(step_);
  if (ops.empty()) return;
  const int32_t token = ops.front().token;  // the step's embed comes first
  int64_t pos = -1;
  bool uniform = true;  // one position for the whole step (else it cannot be a graph parameter)
  for (const Op& op : ops)
    if (uses_position(op)) {
      if (pos < 0) pos = op.pos0;
      else if (op.pos0 != pos) uniform = false;
    }
  DecodeGraph* run = nullptr;
  if (uniform)
    for (auto& g : graphs_)
      if (same_ops(g->ops, ops)) run = g.get();
  bool capture = false;
  if (!run && uniform)
    for (auto it = candidates_.begin(); it != candidates_.end(); ++it)
      if (same_ops(*it, ops)) {
        candidates_.erase(it);
        capture = true;
        break;
      }
  if (!run && !capture) {
    issue_list(ops, false);
    ++stats_.eager_steps;
    if (uniform) {
      candidates_.push_back(std::move(ops));
      if (candidates_.size() > kMaxGraphs) candidates_.erase(candidates_.begin());
    }
    return;
  }
  if (capture) {
    prepare(ops);  // uploads and scratch growth happen now: a capture must not allocate
    auto g = std::make_unique<DecodeGraph>();
    INFER_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      // node 0: this step's {token, position} from the pinned host buffer (read when the graph runs)
      INFER_CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, 2 * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
      issue_list(ops, true);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      throw;
    }
    INFER_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    INFER_CUDA_CHECK(e);
    g->ops = std::move(ops);
    run = g.get();
    graphs_.push_back(std::move(g));
    if (graphs_.size() > kMaxGraphs) graphs_.erase(graphs_.begin());
    ++stats_.graph_captures;
  }
  // note: the previous graph launch (the only reader of step_host_) finished at the to_host that ended its
  // step, so the buffer is free to write.
  step_host_[0] = token;
  step_host_[1] = int32_t(std::max<int64_t>(pos, 0));
  INFER_CUDA_CHECK(cudaGraphLaunch(run->exec, stream_));
  ++stats_.graph_replays;
}

void CudaBackend::prepare(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (const auto* o = std::get_if<EmbedOp>(&op.args)) {
      weight(o->table, size_t(o->vocab * o->hidden) * dtype_size(o->dtype));
    } else if (const auto* o = std::get_if<RmsnormOp>(&op.args)) {
      weight_f32(o->w, o->wtype, o->n);
    } else if (const auto* o = std::get_if<MatmulOp>(&op.args)) {
      weight(o->w, size_t(o->rows * o->cols) * dtype_size(o->wtype));
    } else if (const auto* o = std::get_if<AddBiasOp>(&op.args)) {
      weight_f32(o->bias, o->btype, o->n);
    } else if (const auto* o = std::get_if<RopeOp>(&op.args)) {
      if (o->norm) weight_f32(o->norm, o->ntype, o->d);
      rope_table(*o->rope);
    } else if (const auto* o = std::get_if<AttentionOp>(&op.args)) {
      if (o->splits > 1) scratch(kSlotPartial, size_t(o->T * o->n_heads * o->splits * (o->d + 2)) * sizeof(float));
    } else if (const auto* o = std::get_if<MoeRouteOp>(&op.args)) {
      if (o->bias) weight_f32(o->bias, DType::F32, o->E);
    } else if (const auto* o = std::get_if<MoeDecodeOp>(&op.args)) {
      DType t;
      moe_table(o->experts, o->E, &t);
      scratch(kSlotMoeH, size_t(o->k * o->I) * sizeof(float));
    } else if (const auto* o = std::get_if<RopeStridedOp>(&op.args)) {
      rope_table(*o->rope);
    } else if (const auto* o = std::get_if<MlaAttentionOp>(&op.args)) {
      if (o->splits > 1) scratch(kSlotMlaPartial, size_t(o->T * o->nh * o->splits * (o->r + 2)) * sizeof(float));
    } else if (const auto* o = std::get_if<Fp8MatmulOp>(&op.args)) {
      fp8_weight(*o);
      if (o->T > 1) {
        scratch(kSlotFp8Act, size_t(o->T * fp8_padded_k(o->cols)));
        scratch(kSlotFp8Scale, size_t(o->T * fp8_scale_cols(o->cols)) * sizeof(float));
      }
    }
  }
}

void CudaBackend::issue_list(const std::vector<Op>& ops, bool graph) {
  for (size_t i = 0; i < ops.size(); ++i) {
    Op fused;
    if (i + 1 < ops.size() && fuse(ops[i], ops[i + 1], &fused)) {
      issue(fused, graph, nullptr);
      ++i;
      continue;
    }
    issue(ops[i], graph, &ops[i].token);
  }
}

// ------------------------------------------------------------------ ops: launching

void CudaBackend::issue(const Op& op, bool graph, const int32_t* ids) {
  cudaStream_t s = stream_;
  const int32_t* pos_dev = graph ? step_dev_ + 1 : nullptr;
  if (const auto* o = std::get_if<EmbedOp>(&op.args)) {
    const void* table = weight(o->table, size_t(o->vocab * o->hidden) * dtype_size(o->dtype));
    const int32_t* d_ids = step_dev_;
    if (!graph) {
      d_ids = static_cast<const int32_t*>(scratch(kSlotIds, size_t(o->T) * sizeof(int32_t)));
      // note: from pageable memory the copy is staged before the call returns, so ids may be reused at once
      INFER_CUDA_CHECK(cudaMemcpyAsync(const_cast<int32_t*>(d_ids), ids, size_t(o->T) * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, s));
    }
    launch_embed(table, ktype(o->dtype), o->vocab, o->hidden, d_ids, o->T, o->out, o->ldo, s);
  } else if (const auto* o = std::get_if<RmsnormOp>(&op.args)) {
    const float* w = weight_f32(o->w, o->wtype, o->n);
    if (o->y)
      launch_add_rmsnorm(o->x, o->ldx, o->y, o->ldy, w, o->out, o->ldo, o->T, o->n, o->eps, s);
    else
      launch_rmsnorm(o->x, o->ldx, w, o->out, o->ldo, o->T, o->n, o->eps, s);
  } else if (const auto* o = std::get_if<MatmulOp>(&op.args)) {
    const void* w = weight(o->w, size_t(o->rows * o->cols) * dtype_size(o->wtype));
    if (o->T == 1) {
      launch_gemv(w, ktype(o->wtype), o->rows, o->cols, o->x, o->y, s);
    } else {
      // y (T, ldy) row-major is y^T (rows, T) column-major = W (rows, cols) . x^T (cols, T): W row-major is
      // (cols, rows) column-major with ld cols, so op(A) = T; x row-major is (cols, T) column-major, op(B) = N.
      const float one = 1.0f, zero = 0.0f;
      const int m = int(o->rows), n = int(o->T), k = int(o->cols);
      if (o->wtype == DType::F32) {
        INFER_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, CUDA_R_32F, k, o->x,
                                        CUDA_R_32F, int(o->ldx), &zero, o->y, CUDA_R_32F, int(o->ldy),
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        ++stats_.gemm_calls;
      } else {
        // kFp32: x = x0 + x1 + x2 exactly (three bf16 parts carry all 24 bits) and y = W x0 + W x1 + W x2.
        const int parts = opts_.precision == CudaPrecision::kFp32 ? 3 : 1;
        const size_t count = size_t(o->T * o->cols);
        auto* xb = static_cast<uint16_t*>(scratch(kSlotXBf16, count * size_t(parts) * sizeof(uint16_t)));
        launch_f32_to_bf16(o->x, o->ldx, o->T, o->cols, xb, parts, s);
        for (int p = 0; p < parts; ++p) {
          INFER_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, CUDA_R_16BF, k,
                                          xb + size_t(p) * count, CUDA_R_16BF, k, p ? &one : &zero, o->y, CUDA_R_32F,
                                          int(o->ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
          ++stats_.gemm_calls;
        }
      }
    }
  } else if (const auto* o = std::get_if<AddBiasOp>(&op.args)) {
    launch_add_bias(o->y, o->ldy, weight_f32(o->bias, o->btype, o->n), o->T, o->n, s);
  } else if (const auto* o = std::get_if<RopeOp>(&op.args)) {
    const float* norm = o->norm ? weight_f32(o->norm, o->ntype, o->d) : nullptr;
    launch_head_norm_rope(o->x, o->ldx, o->T, o->n_heads, o->d, norm, o->eps, rope_table(*o->rope),
                          o->rope->attention_scaling, op.pos0, pos_dev, s);
  } else if (const auto* o = std::get_if<KvWriteOp>(&op.args)) {
    launch_kv_write(o->cache, kv_rows(o->cache), o->width, op.pos0, pos_dev, o->src, o->lds, o->T, s);
  } else if (const auto* o = std::get_if<AttentionOp>(&op.args)) {
    AttentionArgs a{o->q, o->ldq, o->k, o->v, kv_rows(o->k), o->out, o->ldo, o->T, op.pos0, pos_dev,
                    o->n_heads, o->n_kv_heads, o->d, o->scale};
    // kFp32 (and head dims without a tensor-core kernel): the fp32 decode kernel on every row
    if (o->T > 1 && opts_.precision == CudaPrecision::kFast && attention_prefill_supported(o->d)) {
      launch_attention_prefill(a, s);
    } else {
      float* partial = o->splits > 1 ? static_cast<float*>(scratch(
                                           kSlotPartial, size_t(o->T * o->n_heads * o->splits * (o->d + 2)) * sizeof(float)))
                                     : nullptr;
      launch_attention_decode(a, o->splits, partial, s);
    }
  } else if (const auto* o = std::get_if<SwigluOp>(&op.args)) {
    launch_swiglu(o->g, o->ldg, o->u, o->ldu, o->y, o->ldy, o->T, o->n, s);
  } else if (const auto* o = std::get_if<AddOp>(&op.args)) {
    launch_add(o->x, o->ldx, o->y, o->ldy, o->T, o->n, s);
  } else if (const auto* o = std::get_if<Fp8MatmulOp>(&op.args)) {
    const Fp8Weight w = fp8_weight(*o);
    if (o->T == 1) {
      launch_fp8_gemv(w, o->x, o->y, s);
      ++stats_.fp8_gemv_calls;
    } else {
      // w8a8: x quantised per token per 128 channels (DeepSeek act_quant), then the block-scaled GEMM
      const int64_t lda = fp8_padded_k(o->cols);
      auto* q = static_cast<uint8_t*>(scratch(kSlotFp8Act, size_t(o->T * lda)));
      auto* sa = static_cast<float*>(scratch(kSlotFp8Scale, size_t(o->T * fp8_scale_cols(o->cols)) * sizeof(float)));
      launch_fp8_act_quant(o->x, o->ldx, o->T, o->cols, q, lda, sa, s);
      launch_fp8_gemm(q, lda, sa, o->T, w, o->y, o->ldy, fp8_mma_ ? Fp8MmaPath::kFp8 : Fp8MmaPath::kBf16, s);
      ++stats_.fp8_gemm_calls;
    }
  } else {
    issue_moe_mla(op, graph);
  }
#if !defined(NDEBUG)
  check_launch("kernel launch");
#endif
}

// ------------------------------------------------------------------ FP8 weights

Fp8Weight CudaBackend::fp8_weight(const Fp8MatmulOp& o) {
  const int64_t row0 = o.scale_row0 % 128, rb0 = o.scale_row0 / 128;
  const auto key = std::make_tuple(o.w, o.scale, o.scale_row0, o.rows, o.cols);
  auto it = fp8_weights_.find(key);
  if (it == fp8_weights_.end()) {
    // Rows padded to a multiple of 16 bytes (zeros) so that every row is 16-byte aligned for the kernels' loads;
    // the scale rows the matrix uses, widened to fp32 (bf16/f16 -> f32 is exact).
    Fp8Device d;
    d.ldw = fp8_padded_k(o.cols);
    const size_t wbytes = size_t(o.rows * d.ldw);
    std::vector<uint8_t> padded;
    const void* src = o.w;
    if (d.ldw != o.cols) {
      padded.assign(wbytes, 0);
      for (int64_t r = 0; r < o.rows; ++r)
        std::memcpy(padded.data() + r * d.ldw, static_cast<const uint8_t*>(o.w) + r * o.cols, size_t(o.cols));
      src = padded.data();
    }
    cpu::Matrix m;
    m.dtype = DType::F8_E4M3;
    m.scale = o.scale;
    m.scale_dtype = o.scale_dtype;
    m.scale_cols = o.scale_cols;
    const int64_t srows = fp8_scale_rows(o.rows, row0);
    std::vector<float> sc(size_t(srows * o.scale_cols));
    for (int64_t r = 0; r < srows; ++r)
      for (int64_t c = 0; c < o.scale_cols; ++c) sc[size_t(r * o.scale_cols + c)] = cpu::fp8_block_scale(m, rb0 + r, c);
    INFER_CUDA_CHECK(cudaMalloc(&d.w, wbytes));
    try {
      INFER_CUDA_CHECK(cudaMalloc(&d.scale, sc.size() * sizeof(float)));
    } catch (...) {
      cudaFree(d.w);
      throw;
    }
    fp8_weights_.emplace(key, d);  // owned from here (freed by the destructor)
    INFER_CUDA_CHECK(cudaMemcpy(d.w, src, wbytes, cudaMemcpyHostToDevice));
    INFER_CUDA_CHECK(cudaMemcpy(d.scale, sc.data(), sc.size() * sizeof(float), cudaMemcpyHostToDevice));
    stats_.weight_bytes += int64_t(wbytes + sc.size() * sizeof(float));
    it = fp8_weights_.find(key);
  }
  const Fp8Device& d = it->second;
  return Fp8Weight{static_cast<const uint8_t*>(d.w), d.ldw, static_cast<const float*>(d.scale), row0, o.rows, o.cols};
}

// ------------------------------------------------------------------ sampling

bool CudaBackend::can_sample(int64_t vocab, float temperature, int32_t top_k) const {
  const int64_t k = top_k > 0 && top_k < vocab ? top_k : vocab;
  return temperature <= 0.0f || k <= sample_max_candidates();
}

int32_t CudaBackend::sample(const float* logits, int64_t vocab, float temperature, int32_t top_k, float top_p,
                            float min_p, double u, float* logprob) {
  if (!can_sample(vocab, temperature, top_k)) return -1;
  if (step_active_) finish_step();
  flush_held();
  SampleArgs a;
  a.temperature = temperature;
  a.top_k = top_k;
  a.top_p = top_p;
  a.min_p = min_p;
  a.u = u;
  launch_sample(logits, vocab, a, token_dev_, stream_);
  // Slot token_dev_[1] holds the token's logprob (a float in an int32 slot) when it is wanted.
  float* lp_dev = reinterpret_cast<float*>(token_dev_ + 1);
  if (logprob) launch_token_logprob(logits, vocab, token_dev_, lp_dev, stream_);
  INFER_CUDA_CHECK(cudaMemcpyAsync(token_host_, token_dev_, (logprob ? 2 : 1) * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, stream_));
  INFER_CUDA_CHECK(cudaStreamSynchronize(stream_));
  check_launch("sample");
  if (logprob) std::memcpy(logprob, token_host_ + 1, sizeof(float));
  return *token_host_;
}

// ------------------------------------------------------------------ MoE and MLA

const void* const* CudaBackend::moe_table(const MoeExpert* experts, int64_t E, DType* wtype) {
  const DType t = experts[0].gate.dtype;
  *wtype = t;
  if (t != DType::BF16 && t != DType::F32) return nullptr;
  for (int64_t e = 0; e < E; ++e)
    for (const cpu::Matrix* m : {&experts[e].gate, &experts[e].up, &experts[e].down})
      if (m->dtype != t) return nullptr;
  auto it = moe_tables_.find(experts);
  if (it != moe_tables_.end()) return static_cast<const void* const*>(it->second.ptr);
  std::vector<const void*> ptrs(size_t(3 * E));
  for (int64_t e = 0; e < E; ++e) {
    const cpu::Matrix* m[3] = {&experts[e].gate, &experts[e].up, &experts[e].down};
    for (int i = 0; i < 3; ++i)
      ptrs[size_t(i * E + e)] = weight(m[i]->data, size_t(m[i]->rows * m[i]->cols) * dtype_size(t));
  }
  Weight w;
  w.bytes = ptrs.size() * sizeof(void*);
  INFER_CUDA_CHECK(cudaMalloc(&w.ptr, w.bytes));
  INFER_CUDA_CHECK(cudaMemcpy(w.ptr, ptrs.data(), w.bytes, cudaMemcpyHostToDevice));
  moe_tables_.emplace(experts, w);
  return static_cast<const void* const*>(w.ptr);
}

const void* CudaBackend::mla_weight(const cpu::Matrix& m, DType* type) {
  if (m.dtype == DType::BF16 || m.dtype == DType::F32) {
    *type = m.dtype;
    return weight(m.data, size_t(m.rows * m.cols) * dtype_size(m.dtype));
  }
  if (m.dtype != DType::F8_E4M3)
    fail(INFER_ERR_UNSUPPORTED, std::string("CUDA backend: kv_b_proj of dtype ") + dtype_name(m.dtype) +
                                    " is not supported by the MLA kernels (bf16, f32, fp8 e4m3)");
  // FP8 (block-scaled): dequantised once to fp32 with the CPU's own row conversion (the same values), as the
  // absorbed kernels read kv_b by columns and rows alike. note: 4 bytes per weight instead of 1.
  *type = DType::F32;
  auto it = weights_f32_.find(m.data);
  if (it != weights_f32_.end()) return it->second.ptr;
  std::vector<float> v(size_t(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) cpu::matrix_row_f32(m, r, v.data() + r * m.cols);
  Weight w;
  w.bytes = v.size() * sizeof(float);
  INFER_CUDA_CHECK(cudaMalloc(&w.ptr, w.bytes));
  INFER_CUDA_CHECK(cudaMemcpy(w.ptr, v.data(), w.bytes, cudaMemcpyHostToDevice));
  stats_.weight_bytes += int64_t(w.bytes);
  weights_f32_.emplace(m.data, w);
  return w.ptr;
}

int CudaBackend::mla_splits(int64_t n_keys, int64_t nh) const {
  // As decode_splits: two waves of blocks, >= kMinKeysPerSplit keys per split, a power of two.
  const int64_t groups = (nh + 7) / 8;
  const int64_t want = std::max<int64_t>(1, (2 * sm_count_ + groups - 1) / groups);
  const int64_t cap = std::max<int64_t>(1, n_keys / kMinKeysPerSplit);
  const int64_t s = std::min<int64_t>({want, cap, 64});
  int p = 1;
  while (p * 2 <= s) p *= 2;
  return p;
}

void CudaBackend::moe_route(const MoeRouter& r, const float* logits, int64_t ld, const float* score_bias, int64_t T,
                            int32_t* ids, float* weights) {
  if (!moe_route_supported(r.n_experts, r.top_k, r.n_group))
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: MoE routing of " + std::to_string(r.top_k) + " of " +
                                    std::to_string(r.n_experts) + " experts in " + std::to_string(r.n_group) +
                                    " groups is not supported (at most " + std::to_string(kMoeMaxExperts) +
                                    " experts, top-k <= " + std::to_string(kMoeMaxTopK) + ", 64 groups)");
  const bool softmax = r.scoring == MoeRouter::Scoring::Softmax;
  submit(Op{MoeRouteOp{logits, ld, T, r.n_experts, r.top_k, softmax, r.norm_topk_prob, r.n_group, r.topk_group,
                       r.routed_scaling_factor, softmax ? nullptr : score_bias, ids, weights}});
}

void CudaBackend::moe_experts(const float* x, int64_t ldx, const MoeExpert* experts, int64_t n_experts, int64_t I,
                              const int32_t* ids, const float* weights, int64_t T, int64_t k, float* out, int64_t ldo,
                              int64_t H, float* /*scratch*/) {
  DType t = DType::F32;
  if (T == 1 && moe_table(experts, n_experts, &t)) {
    submit(Op{MoeDecodeOp{x, experts, n_experts, H, I, k, t, ids, weights, out}});
    return;
  }
  moe_experts_grouped(x, ldx, experts, n_experts, I, ids, weights, T, k, out, ldo, H);
}

void CudaBackend::moe_experts_grouped(const float* x, int64_t ldx, const MoeExpert* experts, int64_t E, int64_t I,
                                      const int32_t* ids, const float* weights, int64_t T, int64_t k, float* out,
                                      int64_t ldo, int64_t H) {
  // Runs now: the expert sizes must reach the host (a decode step in progress runs eagerly up to here).
  if (step_active_) finish_step();
  flush_held();
  cudaStream_t s = stream_;
  const int64_t n = T * k;
  auto* perm = static_cast<int32_t*>(scratch(kSlotMoePerm, size_t(E + 1 + 2 * n) * sizeof(int32_t)));
  int32_t* rows = perm + E + 1;
  int32_t* pos = rows + n;
  auto* xg = static_cast<float*>(scratch(kSlotMoeX, size_t(n * H) * sizeof(float)));
  auto* y = static_cast<float*>(scratch(kSlotMoeY, size_t(n * H) * sizeof(float)));
  auto* g = static_cast<float*>(scratch(kSlotMoeG, size_t(T * I) * sizeof(float)));
  auto* u = static_cast<float*>(scratch(kSlotMoeU, size_t(T * I) * sizeof(float)));
  launch_moe_permute(ids, T, k, E, perm, rows, pos, s);
  launch_gather_rows(x, ldx, T, rows, n, xg, H, H, s);
  std::vector<int32_t> off(size_t(E + 1));
  INFER_CUDA_CHECK(cudaMemcpyAsync(off.data(), perm, off.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  INFER_CUDA_CHECK(cudaStreamSynchronize(s));
  check_launch("moe_permute");
  for (int64_t e = 0; e < E; ++e) {
    const int64_t b = off[size_t(e)], ne = off[size_t(e) + 1] - b;
    if (ne == 0) continue;
    const MoeExpert& x_e = experts[size_t(e)];
    matmul(xg + b * H, H, x_e.gate, g, I, ne);
    matmul(xg + b * H, H, x_e.up, u, I, ne);
    swiglu(g, I, u, I, g, I, ne, I);
    matmul(g, I, x_e.down, y + b * H, H, ne);
  }
  flush_held();
  launch_moe_unpermute(y, H, ids, weights, pos, T, k, out, ldo, H, s);
#if !defined(NDEBUG)
  check_launch("moe_unpermute");
#endif
}

void CudaBackend::rope_strided(float* x, int64_t ldx, int64_t T, int64_t n_heads, int64_t head_stride, int64_t d,
                               bool interleaved, int64_t pos0, const RopeTable& rope) {
  if (int64_t(rope.inv_freq.size()) * 2 != d)
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: RoPE over " + std::to_string(rope.inv_freq.size() * 2) + " of " +
                                    std::to_string(d) + " dims is not supported");
  Op op{RopeStridedOp{x, ldx, T, n_heads, head_stride, d, interleaved, &rope}};
  op.pos0 = pos0;
  submit(op);
}

void CudaBackend::kv_read(const void* cache, int64_t width, int64_t pos0, int64_t n, float* dst, int64_t ldd) {
  submit(Op{KvReadOp{static_cast<const float*>(cache), width, pos0, n, dst, ldd}});
}

void CudaBackend::mla_absorb_q(const float* q, int64_t ldq, const cpu::Matrix& kv_b, float* qa, int64_t ldqa,
                               int64_t T, int64_t nh, int64_t dn, int64_t dr, int64_t dv) {
  if (!mla_supported(kv_b.cols, dr))
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: MLA with kv_lora_rank " + std::to_string(kv_b.cols) + " and rope dim " +
                                    std::to_string(dr) + " is not supported (kv_lora_rank <= 512)");
  DType t;
  const void* w = mla_weight(kv_b, &t);
  submit(Op{MlaAbsorbOp{false, q, ldq, w, t, kv_b.rows, kv_b.cols, qa, ldqa, T, nh, dn, dr, dv}});
}

void CudaBackend::mla_absorb_out(const float* o, int64_t ldo, const cpu::Matrix& kv_b, float* out, int64_t ldout,
                                 int64_t T, int64_t nh, int64_t dn, int64_t dv) {
  if (!mla_supported(kv_b.cols, 0))
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: MLA with kv_lora_rank " + std::to_string(kv_b.cols) +
                                    " is not supported (kv_lora_rank <= 512)");
  DType t;
  const void* w = mla_weight(kv_b, &t);
  submit(Op{MlaAbsorbOp{true, o, ldo, w, t, kv_b.rows, kv_b.cols, out, ldout, T, nh, dn, 0, dv}});
}

void CudaBackend::mla_attention_absorbed(const float* qa, int64_t ldqa, const void* cache, int64_t r, int64_t dr,
                                         float* o, int64_t ldo, int64_t T, int64_t pos0, int64_t nh, float scale) {
  if (!mla_supported(r, dr))
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: MLA with kv_lora_rank " + std::to_string(r) + " and rope dim " +
                                    std::to_string(dr) + " is not supported (kv_lora_rank <= 512)");
  const int splits = T == 1 ? mla_splits(pos0 + 1, nh) : 1;
  Op op{MlaAttentionOp{qa, ldqa, static_cast<const float*>(cache), r, dr, o, ldo, T, nh, scale, splits}};
  op.pos0 = pos0;
  submit(op);
}

void CudaBackend::mla_attention_block(const float* q, int64_t ldq, const float* kvb, int64_t ldkvb, const float* kr,
                                      int64_t ldkr, int64_t j0, int64_t nj, float* m, float* l, float* out,
                                      int64_t ldo, int64_t T, int64_t pos0, int64_t nh, int64_t dn, int64_t dr,
                                      int64_t dv, float scale, bool first, bool last) {
  if (nj > 8192)  // the block's scores live in shared memory
    fail(INFER_ERR_UNSUPPORTED, "CUDA backend: MLA key blocks of " + std::to_string(nj) + " keys (at most 8192)");
  Op op{MlaBlockOp{q, ldq, kvb, ldkvb, kr, ldkr, j0, nj, m, l, out, ldo, T, nh, dn, dr, dv, scale, first, last}};
  op.pos0 = pos0;
  submit(op);
}

void CudaBackend::issue_moe_mla(const Op& op, bool graph) {
  cudaStream_t s = stream_;
  const int32_t* pos_dev = graph ? step_dev_ + 1 : nullptr;
  if (const auto* o = std::get_if<MoeRouteOp>(&op.args)) {
    MoeRouteArgs a{o->logits, o->ld, o->T, o->E, o->k, o->softmax, o->norm, o->n_group, o->topk_group, o->scaling,
                   o->bias ? weight_f32(o->bias, DType::F32, o->E) : nullptr, o->ids, o->weights};
    launch_moe_route(a, s);
  } else if (const auto* o = std::get_if<MoeDecodeOp>(&op.args)) {
    DType t;
    const void* const* table = moe_table(o->experts, o->E, &t);
    auto* h = static_cast<float*>(scratch(kSlotMoeH, size_t(o->k * o->I) * sizeof(float)));
    MoeDecodeArgs a{table, ktype(o->wtype), o->E, o->H, o->I, o->k, o->ids, o->weights, o->x, h, o->out};
    launch_moe_decode(a, s);
  } else if (const auto* o = std::get_if<RopeStridedOp>(&op.args)) {
    launch_rope_strided(o->x, o->ldx, o->T, o->n_heads, o->head_stride, o->d, o->interleaved, rope_table(*o->rope),
                        o->rope->attention_scaling, op.pos0, pos_dev, s);
  } else if (const auto* o = std::get_if<KvReadOp>(&op.args)) {
    launch_kv_read(o->cache, kv_rows(o->cache), o->width, o->row0, o->n, o->dst, o->ldd, s);
  } else if (const auto* o = std::get_if<MlaAbsorbOp>(&op.args)) {
    if (o->out)
      launch_mla_absorb_out(o->x, o->ldx, o->kvb, ktype(o->wtype), o->y, o->ldy, o->T, o->nh, o->dn, o->dv, o->r, s);
    else
      launch_mla_absorb_q(o->x, o->ldx, o->kvb, ktype(o->wtype), o->y, o->ldy, o->T, o->nh, o->dn, o->dr, o->dv, o->r,
                          s);
  } else if (const auto* o = std::get_if<MlaAttentionOp>(&op.args)) {
    MlaAttentionArgs a{o->qa, o->ldqa, o->cache, kv_rows(o->cache), o->r, o->dr, o->o, o->ldo, o->T, op.pos0, pos_dev,
                       o->nh, o->scale};
    float* partial = o->splits > 1 ? static_cast<float*>(scratch(
                                         kSlotMlaPartial, size_t(o->T * o->nh * o->splits * (o->r + 2)) * sizeof(float)))
                                   : nullptr;
    launch_mla_attention(a, o->splits, partial, s);
  } else if (const auto* o = std::get_if<MlaBlockOp>(&op.args)) {
    MlaBlockArgs a{o->q, o->ldq, o->kvb, o->ldkvb, o->kr, o->ldkr, o->j0, o->nj, o->m, o->l, o->out, o->ldo, o->T,
                   op.pos0, pos_dev, o->nh, o->dn, o->dr, o->dv, o->scale, o->first, o->last};
    launch_mla_attention_block(a, s);
  }
}

}  // namespace INFER_CUDA_NS
}  // namespace infer
