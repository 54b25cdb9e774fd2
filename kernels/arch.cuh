// arch.cuh — tensor-core (mma, ldmatrix) and async-copy (cp.async) helpers, written once for both builds.
//
// Under nvcc each helper is its inline PTX. Under INFER_SIMT each is a warp-collective emulation that
// follows the fragment layouts of the PTX ISA (sections "Matrix Fragments for mma.m16n8k16 with
// floating point type", "Matrix Fragments for mma.m16n8k32", and "Warp-level matrix load
// instruction: ldmatrix"): every lane deposits its registers, one warp barrier, every lane assembles
// the tiles and computes its own outputs, one warp barrier. A kernel that indexes fragments wrongly
// therefore computes wrong results here exactly as it would on a GPU.
//
// Registers hold packed elements, lowest-numbered element in the low bits: a bf16 "a0,a1" pair is
// a[0] = a0 | a1 << 16; four e4m3 "a0..a3" are a[0] = a0 | a1 << 8 | a2 << 16 | a3 << 24.
//
// Requirements: mma/ldmatrix need all 32 lanes of the warp (.sync.aligned); cp.async and mma bf16
// need sm_80; mma e4m3 needs sm_89 (on older targets it traps: pick the path at run time).
#pragma once
#include "simt.h"

namespace infer {

// ------------------------------------------------------------------ fragment layouts (PTX ISA)
// groupID = lane >> 2, threadID_in_group = lane % 4.

struct FragCoord {
  int row, col;
};

// m16n8k16 .bf16/.f16, A (16x16, row-major), element a_i, i in [0, 8):
//   row = groupID for i in {0,1,4,5}, groupID + 8 otherwise; col = tig*2 + (i & 1), + 8 for i >= 4.
__host__ __device__ constexpr FragCoord mma_m16n8k16_a_coord(int lane, int i) {
  return FragCoord{(lane >> 2) + ((i & 2) ? 8 : 0), (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0)};
}
// m16n8k16 B (16x8, "col"), element b_i, i in [0, 4): row = tig*2 + (i & 1), + 8 for i >= 2; col = groupID.
__host__ __device__ constexpr FragCoord mma_m16n8k16_b_coord(int lane, int i) {
  return FragCoord{(lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0), lane >> 2};
}
// m16n8k32 .e4m3, A (16x32), element a_i, i in [0, 16):
//   row = groupID for i in [0,4) or [8,12), groupID + 8 otherwise; col = tig*4 + (i & 3), + 16 for i >= 8.
__host__ __device__ constexpr FragCoord mma_m16n8k32_a_coord(int lane, int i) {
  return FragCoord{(lane >> 2) + ((i & 4) ? 8 : 0), (lane % 4) * 4 + (i & 3) + (i >= 8 ? 16 : 0)};
}
// m16n8k32 B (32x8), element b_i, i in [0, 8): row = tig*4 + (i & 3), + 16 for i >= 4; col = groupID.
__host__ __device__ constexpr FragCoord mma_m16n8k32_b_coord(int lane, int i) {
  return FragCoord{(lane % 4) * 4 + (i & 3) + (i >= 4 ? 16 : 0), lane >> 2};
}
// Accumulators C/D (16x8, f32) of both shapes, element c_i, i in [0, 4):
//   row = groupID for i < 2, groupID + 8 otherwise; col = tig*2 + (i & 1).
__host__ __device__ constexpr FragCoord mma_c_coord(int lane, int i) {
  return FragCoord{(lane >> 2) + (i >= 2 ? 8 : 0), (lane % 4) * 2 + (i & 1)};
}

#if defined(__CUDACC__)
// ======================================================================== PTX

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// D = A * B + C; A 16x16 bf16 row-major (4 regs), B 16x8 bf16 col-major (2 regs), C/D 16x8 f32.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

// D = A * B + C; A 16x32 e4m3 row-major (4 regs), B 32x8 e4m3 col-major (2 regs), C/D 16x8 f32. sm_89+.
__device__ __forceinline__ void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  (void)d, (void)a, (void)b, (void)c;
  __trap();  // fp8 mma needs sm_89: callers select the bf16 path on older GPUs
#endif
}

// ldmatrix .m8n8 .b16: lane l gives the address of row l % 8 of matrix l / 8 (16 bytes, 16-byte aligned,
// shared memory); register j receives matrix j's elements (row lane / 4, cols 2*(lane % 4) + {0,1}),
// or with .trans (rows 2*(lane % 4) + {0,1}, col lane / 4).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(row)));
}

// 16-byte global -> shared copy, in flight until a cp_async_wait covers its group (L2 only: .cg).
template <class P>
__device__ __forceinline__ void cp_async_16(void* smem, P gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem)),
               "l"(__cvta_generic_to_global(raw_range(gmem, 16))));
}
// As cp_async_16, but when !valid nothing is read and the 16 bytes are zero-filled (tile edges).
template <class P>
__device__ __forceinline__ void cp_async_16_zfill(void* smem, P gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)),
               "l"(__cvta_generic_to_global(raw(gmem))), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

#else
// ======================================================================== emulation

namespace arch_detail {

typedef uint32_t __attribute__((may_alias)) u32_alias;
typedef uint16_t __attribute__((may_alias)) u16_alias;

inline float bf16_bits_to_float(uint32_t bits) { return __uint_as_float(bits << 16); }
inline float e4m3_bits_to_float(uint32_t bits) {
  __nv_fp8_e4m3 x;
  x.__x = static_cast<__nv_fp8_storage_t>(bits);
  return float(x);
}

struct MmaRegs {
  uint32_t a[4];
  uint32_t b[2];
};

// kK = 16 (bf16, 2 elements per register) or 32 (e4m3, 4 per register).
template <int kK>
inline void mma_emulate(const char* op, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                        const float (&c)[4]) {
  constexpr int kPerReg = kK / 8;  // elements per 32-bit register
  constexpr int kBits = 32 / kPerReg;
  MmaRegs mine;
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
  for (int i = 0; i < 2; ++i) mine.b[i] = b[i];
  const float cin[4] = {c[0], c[1], c[2], c[3]};  // d may alias c
  const auto view = simt::device::warp_gather(op, 0xffffffffu, &mine, sizeof mine);
  if (view.participants != 0xffffffffu)
    simt::device::report(simt::DiagKind::kWarpCollective,
                         std::string(op) + " needs all 32 lanes of the warp (.sync.aligned)", false);
  float A[16][kK], B[kK][8];
  for (int l = 0; l < 32; ++l) {
    const auto* regs = static_cast<const MmaRegs*>(view.slot(unsigned(l)));
    for (int i = 0; i < 4 * kPerReg; ++i) {
      const uint32_t bits = (regs->a[i / kPerReg] >> (kBits * (i % kPerReg))) & ((1u << kBits) - 1);
      const FragCoord rc = kK == 16 ? mma_m16n8k16_a_coord(l, i) : mma_m16n8k32_a_coord(l, i);
      A[rc.row][rc.col] = kK == 16 ? bf16_bits_to_float(bits) : e4m3_bits_to_float(bits);
    }
    for (int i = 0; i < 2 * kPerReg; ++i) {
      const uint32_t bits = (regs->b[i / kPerReg] >> (kBits * (i % kPerReg))) & ((1u << kBits) - 1);
      const FragCoord rc = kK == 16 ? mma_m16n8k16_b_coord(l, i) : mma_m16n8k32_b_coord(l, i);
      B[rc.row][rc.col] = kK == 16 ? bf16_bits_to_float(bits) : e4m3_bits_to_float(bits);
    }
  }
  const int lane = int(simt::device::lane());
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const FragCoord rc = mma_c_coord(lane, i);
    float acc = cin[i];
    for (int k = 0; k < kK; ++k) acc += A[rc.row][k] * B[k][rc.col];  // products are exact in f32
    out[i] = acc;
  }
  simt::device::warp_release(op, 0xffffffffu);
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

template <int kNum, bool kTrans>
inline void ldmatrix_emulate(uint32_t* r, const void* row) {
  const char* op = kTrans ? "ldmatrix.trans" : "ldmatrix";
  const unsigned lane = simt::device::lane();
  if (lane < 8 * kNum) {  // this lane's address is used: check it like the hardware requires
    if (reinterpret_cast<uintptr_t>(row) % 16)
      simt::device::report(simt::DiagKind::kMisaligned, std::string(op) + ": row address not 16-byte aligned", false);
    if (!simt::device::is_shared(row, 16))
      simt::device::report(simt::DiagKind::kNotShared, std::string(op) + ": row address not in shared memory", false);
  }
  const auto view = simt::device::warp_gather(op, 0xffffffffu, &row, sizeof row);
  if (view.participants != 0xffffffffu)
    simt::device::report(simt::DiagKind::kWarpCollective, std::string(op) + " needs all 32 lanes of the warp", false);
  auto row_of = [&](int j, unsigned rr) -> const unsigned char* {
    const auto* p = *static_cast<const unsigned char* const*>(view.slot(unsigned(j) * 8 + rr));
    return simt::device::is_shared(p, 16) ? p : nullptr;
  };
  for (int j = 0; j < kNum; ++j) {
    if (!kTrans) {
      const unsigned char* p = row_of(j, lane / 4);
      r[j] = p ? *reinterpret_cast<const u32_alias*>(p + (lane % 4) * 4) : 0xffffffffu;
    } else {
      const unsigned char* p0 = row_of(j, (lane % 4) * 2);
      const unsigned char* p1 = row_of(j, (lane % 4) * 2 + 1);
      const uint32_t lo = p0 ? *reinterpret_cast<const u16_alias*>(p0 + (lane / 4) * 2) : 0xffffu;
      const uint32_t hi = p1 ? *reinterpret_cast<const u16_alias*>(p1 + (lane / 4) * 2) : 0xffffu;
      r[j] = lo | (hi << 16);
    }
  }
  simt::device::warp_release(op, 0xffffffffu);
}

}  // namespace arch_detail

inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  arch_detail::mma_emulate<16>("mma.m16n8k16.bf16", d, a, b, c);
}
inline void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  arch_detail::mma_emulate<32>("mma.m16n8k32.e4m3", d, a, b, c);
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) { arch_detail::ldmatrix_emulate<4, false>(r, row); }
inline void ldmatrix_x2(uint32_t (&r)[2], const void* row) { arch_detail::ldmatrix_emulate<2, false>(r, row); }
inline void ldmatrix_x1(uint32_t (&r)[1], const void* row) { arch_detail::ldmatrix_emulate<1, false>(r, row); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) { arch_detail::ldmatrix_emulate<4, true>(r, row); }
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) { arch_detail::ldmatrix_emulate<2, true>(r, row); }
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) { arch_detail::ldmatrix_emulate<1, true>(r, row); }

// note: the copy lands at the cp_async_wait that covers it (not at issue), so a missing wait shows up
// as a read of uninitialized shared memory.
template <class P>
inline void cp_async_16(void* smem, P gmem) {
  simt::device::cp_async(smem, raw_range(gmem, 16), 16, 16);
}
template <class P>
inline void cp_async_16_zfill(void* smem, P gmem, bool valid) {
  simt::device::cp_async(smem, valid ? static_cast<const void*>(raw_range(gmem, 16)) : nullptr, 16, valid ? 16 : 0);
}
inline void cp_async_commit() { simt::device::cp_async_commit(); }
template <int N>
inline void cp_async_wait() {
  simt::device::cp_async_wait(N);
}
inline void cp_async_wait_all() { simt::device::cp_async_wait(-1); }

#endif

}  // namespace infer
