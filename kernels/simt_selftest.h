// simt_selftest.h — host wrappers of the SIMT emulator's self-test kernels (kernels/simt_selftest.cu).
//
// Test-only: tests/test_simt_emulator.cpp runs them under every schedule and checks both that the
// correct kernels match a CPU reference and that each deliberately broken variant is caught. Pointers
// are device pointers (host memory in the emulator); bf16 / e4m3 data is passed as raw bits.
#pragma once
#include <cstdint>

namespace infer::simt_selftest {

// sums[b] = sum of the grid-stride slice of x (n) handled by block b; block_reduce_sum inside.
void launch_block_sum(const float* x, float* sums, int n, int blocks, int block_threads);

enum class TransposeVariant {
  kCorrect,
  kNoSync,   // bug: no __syncthreads between filling the tile and reading it (a race)
  kNoGuard,  // bug: no bounds check on edge tiles (out-of-bounds when the size is not a multiple of 32)
};
// out (cols, rows) = transpose of in (rows, cols), through a 32x33 shared tile, blocks of 32x8.
void launch_transpose(const float* in, float* out, int rows, int cols, TransposeVariant v);

// y = inclusive prefix sum of x within each warp (n multiple of 32). broken: adds lanes < offset twice
// (missing `lane >= offset` guard after __shfl_up_sync).
void launch_warp_scan(const int* x, int* y, int n, bool broken);

// C (m, n) f32 = A (m, k) · B, bf16, A row-major; B is (n, k) when b_nk, else (k, n). cp.async into
// shared memory, ldmatrix (.trans for (k, n)), mma.m16n8k16; one warp per 16x8 tile.
// Needs m % 16 == 0, n % 8 == 0, k % 16 == 0.
void launch_mma_gemm_bf16(const uint16_t* a, const uint16_t* b, float* c, int m, int n, int k, bool b_nk);
// As above with B (n, k) but fragments loaded straight from global memory by the PTX layout formulas.
// broken: registers a1 and a2 swapped (a wrong fragment mapping).
void launch_mma_direct_bf16(const uint16_t* a, const uint16_t* b_nk, float* c, int m, int n, int k, bool broken);
// e4m3: A (m, k), B (n, k), k % 32 == 0; ldmatrix + mma.m16n8k32.
void launch_mma_gemm_e4m3(const uint8_t* a, const uint8_t* b_nk, float* c, int m, int n, int k);
void launch_mma_direct_e4m3(const uint8_t* a, const uint8_t* b_nk, float* c, int m, int n, int k, bool broken);

// Warp collectives of one block: out[t * kShuffleProbes + p] is probe p of thread t (see the .cu).
constexpr int kShuffleProbes = 14;
void launch_shuffle_probe(int* out, int block_threads);

// Atomics. global: [0] float sum (as bits), [1] int count, [2] max, [3] min, [4] CAS-increment count,
// [5] exch marker, [6] unsigned sum; hist (bins) = histogram of x % bins built in shared memory.
void launch_atomics(const int* x, int n, int* global, int* hist, int bins, int blocks);

// Each block reverses its `per_block` floats through dynamic shared memory. oob: also touches
// element per_block (one past the end of the dynamic shared memory).
void launch_dynamic_smem_reverse(const float* x, float* y, int per_block, int blocks, bool oob);

// out[t * 3 + {0,1,2}] = __syncthreads_count/and/or of (t % 3 == 0), (t < n), (t == 5).
void launch_sync_reductions(int* out, int block_threads);

// first[t] = arrival order of thread t at its first switch point, second[t] after a barrier.
void launch_schedule_probe(int* first, int* second, int* counter, int block_threads);

// Barrier and collective misuse (each must be reported, and the launch must return).
void launch_early_exit(float* y);        // threads >= 16 return before __syncthreads
void launch_split_barrier(float* y);     // two branches each with their own __syncthreads
void launch_shuffle_deadlock(float* y);  // half a warp at __shfl_sync, the other half at __syncthreads
void launch_collective_mismatch(int* y); // lane 0 at __ballot_sync, the others at __shfl_sync
void launch_shuffle_inactive(float* y, int block_threads);  // block of 48: the last warp has 16 lanes

// y[i] = 2i for i < n - 1: the last element is never written (an off-by-one).
void launch_off_by_one(float* y, int n);
// Reads shared memory that no thread wrote.
void launch_uninit_smem(float* y);
// Warp-synchronous exchange through shared memory, with or without the __syncwarp between.
void launch_warp_exchange(int* y, bool syncwarp);
// Stages x (64 floats per block of 16 threads) through cp.async; wait=false forgets cp_async_wait.
void launch_cp_async_stage(const float* x, float* y, int blocks, bool wait);
// ldmatrix given a global-memory row address.
void launch_ldmatrix_global(const uint16_t* g, uint32_t* out);
// y[i] = x[offset + i] with 16-byte vector loads (dev_ptr_cast<const float4>); offset % 4 != 0 is misaligned.
void launch_vec4_copy(const float* x, float* y, int n, int offset);
// __trap() in thread 3.
void launch_trap(float* y);
// Two blocks; block 0 spins until block 1 sets flag[0] (inter-block synchronization: a bug).
void launch_spin_on_other_block(int* flag);

}  // namespace infer::simt_selftest
