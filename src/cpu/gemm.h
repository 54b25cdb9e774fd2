// gemm.h — the CPU backend's fast matmul: bf16 weights repacked once into panels for register-blocked kernels.
//
// Layout. A packed matrix holds the rows of one or more bf16 weight matrices W [n, k] (concatenated: q/k/v or
// gate/up become one matmul) in panels of kPanel = 48 output columns. Within a panel, for each pair of inputs
// (2i, 2i+1), the 48 columns' weights follow each other as 32-bit words (low half W[n, 2i], high half W[n, 2i+1]):
// one 64-byte vector holds 16 columns' pairs, which is what AVX512-BF16's vdpbf16ps multiplies and adds, and which
// a shift (even k) and a mask (odd k) widen to fp32. The last panel is only as wide as the remaining columns rounded
// up to 16 (16, 32 or 48: no padding streamed in decode); its columns past n and the odd k's missing partner are zero.
//
// Kernels (y[t, n] = Σ_k x[t, k] · W[n, k], fp32 out):
//   - fp32 activations (precision fp32, and every T = 1 decode step): weights widened in registers, fp32 FMA,
//     each output summed over k in increasing order; AVX-512 up to 4 rows × 48 columns per tile, AVX2 1 × 48,
//     portable C++;
//   - bf16 activations (precision fast, T ≥ 2, on CPUs with AVX512-BF16): each row of x rounded to bf16 once per
//     matmul (round to nearest even), then vdpbf16ps tiles of up to 8 rows × 48 columns (24 accumulators), fp32
//     accumulation. Products of two bf16 are exact in fp32, so the only change from the fp32 path is the rounding
//     of x (relative 2^-9 per element); see docs/benchmarks.md for what that does to logits.
// Threads split the panels (each thread streams its own contiguous range of the packed weights); the row loop runs
// inside, so every weight byte is read from memory once per matmul whatever T is.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace infer::cpu {

// Matmul activation precision for T ≥ 2: Fast (bf16 activations where the CPU has AVX512-BF16) or Fp32 (exact
// fp32 activations: HF's float32 numerics). Default Fast; INFER_CPU_PRECISION=fast|fp32 overrides.
enum class Precision { Fast, Fp32 };
Precision precision();
void set_precision(Precision p);  // for tests
const char* precision_name(Precision p);

constexpr int kPanel = 48;

struct PackedMatrix {
  int64_t n = 0, k = 0;   // output features (sum of the parts' rows), inputs
  int64_t pairs = 0;      // ceil(k / 2)
  int64_t panels = 0;     // ceil(n / kPanel)
  int last_width = kPanel;   // the last panel's width: the rest of n rounded up to 16 (no 48-wide padding)
  uint32_t* data = nullptr;  // (panels - 1) × pairs × kPanel + pairs × last_width words, 64-byte aligned
  PackedMatrix() = default;
  PackedMatrix(const PackedMatrix&) = delete;
  PackedMatrix& operator=(const PackedMatrix&) = delete;
  ~PackedMatrix();
  const uint32_t* panel(int64_t p) const { return data + p * pairs * kPanel; }
  int width(int64_t p) const { return p + 1 == panels ? last_width : kPanel; }  // columns stored in panel p
  int64_t bytes() const { return ((panels - 1) * kPanel + last_width) * pairs * 4; }
};

// Packs the row-concatenation of bf16 matrices with equal cols (threads split the panels).
std::unique_ptr<PackedMatrix> pack_bf16(ThreadPool& pool, const Matrix* const* parts, int n_parts);

// y[t, c] = Σ_k x[t, k] · W[c, k] for t < T, c < w.n (x: [T, ldx], y: [T, ldy]). exact: fp32 activations whatever
// the precision.
void gemm(ThreadPool& pool, const float* x, int64_t ldx, const PackedMatrix& w, float* y, int64_t ldy, int64_t T,
          bool exact = false);

// The FFN's down projection: y = (silu(g) ⊙ u) W^T, g and u rows of w.k at stride ld. Where the bf16 path runs,
// the product is rounded to bf16 as it is formed (never stored); elsewhere g is overwritten with it. Same values as
// silu_mul then gemm.
void gemm_swiglu(ThreadPool& pool, float* g, const float* u, int64_t ld, const PackedMatrix& w, float* y, int64_t ldy,
                 int64_t T, bool exact = false);

// Where the packed forms of a model's matrix (alone, or leading a concatenation) are kept: one per bf16 weight,
// owned by the model (Matrix::pack points to it), filled on first use by the CPU backend and shared by every
// context of the model. When the weight is a read-only file mapping (drop_source_pages), the source pages are
// released after packing, so the packed copy replaces the mapped one in memory instead of adding to it.
class PackCache {
 public:
  explicit PackCache(bool drop_source_pages) : drop_source_pages_(drop_source_pages) {}
  // The packed concatenation of parts[0..n) (parts[0]->pack == this), made on first request. Null when a part is
  // not bf16 or the parts' cols differ (the caller then uses the unpacked kernels).
  const PackedMatrix* get(ThreadPool& pool, const Matrix* const* parts, int n_parts);

 private:
  struct Key {
    const void* data;
    int64_t rows, cols;
    bool operator==(const Key&) const = default;
  };
  struct Entry {
    std::vector<Key> key;
    std::unique_ptr<PackedMatrix> packed;
  };
  bool drop_source_pages_;
  std::mutex mu_;
  std::vector<Entry> entries_;
};

}  // namespace infer::cpu
