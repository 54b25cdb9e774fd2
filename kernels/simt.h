// simt.h — the portability layer that lets one kernel source build with nvcc and run on the CPU.
//
// Under nvcc (__CUDACC__) it only includes the CUDA headers and defines the few helpers that both
// builds share (dev_ptr, infer_dynamic_smem). Under the host compiler with -DINFER_SIMT it supplies
// the CUDA built-ins on top of the SIMT emulator (src/simt/runtime.h): threadIdx & co. as per-fiber
// state, __shared__ as `static thread_local` (one OS thread runs one block at a time), barriers, warp
// collectives, atomics and fast-math intrinsics. docs/simt.md says how to write a kernel for both.
//
// Rules for kernels (the emulator cannot check these at compile time):
//   - dynamic shared memory only through infer_dynamic_smem<T>() (no `extern __shared__`);
//   - global buffers as infer::dev_ptr<T> kernel parameters (bounds-checked here, raw pointers on the GPU);
//   - arch-specific paths chosen by a template or run-time parameter, not only by __CUDA_ARCH__
//     (undefined here), so that the emulator runs each of them;
//   - no memcpy/memset on shared memory in kernel code: plain loads and stores are what is tracked.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
// ======================================================================== nvcc

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#define INFER_SIMT_NOINSTR

namespace infer {

// A global-memory pointer kernel parameter: a raw pointer on the GPU, a bounds-checked one in the emulator.
template <class T>
using dev_ptr = T*;

// Wraps a device buffer of `count` elements for a kernel argument.
template <class T>
__host__ __device__ __forceinline__ T* make_dev_ptr(T* p, size_t count) {
  (void)count;
  return p;
}
// Reinterprets a dev_ptr (e.g. for 16-byte vector loads); the emulator keeps the byte bounds.
template <class U, class T>
__host__ __device__ __forceinline__ U* dev_ptr_cast(T* p) {
  return reinterpret_cast<U*>(p);
}
// The raw pointer (no check).
template <class T>
__host__ __device__ __forceinline__ T* raw(T* p) {
  return p;
}
// The raw pointer after checking that [p, p + bytes) is inside the buffer (emulator only).
template <class T>
__host__ __device__ __forceinline__ T* raw_range(T* p, size_t bytes) {
  (void)bytes;
  return p;
}

}  // namespace infer

// The block's dynamic shared memory (the launch's smem_bytes), 16-byte aligned.
template <class T>
__device__ __forceinline__ T* infer_dynamic_smem() {
  extern __shared__ __align__(16) unsigned char infer_dynamic_smem_[];
  return reinterpret_cast<T*>(infer_dynamic_smem_);
}

#elif defined(INFER_SIMT)
// ======================================================================== host compiler + emulator

#include <cuda_bf16.h>  // host implementations of the bf16/f16/fp8 types and conversions
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "../src/simt/runtime.h"

// The CUDA headers define these as annotations for the host compiler; we give them emulator meanings.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __managed__
#undef __grid_constant__
#undef __launch_bounds__
#undef __forceinline__
#undef __noinline__
#define __global__
#define __device__
#define __host__
#define __shared__ static thread_local
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#ifndef __restrict__
#define __restrict__ __restrict
#endif

// Functions whose memory accesses must not be reported as the kernel's (atomics). Such functions
// cannot be always_inline (GCC refuses to inline across sanitizer attributes).
#define INFER_SIMT_NOINSTR __attribute__((no_sanitize_address))

#define threadIdx (::infer::simt::device::thread_idx())
#define blockIdx (::infer::simt::device::block_idx())
#define blockDim (::infer::simt::device::block_dim())
#define gridDim (::infer::simt::device::grid_dim())
static constexpr int warpSize = 32;

// ------------------------------------------------------------------ checked global pointers

namespace infer {

template <class T>
class dev_ptr {
 public:
  using element_type = T;

  dev_ptr() = default;
  dev_ptr(std::nullptr_t) {}
  // A pointer to a buffer of `count` elements (the bounds).
  dev_ptr(T* p, size_t count) : p_(p), lo_(reinterpret_cast<const unsigned char*>(p)), bytes_(count * sizeof(T)) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
  dev_ptr(const dev_ptr<U>& o) : p_(o.p_), lo_(o.lo_), bytes_(o.bytes_) {}

  // note: always_inline, so that a bounds report names the kernel's code address
  // (the address is formed as an integer: a null table entry read by a buggy kernel is reported, not UB)
  __attribute__((always_inline)) T& operator[](std::ptrdiff_t i) const {
    return *check(offset(p_, i), sizeof(T));
  }
  __attribute__((always_inline)) T& operator*() const { return *check(p_, sizeof(T)); }
  __attribute__((always_inline)) T* operator->() const { return check(p_, sizeof(T)); }
  dev_ptr operator+(std::ptrdiff_t i) const { return with(offset(p_, i)); }
  dev_ptr operator-(std::ptrdiff_t i) const { return with(offset(p_, -i)); }
  std::ptrdiff_t operator-(const dev_ptr& o) const { return p_ - o.p_; }
  dev_ptr& operator+=(std::ptrdiff_t i) { p_ = offset(p_, i); return *this; }
  dev_ptr& operator-=(std::ptrdiff_t i) { p_ = offset(p_, -i); return *this; }
  dev_ptr& operator++() { p_ = offset(p_, 1); return *this; }
  dev_ptr& operator--() { p_ = offset(p_, -1); return *this; }
  dev_ptr operator++(int) { dev_ptr r = *this; p_ = offset(p_, 1); return r; }
  dev_ptr operator--(int) { dev_ptr r = *this; p_ = offset(p_, -1); return r; }
  explicit operator bool() const { return p_ != nullptr; }
  bool operator==(const dev_ptr& o) const { return p_ == o.p_; }
  bool operator==(std::nullptr_t) const { return p_ == nullptr; }

  // [p, p + bytes) inside the buffer and aligned for T, else a fatal out-of-bounds/misaligned report.
  __attribute__((always_inline)) T* check(T* q, size_t bytes) const {
    const auto b = reinterpret_cast<uintptr_t>(q), lo = reinterpret_cast<uintptr_t>(lo_);
    if (!lo_ || b < lo || b + bytes > lo + bytes_)
      ::infer::simt::device::out_of_bounds(lo_, bytes_, reinterpret_cast<const unsigned char*>(q), bytes);
    if (reinterpret_cast<uintptr_t>(q) % alignof(T))
      ::infer::simt::device::report(::infer::simt::DiagKind::kMisaligned,
                                    "misaligned access of " + std::to_string(sizeof(T)) + "-byte element", true);
    return q;
  }
  T* unchecked() const { return p_; }

 private:
  // p + i formed as an integer (a kernel may offset a null or stray pointer; the access is what gets reported).
  static T* offset(T* p, std::ptrdiff_t i) {
    return reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(p) + uintptr_t(i) * sizeof(T));
  }
  template <class U>
  friend class dev_ptr;
  template <class U, class V>
  friend dev_ptr<U> dev_ptr_cast(dev_ptr<V> p);
  dev_ptr with(T* q) const {
    dev_ptr r = *this;
    r.p_ = q;
    return r;
  }

  T* p_ = nullptr;
  const unsigned char* lo_ = nullptr;
  size_t bytes_ = 0;
};

template <class T>
inline dev_ptr<T> make_dev_ptr(T* p, size_t count) {
  return dev_ptr<T>(p, count);
}
template <class U, class T>
inline dev_ptr<U> dev_ptr_cast(dev_ptr<T> p) {
  dev_ptr<U> r;
  r.p_ = reinterpret_cast<U*>(p.p_);
  r.lo_ = p.lo_;
  r.bytes_ = p.bytes_;
  return r;
}
template <class T>
inline T* raw(dev_ptr<T> p) {
  return p.unchecked();
}
template <class T>
inline T* raw(T* p) {
  return p;
}
template <class T>
inline T* raw_range(dev_ptr<T> p, size_t bytes) {
  return p.check(p.unchecked(), bytes);
}
template <class T>
inline T* raw_range(T* p, size_t bytes) {
  (void)bytes;
  return p;
}

}  // namespace infer

template <class T>
inline T* infer_dynamic_smem() {
  return static_cast<T*>(::infer::simt::device::dynamic_smem());
}

// ------------------------------------------------------------------ barriers and warp collectives

inline void __syncthreads(::infer::simt::device::SourceLoc loc = ::infer::simt::device::SourceLoc::current()) {
  ::infer::simt::device::syncthreads(0, 0, loc);
}
inline int __syncthreads_count(int pred, ::infer::simt::device::SourceLoc loc = ::infer::simt::device::SourceLoc::current()) {
  return ::infer::simt::device::syncthreads(1, pred, loc);
}
inline int __syncthreads_and(int pred, ::infer::simt::device::SourceLoc loc = ::infer::simt::device::SourceLoc::current()) {
  return ::infer::simt::device::syncthreads(2, pred, loc);
}
inline int __syncthreads_or(int pred, ::infer::simt::device::SourceLoc loc = ::infer::simt::device::SourceLoc::current()) {
  return ::infer::simt::device::syncthreads(3, pred, loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::infer::simt::device::warp_sync(mask); }
inline unsigned __activemask() { return ::infer::simt::device::active_mask(); }

namespace infer::simt::device {

enum class ShflKind { kIdx, kUp, kDown, kXor };

// One shuffle: deposit, warp barrier, read the source lane's slot, warp barrier.
template <class T>
T shfl(const char* op, ShflKind kind, unsigned mask, T var, int arg, int width) {
  // note: __half2/__nv_bfloat162 have user-provided copy assignment, so "trivially destructible
  // standard-layout" is the check; the values are moved as bytes.
  static_assert(std::is_trivially_destructible_v<T> && std::is_standard_layout_v<T> && sizeof(T) <= kWarpSlotBytes);
  const WarpView view = warp_gather(op, mask, &var, sizeof(T));
  const int lane = int(::infer::simt::device::lane());
  if (width < 1 || width > 32 || (width & (width - 1))) {
    report(DiagKind::kWarpCollective, std::string(op) + ": width " + std::to_string(width) + " is not a power of two <= 32", false);
    width = 32;
  }
  const int seg = lane & ~(width - 1);
  int src = lane;
  switch (kind) {
    case ShflKind::kIdx: src = seg + (arg & (width - 1)); break;
    case ShflKind::kUp: src = lane - arg >= seg ? lane - arg : lane; break;
    case ShflKind::kDown: src = lane + arg < seg + width ? lane + arg : lane; break;
    case ShflKind::kXor: src = (lane ^ arg) < seg + width ? (lane ^ arg) : lane; break;
  }
  T out = var;
  if (src != lane) {
    if (view.has(unsigned(src))) {
      std::memcpy(static_cast<void*>(&out), view.slot(unsigned(src)), sizeof(T));
    } else {
      report(DiagKind::kWarpCollective, std::string(op) + ": lane " + std::to_string(lane) + " reads lane " +
                                            std::to_string(src) + ", which does not take part (mask or exited)", false);
      std::memset(static_cast<void*>(&out), 0xff, sizeof(T));  // undefined on the GPU: poison
    }
  }
  warp_release(op, mask);
  return out;
}

// Ballot-like collectives: every participant's predicate.
inline unsigned vote(const char* op, unsigned mask, int pred, unsigned* participants) {
  const int p = pred != 0;
  const WarpView view = warp_gather(op, mask, &p, sizeof p);
  unsigned bits = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (view.has(l) && *static_cast<const int*>(view.slot(l))) bits |= 1u << l;
  *participants = view.participants;
  warp_release(op, mask);
  return bits;
}

template <class T, class Op>
T warp_reduce(const char* op, unsigned mask, T value, Op f) {
  const WarpView view = warp_gather(op, mask, &value, sizeof value);
  bool first = true;
  T r = value;
  for (unsigned l = 0; l < 32; ++l)
    if (view.has(l)) {
      T v;
      std::memcpy(&v, view.slot(l), sizeof v);
      r = first ? v : f(r, v);
      first = false;
    }
  warp_release(op, mask);
  return r;
}

}  // namespace infer::simt::device

// CUDA's overload sets (not templates), so that argument conversions resolve as they do under nvcc.
#define INFER_SIMT_SHFL(T)                                                                             \
  inline T __shfl_sync(unsigned mask, T var, int src, int width = warpSize) {                         \
    return ::infer::simt::device::shfl<T>("__shfl_sync", ::infer::simt::device::ShflKind::kIdx, mask, \
                                          var, src, width);                                            \
  }                                                                                                    \
  inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {               \
    return ::infer::simt::device::shfl<T>("__shfl_up_sync", ::infer::simt::device::ShflKind::kUp,     \
                                          mask, var, int(delta), width);                               \
  }                                                                                                    \
  inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {             \
    return ::infer::simt::device::shfl<T>("__shfl_down_sync", ::infer::simt::device::ShflKind::kDown, \
                                          mask, var, int(delta), width);                               \
  }                                                                                                    \
  inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {               \
    return ::infer::simt::device::shfl<T>("__shfl_xor_sync", ::infer::simt::device::ShflKind::kXor,   \
                                          mask, var, lane_mask, width);                                \
  }
INFER_SIMT_SHFL(int)
INFER_SIMT_SHFL(unsigned int)
INFER_SIMT_SHFL(long)
INFER_SIMT_SHFL(unsigned long)
INFER_SIMT_SHFL(long long)
INFER_SIMT_SHFL(unsigned long long)
INFER_SIMT_SHFL(float)
INFER_SIMT_SHFL(double)
INFER_SIMT_SHFL(__half)
INFER_SIMT_SHFL(__half2)
INFER_SIMT_SHFL(__nv_bfloat16)
INFER_SIMT_SHFL(__nv_bfloat162)
#undef INFER_SIMT_SHFL

inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned parts;
  return ::infer::simt::device::vote("__ballot_sync", mask, pred, &parts);
}
inline int __any_sync(unsigned mask, int pred) {
  unsigned parts;
  return ::infer::simt::device::vote("__any_sync", mask, pred, &parts) != 0;
}
inline int __all_sync(unsigned mask, int pred) {
  unsigned parts;
  const unsigned bits = ::infer::simt::device::vote("__all_sync", mask, pred, &parts);
  return bits == parts;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
  return ::infer::simt::device::warp_reduce("__reduce_add_sync", mask, v, [](unsigned a, unsigned b) { return a + b; });
}
inline int __reduce_add_sync(unsigned mask, int v) {
  return int(__reduce_add_sync(mask, unsigned(v)));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
  return ::infer::simt::device::warp_reduce("__reduce_min_sync", mask, v, [](unsigned a, unsigned b) { return std::min(a, b); });
}
inline int __reduce_min_sync(unsigned mask, int v) {
  return ::infer::simt::device::warp_reduce("__reduce_min_sync", mask, v, [](int a, int b) { return std::min(a, b); });
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
  return ::infer::simt::device::warp_reduce("__reduce_max_sync", mask, v, [](unsigned a, unsigned b) { return std::max(a, b); });
}
inline int __reduce_max_sync(unsigned mask, int v) {
  return ::infer::simt::device::warp_reduce("__reduce_max_sync", mask, v, [](int a, int b) { return std::max(a, b); });
}

// ------------------------------------------------------------------ atomics (relaxed, as on the GPU)
//
// note: done with the __atomic builtins inside non-instrumented functions (an out-of-line, instrumented
// std::atomic_ref member would show up as plain accesses and every concurrent update as a race);
// note_atomic tells the tracker instead.

namespace infer::simt::device {

template <class T, class F>
INFER_SIMT_NOINSTR inline T atomic_update(T* p, F f, const void* pc) {
  note_atomic(p, sizeof(T), pc);
  T old;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  T desired;
  do {
    desired = f(old);
  } while (!__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}

}  // namespace infer::simt::device

#define INFER_SIMT_PC __builtin_return_address(0)
#define INFER_SIMT_ATOMIC_BUILTIN(name, T, builtin)                                         \
  INFER_SIMT_NOINSTR inline T name(T* p, T v) {                                             \
    ::infer::simt::device::note_atomic(p, sizeof(T), INFER_SIMT_PC);                        \
    return builtin(p, v, __ATOMIC_RELAXED);                                                 \
  }
#define INFER_SIMT_ATOMIC_CAS_LOOP(name, T, expr)                                                     \
  INFER_SIMT_NOINSTR inline T name(T* p, T v) {                                                       \
    return ::infer::simt::device::atomic_update(p, [v](T old) -> T { return expr; }, INFER_SIMT_PC); \
  }

INFER_SIMT_ATOMIC_BUILTIN(atomicAdd, int, __atomic_fetch_add)
INFER_SIMT_ATOMIC_BUILTIN(atomicAdd, unsigned int, __atomic_fetch_add)
INFER_SIMT_ATOMIC_BUILTIN(atomicAdd, unsigned long long, __atomic_fetch_add)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicAdd, float, old + v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicAdd, double, old + v)
INFER_SIMT_ATOMIC_BUILTIN(atomicSub, int, __atomic_fetch_sub)
INFER_SIMT_ATOMIC_BUILTIN(atomicSub, unsigned int, __atomic_fetch_sub)
INFER_SIMT_ATOMIC_BUILTIN(atomicExch, int, __atomic_exchange_n)
INFER_SIMT_ATOMIC_BUILTIN(atomicExch, unsigned int, __atomic_exchange_n)
INFER_SIMT_ATOMIC_BUILTIN(atomicExch, unsigned long long, __atomic_exchange_n)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicExch, float, ((void)old, v))
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMin, int, old < v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMin, unsigned int, old < v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMin, long long, old < v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMin, unsigned long long, old < v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMax, int, old > v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMax, unsigned int, old > v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMax, long long, old > v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicMax, unsigned long long, old > v ? old : v)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicInc, unsigned int, old >= v ? 0u : old + 1)
INFER_SIMT_ATOMIC_CAS_LOOP(atomicDec, unsigned int, (old == 0 || old > v) ? v : old - 1)
INFER_SIMT_ATOMIC_BUILTIN(atomicAnd, int, __atomic_fetch_and)
INFER_SIMT_ATOMIC_BUILTIN(atomicAnd, unsigned int, __atomic_fetch_and)
INFER_SIMT_ATOMIC_BUILTIN(atomicAnd, unsigned long long, __atomic_fetch_and)
INFER_SIMT_ATOMIC_BUILTIN(atomicOr, int, __atomic_fetch_or)
INFER_SIMT_ATOMIC_BUILTIN(atomicOr, unsigned int, __atomic_fetch_or)
INFER_SIMT_ATOMIC_BUILTIN(atomicOr, unsigned long long, __atomic_fetch_or)
INFER_SIMT_ATOMIC_BUILTIN(atomicXor, int, __atomic_fetch_xor)
INFER_SIMT_ATOMIC_BUILTIN(atomicXor, unsigned int, __atomic_fetch_xor)
INFER_SIMT_ATOMIC_BUILTIN(atomicXor, unsigned long long, __atomic_fetch_xor)
#undef INFER_SIMT_ATOMIC_BUILTIN
#undef INFER_SIMT_ATOMIC_CAS_LOOP

#define INFER_SIMT_ATOMIC_CAS(T)                                                                 \
  INFER_SIMT_NOINSTR inline T atomicCAS(T* p, T compare, T val) {                                \
    ::infer::simt::device::note_atomic(p, sizeof(T), INFER_SIMT_PC);                             \
    __atomic_compare_exchange_n(p, &compare, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);    \
    return compare; /* the old value either way */                                              \
  }
INFER_SIMT_ATOMIC_CAS(int)
INFER_SIMT_ATOMIC_CAS(unsigned int)
INFER_SIMT_ATOMIC_CAS(unsigned long long)
INFER_SIMT_ATOMIC_CAS(unsigned short)
#undef INFER_SIMT_ATOMIC_CAS
#undef INFER_SIMT_PC

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) {}
inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
[[noreturn]] inline void __trap() {
  ::infer::simt::device::report(::infer::simt::DiagKind::kKernelException, "__trap()", true);
  __builtin_unreachable();
}

// ------------------------------------------------------------------ loads, math and bit intrinsics
// note: the fast-math intrinsics compute the precise function here; compare with tolerances that
// cover the GPU's approximations.

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcs(const T* p) {
  return *p;
}
template <class T>
inline void __stcg(T* p, T v) {
  *p = v;
}
template <class T>
inline void __stcs(T* p, T v) {
  *p = v;
}

inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline int __float2int_rn(float x) { return int(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return int(x); }
inline int __float2int_rd(float x) { return int(std::floor(x)); }
inline int __float2int_ru(float x) { return int(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return unsigned(std::nearbyint(x)); }
inline float __int2float_rn(int x) { return float(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }

inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(unsigned(x)); }
inline int __clzll(long long x) { return std::countl_zero((unsigned long long)x); }
inline int __ffs(int x) { return x ? std::countr_zero(unsigned(x)) + 1 : 0; }
inline int __ffsll(long long x) { return x ? std::countr_zero((unsigned long long)x) + 1 : 0; }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}
inline int __mul24(int a, int b) { return int(int64_t(a << 8 >> 8) * (b << 8 >> 8)); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t v = (uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= unsigned((v >> (((s >> (4 * i)) & 7u) * 8)) & 0xffu) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const uint64_t v = (uint64_t(hi) << 32) | lo;
  return unsigned((v << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const uint64_t v = (uint64_t(hi) << 32) | lo;
  return unsigned(v >> (shift & 31));
}

// CUDA's device min/max overloads.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(int a, unsigned b) { return min(unsigned(a), b); }
inline unsigned max(int a, unsigned b) { return max(unsigned(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, unsigned(b)); }
inline unsigned max(unsigned a, int b) { return max(a, unsigned(b)); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(double(a), b); }
inline double max(float a, double b) { return std::fmax(double(a), b); }
inline double min(double a, float b) { return std::fmin(a, double(b)); }
inline double max(double a, float b) { return std::fmax(a, double(b)); }

#else
#error "kernels/simt.h: compile with nvcc, or with the host compiler and -DINFER_SIMT (the SIMT emulator)"
#endif
