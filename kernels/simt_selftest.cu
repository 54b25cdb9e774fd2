// simt_selftest.cu — test-only kernels for the SIMT emulator (tests/test_simt_emulator.cpp).
//
// Correct kernels (block reduction, tiled transpose, ldmatrix + mma GEMMs, warp collectives, atomics)
// that must match CPU references, and deliberately broken variants (missing __syncthreads, wrong
// fragment mapping, wrong shuffle, out-of-bounds tile, barrier divergence, unwritten output, …) that
// the emulator must catch. Also compiled by nvcc (tools/ptxas_report.sh) to keep both builds in step:
//   nvcc -std=c++20 -arch=sm_89 -c kernels/simt_selftest.cu
#include "common.cuh"
#include "simt_selftest.h"

namespace infer::simt_selftest {

namespace {
inline dim3 blocks_for(int n, int per_block) { return dim3(unsigned((n + per_block - 1) / per_block)); }
}  // namespace

// ------------------------------------------------------------------ block reduction

// x: (n,), sums: (gridDim.x,)
__global__ void simt_selftest_block_sum_kernel(dev_ptr<const float> x, dev_ptr<float> sums, int n) {
  float v = 0.0f;
  for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += int(gridDim.x * blockDim.x)) v += x[i];
  v = block_reduce_sum(v);
  if (threadIdx.x == 0) sums[blockIdx.x] = v;
}

void launch_block_sum(const float* x, float* sums, int n, int blocks, int block_threads) {
  infer_launch(simt_selftest_block_sum_kernel, dim3(unsigned(blocks)), dim3(unsigned(block_threads)), 0, nullptr,
               make_dev_ptr(x, size_t(n)), make_dev_ptr(sums, size_t(blocks)), n);
}

// ------------------------------------------------------------------ tiled transpose

// in: (rows, cols), out: (cols, rows); block (32, 8), one 32x32 tile per block.
// note: the tile is 32x33 so that the column reads do not conflict on shared-memory banks.
template <bool kSync, bool kGuard>
__global__ void simt_selftest_transpose_kernel(dev_ptr<const float> in, dev_ptr<float> out, int rows, int cols) {
  __shared__ float tile[32][33];
  int x = int(blockIdx.x * 32 + threadIdx.x);
  const int y0 = int(blockIdx.y * 32);
  for (int j = int(threadIdx.y); j < 32; j += 8)
    if (!kGuard || (x < cols && y0 + j < rows)) tile[j][threadIdx.x] = in[(y0 + j) * cols + x];
  if (kSync) __syncthreads();
  x = int(blockIdx.y * 32 + threadIdx.x);
  const int x0 = int(blockIdx.x * 32);
  for (int j = int(threadIdx.y); j < 32; j += 8)
    if (!kGuard || (x < rows && x0 + j < cols)) out[(x0 + j) * rows + x] = tile[threadIdx.x][j];
}

void launch_transpose(const float* in, float* out, int rows, int cols, TransposeVariant v) {
  const dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32));
  const dim3 block(32, 8);
  auto pin = make_dev_ptr(in, size_t(rows) * cols);
  auto pout = make_dev_ptr(out, size_t(rows) * cols);
  switch (v) {
    case TransposeVariant::kCorrect:
      infer_launch(simt_selftest_transpose_kernel<true, true>, grid, block, 0, nullptr, pin, pout, rows, cols);
      break;
    case TransposeVariant::kNoSync:
      infer_launch(simt_selftest_transpose_kernel<false, true>, grid, block, 0, nullptr, pin, pout, rows, cols);
      break;
    case TransposeVariant::kNoGuard:
      infer_launch(simt_selftest_transpose_kernel<true, false>, grid, block, 0, nullptr, pin, pout, rows, cols);
      break;
  }
}

// ------------------------------------------------------------------ warp scan (shuffles)

// x, y: (n,), n % 32 == 0
template <bool kBroken>
__global__ void simt_selftest_warp_scan_kernel(dev_ptr<const int> x, dev_ptr<int> y, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  const int lane = int(threadIdx.x % 32);
  int v = x[i];
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, v, unsigned(o));
    if (kBroken || lane >= o) v += t;  // bug when kBroken: lanes < o get their own value back and add it
  }
  y[i] = v;
}

void launch_warp_scan(const int* x, int* y, int n, bool broken) {
  auto px = make_dev_ptr(x, size_t(n));
  auto py = make_dev_ptr(y, size_t(n));
  if (broken)
    infer_launch(simt_selftest_warp_scan_kernel<true>, blocks_for(n, 64), dim3(64), 0, nullptr, px, py, n);
  else
    infer_launch(simt_selftest_warp_scan_kernel<false>, blocks_for(n, 64), dim3(64), 0, nullptr, px, py, n);
}

// ------------------------------------------------------------------ tensor-core GEMMs

namespace {
constexpr int kGemmWarps = 4;  // warps per block, one 16x8 output tile each
}

// a: (m, k) row-major, kElemBytes bytes per element (2: bf16, 1: e4m3); b: (n, k) if kBNK else (k, n)
// (bf16 only); c: (m, n) f32. Each k-step covers 32 bytes of an A row: 16 bf16 or 32 e4m3.
template <int kElemBytes, bool kBNK>
__global__ void simt_selftest_mma_gemm_kernel(dev_ptr<const uint8_t> a, dev_ptr<const uint8_t> b, dev_ptr<float> c,
                                              int m, int n, int k) {
  __shared__ __align__(16) uint8_t sa[kGemmWarps][16 * 32];  // 16 rows x 32 bytes
  __shared__ __align__(16) uint8_t sb[kGemmWarps][256];      // B (8 rows x 32 bytes) or (16 rows x 16 bytes)
  constexpr int kStep = 32 / kElemBytes;
  const int lane = int(threadIdx.x % 32), w = int(threadIdx.x / 32);
  const int tile = int(blockIdx.x) * kGemmWarps + w, tiles_n = n / 8;
  if (tile >= (m / 16) * tiles_n) return;  // warp-uniform
  const int tm = tile / tiles_n, tn = tile % tiles_n;
  const size_t row_bytes = size_t(k) * kElemBytes;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int k0 = 0; k0 < k; k0 += kStep) {
    const size_t kb = size_t(k0) * kElemBytes;
    {  // A tile: 32 chunks of 16 bytes, one per lane
      const int r = lane / 2, h = lane % 2;
      cp_async_16(&sa[w][r * 32 + h * 16], a + ptrdiff_t((size_t(tm) * 16 + r) * row_bytes + kb + h * 16));
    }
    if (lane < 16) {  // B tile: 16 chunks
      if constexpr (kBNK) {
        const int r = lane / 2, h = lane % 2;
        cp_async_16(&sb[w][r * 32 + h * 16], b + ptrdiff_t((size_t(tn) * 8 + r) * row_bytes + kb + h * 16));
      } else {
        cp_async_16(&sb[w][lane * 16], b + ptrdiff_t(((size_t(k0) + lane) * n + size_t(tn) * 8) * kElemBytes));
      }
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncwarp();  // the tiles were written by other lanes
    uint32_t af[4], bf[2];
    // matrices of A: 0 = rows 0-7, bytes 0-15; 1 = rows 8-15, bytes 0-15; 2, 3: the same at bytes 16-31
    ldmatrix_x4(af, &sa[w][((lane % 8) + ((lane / 8) % 2) * 8) * 32 + (lane / 16) * 16]);
    if constexpr (kBNK)
      ldmatrix_x2(bf, &sb[w][(lane % 8) * 32 + ((lane / 8) % 2) * 16]);  // B^T rows (n), k halves
    else
      ldmatrix_x2_trans(bf, &sb[w][(lane % 16) * 16]);  // B rows (k) 0-7 and 8-15, transposed
    if constexpr (kElemBytes == 2)
      mma_m16n8k16_bf16(acc, af, bf, acc);
    else
      mma_m16n8k32_e4m3(acc, af, bf, acc);
    __syncwarp();  // everyone has read the tiles before the next k-step overwrites them
  }
  for (int i = 0; i < 4; ++i) {
    const FragCoord rc = mma_c_coord(lane, i);
    c[(tm * 16 + rc.row) * n + tn * 8 + rc.col] = acc[i];
  }
}

// Fragments straight from global memory. a: (m, k), b: (n, k) bf16 bits, c: (m, n).
template <bool kBroken>
__global__ void simt_selftest_mma_direct_bf16_kernel(dev_ptr<const uint16_t> a, dev_ptr<const uint16_t> b,
                                                     dev_ptr<float> c, int m, int n, int k) {
  const int lane = int(threadIdx.x % 32), w = int(threadIdx.x / 32);
  const int tile = int(blockIdx.x) * kGemmWarps + w, tiles_n = n / 8;
  if (tile >= (m / 16) * tiles_n) return;
  const int tm = tile / tiles_n, tn = tile % tiles_n;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int k0 = 0; k0 < k; k0 += 16) {
    uint32_t af[4], bf[2];
    for (int r = 0; r < 4; ++r) {
      // bug when kBroken: registers 1 and 2 swapped, as if a1 held (row g, k + 8) and a2 (row g + 8, k)
      const int rr = kBroken && (r == 1 || r == 2) ? 3 - r : r;
      uint32_t reg = 0;
      for (int h = 0; h < 2; ++h) {
        const FragCoord rc = mma_m16n8k16_a_coord(lane, 2 * rr + h);
        reg |= uint32_t(a[(tm * 16 + rc.row) * k + k0 + rc.col]) << (16 * h);
      }
      af[r] = reg;
    }
    for (int r = 0; r < 2; ++r) {
      uint32_t reg = 0;
      for (int h = 0; h < 2; ++h) {
        const FragCoord rc = mma_m16n8k16_b_coord(lane, 2 * r + h);  // (k row, n col)
        reg |= uint32_t(b[(tn * 8 + rc.col) * k + k0 + rc.row]) << (16 * h);
      }
      bf[r] = reg;
    }
    mma_m16n8k16_bf16(acc, af, bf, acc);
  }
  for (int i = 0; i < 4; ++i) {
    const FragCoord rc = mma_c_coord(lane, i);
    c[(tm * 16 + rc.row) * n + tn * 8 + rc.col] = acc[i];
  }
}

// a: (m, k), b: (n, k) e4m3 bits, c: (m, n).
template <bool kBroken>
__global__ void simt_selftest_mma_direct_e4m3_kernel(dev_ptr<const uint8_t> a, dev_ptr<const uint8_t> b,
                                                     dev_ptr<float> c, int m, int n, int k) {
  const int lane = int(threadIdx.x % 32), w = int(threadIdx.x / 32);
  const int tile = int(blockIdx.x) * kGemmWarps + w, tiles_n = n / 8;
  if (tile >= (m / 16) * tiles_n) return;
  const int tm = tile / tiles_n, tn = tile % tiles_n;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int k0 = 0; k0 < k; k0 += 32) {
    uint32_t af[4], bf[2];
    for (int r = 0; r < 4; ++r) {
      const int rr = kBroken && (r == 1 || r == 2) ? 3 - r : r;  // the same wrong mapping as above
      uint32_t reg = 0;
      for (int q = 0; q < 4; ++q) {
        const FragCoord rc = mma_m16n8k32_a_coord(lane, 4 * rr + q);
        reg |= uint32_t(a[(tm * 16 + rc.row) * k + k0 + rc.col]) << (8 * q);
      }
      af[r] = reg;
    }
    for (int r = 0; r < 2; ++r) {
      uint32_t reg = 0;
      for (int q = 0; q < 4; ++q) {
        const FragCoord rc = mma_m16n8k32_b_coord(lane, 4 * r + q);
        reg |= uint32_t(b[(tn * 8 + rc.col) * k + k0 + rc.row]) << (8 * q);
      }
      bf[r] = reg;
    }
    mma_m16n8k32_e4m3(acc, af, bf, acc);
  }
  for (int i = 0; i < 4; ++i) {
    const FragCoord rc = mma_c_coord(lane, i);
    c[(tm * 16 + rc.row) * n + tn * 8 + rc.col] = acc[i];
  }
}

namespace {
dim3 gemm_grid(int m, int n) { return blocks_for((m / 16) * (n / 8), kGemmWarps); }
}  // namespace

void launch_mma_gemm_bf16(const uint16_t* a, const uint16_t* b, float* c, int m, int n, int k, bool b_nk) {
  auto pa = make_dev_ptr(reinterpret_cast<const uint8_t*>(a), size_t(m) * k * 2);
  auto pb = make_dev_ptr(reinterpret_cast<const uint8_t*>(b), size_t(n) * k * 2);
  auto pc = make_dev_ptr(c, size_t(m) * n);
  if (b_nk)
    infer_launch(simt_selftest_mma_gemm_kernel<2, true>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr, pa, pb, pc,
                 m, n, k);
  else
    infer_launch(simt_selftest_mma_gemm_kernel<2, false>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr, pa, pb,
                 pc, m, n, k);
}

void launch_mma_direct_bf16(const uint16_t* a, const uint16_t* b_nk, float* c, int m, int n, int k, bool broken) {
  auto pa = make_dev_ptr(a, size_t(m) * k);
  auto pb = make_dev_ptr(b_nk, size_t(n) * k);
  auto pc = make_dev_ptr(c, size_t(m) * n);
  if (broken)
    infer_launch(simt_selftest_mma_direct_bf16_kernel<true>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr, pa, pb,
                 pc, m, n, k);
  else
    infer_launch(simt_selftest_mma_direct_bf16_kernel<false>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr, pa,
                 pb, pc, m, n, k);
}

void launch_mma_gemm_e4m3(const uint8_t* a, const uint8_t* b_nk, float* c, int m, int n, int k) {
  infer_launch(simt_selftest_mma_gemm_kernel<1, true>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr,
               make_dev_ptr(a, size_t(m) * k), make_dev_ptr(b_nk, size_t(n) * k), make_dev_ptr(c, size_t(m) * n), m,
               n, k);
}

void launch_mma_direct_e4m3(const uint8_t* a, const uint8_t* b_nk, float* c, int m, int n, int k, bool broken) {
  auto pa = make_dev_ptr(a, size_t(m) * k);
  auto pb = make_dev_ptr(b_nk, size_t(n) * k);
  auto pc = make_dev_ptr(c, size_t(m) * n);
  if (broken)
    infer_launch(simt_selftest_mma_direct_e4m3_kernel<true>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr, pa, pb,
                 pc, m, n, k);
  else
    infer_launch(simt_selftest_mma_direct_e4m3_kernel<false>, gemm_grid(m, n), dim3(32 * kGemmWarps), 0, nullptr, pa,
                 pb, pc, m, n, k);
}

// ------------------------------------------------------------------ warp collectives

// out: (blockDim.x, kShuffleProbes); blockDim.x a multiple of 32.
__global__ void simt_selftest_shuffle_probe_kernel(dev_ptr<int> out) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned full = 0xffffffffu;
  dev_ptr<int> o = out + ptrdiff_t(threadIdx.x * kShuffleProbes);
  o[0] = __shfl_sync(full, int(lane * 10), int((lane + 3) % 32));
  o[1] = __shfl_sync(full, int(lane), 2, 8);
  o[2] = __shfl_up_sync(full, int(lane), 3, 16);
  o[3] = __shfl_down_sync(full, int(lane), 5, 16);
  o[4] = __shfl_xor_sync(full, int(lane), 17, 16);  // later 16-lane groups are out of reach: own value
  o[5] = int(__ballot_sync(full, lane % 3 == 0));
  o[6] = __any_sync(full, lane == 7);
  o[7] = __all_sync(full, lane < 31);
  o[8] = __all_sync(full, 1);
  o[9] = int(__activemask());
  o[10] = int(__reduce_add_sync(full, lane));
  o[11] = __reduce_max_sync(full, int(lane * 7 % 13));
  // two groups with disjoint masks at the same time
  if (lane < 16)
    o[12] = __shfl_sync(0x0000ffffu, int(lane + 100), 15);
  else
    o[12] = __shfl_sync(0xffff0000u, int(lane + 200), 16);
  o[13] = int(__shfl_down_sync(full, double(lane) * 0.5, 1) * 2.0);
}

void launch_shuffle_probe(int* out, int block_threads) {
  infer_launch(simt_selftest_shuffle_probe_kernel, dim3(1), dim3(unsigned(block_threads)), 0, nullptr,
               make_dev_ptr(out, size_t(block_threads) * kShuffleProbes));
}

// ------------------------------------------------------------------ atomics

// x: (n,), global: (7,), hist: (bins,), bins <= 64
__global__ void simt_selftest_atomics_kernel(dev_ptr<const int> x, int n, dev_ptr<int> global, dev_ptr<int> hist,
                                             int bins) {
  __shared__ int local[64];
  for (int b = int(threadIdx.x); b < bins; b += int(blockDim.x)) local[b] = 0;
  __syncthreads();
  for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += int(gridDim.x * blockDim.x)) {
    const int v = x[i];
    atomicAdd(reinterpret_cast<float*>(&global[0]), float(v));
    atomicAdd(&global[1], 1);
    atomicMax(&global[2], v);
    atomicMin(&global[3], v);
    for (int seen = atomicAdd(&global[4], 0);;) {  // a CAS loop: increment
      const int old = atomicCAS(&global[4], seen, seen + 1);
      if (old == seen) break;
      seen = old;
    }
    atomicAdd(reinterpret_cast<unsigned*>(&global[6]), unsigned(v));
    atomicAdd(&local[v % bins], 1);  // shared-memory atomics from every thread: not a race
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) atomicExch(&global[5], 12345);
  __syncthreads();
  for (int b = int(threadIdx.x); b < bins; b += int(blockDim.x)) atomicAdd(&hist[b], local[b]);
}

void launch_atomics(const int* x, int n, int* global, int* hist, int bins, int blocks) {
  infer_launch(simt_selftest_atomics_kernel, dim3(unsigned(blocks)), dim3(64), 0, nullptr, make_dev_ptr(x, size_t(n)),
               n, make_dev_ptr(global, 7), make_dev_ptr(hist, size_t(bins)), bins);
}

// ------------------------------------------------------------------ dynamic shared memory

// x, y: (gridDim.x * per_block,); dynamic shared memory: per_block floats.
template <bool kOob>
__global__ void simt_selftest_dynamic_smem_kernel(dev_ptr<const float> x, dev_ptr<float> y, int per_block) {
  float* s = infer_dynamic_smem<float>();
  const int base = int(blockIdx.x) * per_block;
  for (int i = int(threadIdx.x); i < per_block; i += int(blockDim.x)) s[i] = x[base + i];
  if (kOob && threadIdx.x == 0) s[per_block] = 0.0f;  // bug: one past the end
  __syncthreads();
  for (int i = int(threadIdx.x); i < per_block; i += int(blockDim.x)) y[base + i] = s[per_block - 1 - i];
}

void launch_dynamic_smem_reverse(const float* x, float* y, int per_block, int blocks, bool oob) {
  const size_t total = size_t(per_block) * blocks, smem = size_t(per_block) * sizeof(float);
  if (oob)
    infer_launch(simt_selftest_dynamic_smem_kernel<true>, dim3(unsigned(blocks)), dim3(64), smem, nullptr,
                 make_dev_ptr(x, total), make_dev_ptr(y, total), per_block);
  else
    infer_launch(simt_selftest_dynamic_smem_kernel<false>, dim3(unsigned(blocks)), dim3(64), smem, nullptr,
                 make_dev_ptr(x, total), make_dev_ptr(y, total), per_block);
}

// ------------------------------------------------------------------ barriers

// out: (blockDim.x, 3)
__global__ void simt_selftest_sync_reductions_kernel(dev_ptr<int> out) {
  const int t = int(threadIdx.x);
  const int count = __syncthreads_count(t % 3 == 0);
  const int all = __syncthreads_and(t < int(blockDim.x));
  const int any = __syncthreads_or(t == 5);
  out[t * 3 + 0] = count;
  out[t * 3 + 1] = all;
  out[t * 3 + 2] = any;
}

void launch_sync_reductions(int* out, int block_threads) {
  infer_launch(simt_selftest_sync_reductions_kernel, dim3(1), dim3(unsigned(block_threads)), 0, nullptr,
               make_dev_ptr(out, size_t(block_threads) * 3));
}

// first, second: (blockDim.x,), counter: (2,)
__global__ void simt_selftest_schedule_probe_kernel(dev_ptr<int> first, dev_ptr<int> second, dev_ptr<int> counter) {
  first[threadIdx.x] = atomicAdd(&counter[0], 1);
  __syncthreads();
  second[threadIdx.x] = atomicAdd(&counter[1], 1);
}

void launch_schedule_probe(int* first, int* second, int* counter, int block_threads) {
  infer_launch(simt_selftest_schedule_probe_kernel, dim3(1), dim3(unsigned(block_threads)), 0, nullptr,
               make_dev_ptr(first, size_t(block_threads)), make_dev_ptr(second, size_t(block_threads)),
               make_dev_ptr(counter, 2));
}

// y: (32,)
__global__ void simt_selftest_early_exit_kernel(dev_ptr<float> y) {
  if (threadIdx.x >= 16) return;  // bug: the others wait at the barrier below
  __syncthreads();
  y[threadIdx.x] = 1.0f;
}
void launch_early_exit(float* y) {
  infer_launch(simt_selftest_early_exit_kernel, dim3(1), dim3(32), 0, nullptr, make_dev_ptr(y, 32));
}

// y: (64,)
__global__ void simt_selftest_split_barrier_kernel(dev_ptr<float> y) {
  if (threadIdx.x < 32) {  // bug: two different barriers
    __syncthreads();
    y[threadIdx.x] = 1.0f;
  } else {
    __syncthreads();
    y[threadIdx.x] = 2.0f;
  }
}
void launch_split_barrier(float* y) {
  infer_launch(simt_selftest_split_barrier_kernel, dim3(1), dim3(64), 0, nullptr, make_dev_ptr(y, 64));
}

// y: (32,)
__global__ void simt_selftest_shuffle_deadlock_kernel(dev_ptr<float> y) {
  float v = float(threadIdx.x);
  if (threadIdx.x < 16)
    v = __shfl_sync(0xffffffffu, v, 0);  // bug: lanes 16-31 never get here
  else
    __syncthreads();
  y[threadIdx.x] = v;
}
void launch_shuffle_deadlock(float* y) {
  infer_launch(simt_selftest_shuffle_deadlock_kernel, dim3(1), dim3(32), 0, nullptr, make_dev_ptr(y, 32));
}

// y: (32,)
__global__ void simt_selftest_collective_mismatch_kernel(dev_ptr<int> y) {
  int v;
  if (threadIdx.x == 0)
    v = int(__ballot_sync(0xffffffffu, 1));  // bug: a different collective than the rest of the warp
  else
    v = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
  y[threadIdx.x] = v;
}
void launch_collective_mismatch(int* y) {
  infer_launch(simt_selftest_collective_mismatch_kernel, dim3(1), dim3(32), 0, nullptr, make_dev_ptr(y, 32));
}

// y: (blockDim.x,)
__global__ void simt_selftest_shuffle_inactive_kernel(dev_ptr<float> y) {
  y[threadIdx.x] = warp_reduce_sum(1.0f);  // bug when blockDim.x % 32 != 0: lanes that do not exist are read
}
void launch_shuffle_inactive(float* y, int block_threads) {
  infer_launch(simt_selftest_shuffle_inactive_kernel, dim3(1), dim3(unsigned(block_threads)), 0, nullptr,
               make_dev_ptr(y, size_t(block_threads)));
}

// ------------------------------------------------------------------ memory checks

// y: (n,)
__global__ void simt_selftest_off_by_one_kernel(dev_ptr<float> y, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n - 1) y[i] = 2.0f * float(i);  // bug: should be i < n
}
void launch_off_by_one(float* y, int n) {
  infer_launch(simt_selftest_off_by_one_kernel, blocks_for(n, 64), dim3(64), 0, nullptr, make_dev_ptr(y, size_t(n)), n);
}

// y: (64,)
__global__ void simt_selftest_uninit_smem_kernel(dev_ptr<float> y) {
  __shared__ float s[64];
  if (threadIdx.x < 32) s[threadIdx.x] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = s[threadIdx.x];  // bug: s[32..63] were never written
}
void launch_uninit_smem(float* y) {
  infer_launch(simt_selftest_uninit_smem_kernel, dim3(1), dim3(64), 0, nullptr, make_dev_ptr(y, 64));
}

// y: (64,)
template <bool kSyncwarp>
__global__ void simt_selftest_warp_exchange_kernel(dev_ptr<int> y) {
  __shared__ int s[64];
  s[threadIdx.x] = int(threadIdx.x) * 3;
  if (kSyncwarp) __syncwarp();  // orders the lanes' shared-memory accesses
  y[threadIdx.x] = s[threadIdx.x ^ 1u];
}
void launch_warp_exchange(int* y, bool syncwarp) {
  if (syncwarp)
    infer_launch(simt_selftest_warp_exchange_kernel<true>, dim3(1), dim3(64), 0, nullptr, make_dev_ptr(y, 64));
  else
    infer_launch(simt_selftest_warp_exchange_kernel<false>, dim3(1), dim3(64), 0, nullptr, make_dev_ptr(y, 64));
}

// x, y: (gridDim.x * 64,); 16 threads per block, each copies 16 bytes.
template <bool kWait>
__global__ void simt_selftest_cp_async_kernel(dev_ptr<const float> x, dev_ptr<float> y) {
  __shared__ __align__(16) float s[64];
  const int base = int(blockIdx.x) * 64;
  cp_async_16(&s[threadIdx.x * 4], x + ptrdiff_t(base + int(threadIdx.x) * 4));
  cp_async_commit();
  if (kWait) cp_async_wait<0>();  // bug when !kWait: the data may not have landed
  __syncthreads();
  for (int i = int(threadIdx.x); i < 64; i += 16) y[base + i] = s[63 - i];
}
void launch_cp_async_stage(const float* x, float* y, int blocks, bool wait) {
  const size_t n = size_t(blocks) * 64;
  if (wait)
    infer_launch(simt_selftest_cp_async_kernel<true>, dim3(unsigned(blocks)), dim3(16), 0, nullptr, make_dev_ptr(x, n),
                 make_dev_ptr(y, n));
  else
    infer_launch(simt_selftest_cp_async_kernel<false>, dim3(unsigned(blocks)), dim3(16), 0, nullptr, make_dev_ptr(x, n),
                 make_dev_ptr(y, n));
}

// g: (64,) bf16 bits, out: (32,)
__global__ void simt_selftest_ldmatrix_global_kernel(dev_ptr<const uint16_t> g, dev_ptr<uint32_t> out) {
  uint32_t r[1];
  ldmatrix_x1(r, raw(g + ptrdiff_t((threadIdx.x % 8) * 8)));  // bug: ldmatrix reads shared memory only
  out[threadIdx.x] = r[0];
}
void launch_ldmatrix_global(const uint16_t* g, uint32_t* out) {
  infer_launch(simt_selftest_ldmatrix_global_kernel, dim3(1), dim3(32), 0, nullptr, make_dev_ptr(g, 64),
               make_dev_ptr(out, 32));
}

// x: (n + offset,), y: (n,), n % 4 == 0
__global__ void simt_selftest_vec4_copy_kernel(dev_ptr<const float> x, dev_ptr<float> y, int n, int offset) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x) * 4;
  if (i >= n) return;
  const float4 v = dev_ptr_cast<const float4>(x + ptrdiff_t(offset + i))[0];
  y[i] = v.x;
  y[i + 1] = v.y;
  y[i + 2] = v.z;
  y[i + 3] = v.w;
}
void launch_vec4_copy(const float* x, float* y, int n, int offset) {
  infer_launch(simt_selftest_vec4_copy_kernel, blocks_for(n / 4, 32), dim3(32), 0, nullptr,
               make_dev_ptr(x, size_t(n + offset)), make_dev_ptr(y, size_t(n)), n, offset);
}

// y: (32,)
__global__ void simt_selftest_trap_kernel(dev_ptr<float> y) {
  if (threadIdx.x == 3) __trap();
  y[threadIdx.x] = 1.0f;
}
void launch_trap(float* y) {
  infer_launch(simt_selftest_trap_kernel, dim3(1), dim3(32), 0, nullptr, make_dev_ptr(y, 32));
}

// flag: (1,)
__global__ void simt_selftest_spin_kernel(dev_ptr<int> flag) {
  if (blockIdx.x == 1) {
    if (threadIdx.x == 0) atomicExch(&flag[0], 1);
    return;
  }
  if (threadIdx.x == 0)
    while (*reinterpret_cast<volatile int*>(&flag[0]) == 0) {  // bug: blocks are not guaranteed to run concurrently
    }
}
void launch_spin_on_other_block(int* flag) {
  infer_launch(simt_selftest_spin_kernel, dim3(2), dim3(32), 0, nullptr, make_dev_ptr(flag, 1));
}

}  // namespace infer::simt_selftest
