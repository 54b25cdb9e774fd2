// tracking.cpp — sees every load and store of the kernel code and checks shared-memory use.
//
// cmake/simt.cmake compiles kernels/*.cu with -fsanitize=kernel-address and outline instrumentation
// (asan-instrumentation-with-call-threshold=0): the compiler then calls __asan_load4_noabort(addr),
// __asan_store8_noabort(addr), … before each access, and expects the program (like an OS kernel) to
// supply them. We do, here; there is no AddressSanitizer runtime involved. An access is classified by
// address:
//   - inside this OS thread's TLS block of the module: a static __shared__ variable (they are
//     `static thread_local`; the runtime keeps its own state off TLS, see internal.h);
//   - inside the worker's dynamic shared-memory buffer, or its redzones (out of bounds);
//   - anything else is global or local memory: only stores into expect_written outputs are noted.
// For shared memory each byte keeps its last write and last two reads (ByteMeta). Two accesses by
// different threads in the same barrier interval, at least one a write, neither ordered by a
// __syncwarp that both took part in, are a race; atomics race only with plain accesses. A read of a
// byte no thread of the block has written is an uninitialized read.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "internal.h"

#ifndef INFER_SIMT_TRACKING
#define INFER_SIMT_TRACKING 0
#endif

namespace infer::simt {

bool access_tracking_enabled() { return INFER_SIMT_TRACKING != 0; }

namespace detail {

namespace {

constexpr size_t kRedzone = 4096;

void* map_zero(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("simt: cannot map shared-memory metadata");
  return p;
}

void map_meta(Region& r, size_t bytes) {
  if (r.meta) munmap(r.meta, r.meta_bytes);
  r.meta_bytes = bytes * sizeof(ByteMeta);
  r.meta = static_cast<ByteMeta*>(map_zero(r.meta_bytes));
}

// Whether `prev` (by another or the same thread) happens before the current access of thread t.
bool ordered(const Worker& w, const Thread& t, const Access& prev, bool atomic) {
  if (prev.epoch != w.epoch) return true;  // a barrier in between (or another block)
  if (prev.tid == kAtomicTid) return atomic;
  if (prev.tid == t.linear) return true;
  if (prev.tid / 32 != t.warp) return false;
  const unsigned both = (1u << (prev.tid % 32)) | (1u << t.lane);
  const auto& sm = w.warps[t.warp].sync_masks;
  for (size_t i = prev.ws; i < sm.size(); ++i)
    if ((sm[i] & both) == both) return true;
  return false;
}

std::string who(const Worker& w, uint16_t tid) {
  if (tid == kAtomicTid) return "an atomic";
  const dim3& b = w.launch->cfg.block;
  char buf[64];
  std::snprintf(buf, sizeof buf, "thread (%u,%u,%u)", tid % b.x, (tid / b.x) % b.y, tid / (b.x * b.y));
  return buf;
}

std::string what(const Worker& w, const Region* r, size_t off) {
  if (r == &w.tls) return "__shared__ " + tls_variable(off);
  return "dynamic shared memory +" + std::to_string(off);
}

bool wants_message(LaunchState& ls, DiagKind k) {
  std::lock_guard lk(ls.mu);
  if (ls.kept_per_kind[int(k)] < 8) return true;
  ++ls.counts[int(k)];
  return false;
}

void mark_outputs(Worker& w, uintptr_t a, size_t n) {
  for (Output& o : w.launch->outputs) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(o.p), hi = lo + o.count * o.elem;
    if (!o.written || a + n <= lo || a >= hi) continue;
    const uintptr_t s = std::max(a, lo), e = std::min(a + n, hi);
    for (uintptr_t i = s; i < e; ++i) o.written[i - lo].store(1, std::memory_order_relaxed);
  }
}

}  // namespace

void init_tracking(Worker& w) {
  uintptr_t lo = 0;
  size_t size = 0;
  if (tls_block(&lo, &size)) {  // needed without tracking too: is_shared()
    w.tls.lo = lo;
    w.tls.size = size;
    if (INFER_SIMT_TRACKING) map_meta(w.tls, size);
  }
}

void prepare_dyn_smem(Worker& w, size_t bytes) {
  const size_t cap = w.dyn_buf ? w.dyn_buf_bytes - 2 * kRedzone : 0;
  if (!w.dyn_buf || bytes > cap) {
    if (w.dyn_buf) munmap(w.dyn_buf, w.dyn_buf_bytes);
    const size_t new_cap = std::max<size_t>(64 * 1024, (bytes + 4095) & ~size_t(4095));
    w.dyn_buf_bytes = new_cap + 2 * kRedzone;
    w.dyn_buf = static_cast<unsigned char*>(map_zero(w.dyn_buf_bytes));
    w.dyn.lo = reinterpret_cast<uintptr_t>(w.dyn_buf + kRedzone);
    if (INFER_SIMT_TRACKING) map_meta(w.dyn, new_cap);
  }
  w.dyn.size = bytes;
}

void poison_dyn_smem(Worker& w) {
  if (w.dyn.size) std::memset(reinterpret_cast<void*>(w.dyn.lo), 0xff, w.dyn.size);
}

void track(Worker& w, uintptr_t a, size_t n, bool write, bool atomic, const void* pc) {
  Region* r = nullptr;
  if (a - w.tls.lo < w.tls.size) {
    r = &w.tls;
  } else if (a - w.dyn.lo < w.dyn.size) {
    r = &w.dyn;
  } else if (w.dyn_buf && a + n > reinterpret_cast<uintptr_t>(w.dyn_buf) &&
             a < reinterpret_cast<uintptr_t>(w.dyn_buf) + w.dyn_buf_bytes) {
    if (wants_message(*w.launch, DiagKind::kOutOfBounds)) {
      char buf[200];
      std::snprintf(buf, sizeof buf, ": %s of %zu bytes at dynamic shared memory %+lld, outside the %zu bytes the launch asked for (at %s)",
                    write ? "write" : "read", n, static_cast<long long>(a - w.dyn.lo), w.dyn.size, symbolize(pc).c_str());
      report(w, DiagKind::kOutOfBounds, w.where() + buf);
    }
    return;
  } else {
    if (write && !w.launch->outputs.empty()) mark_outputs(w, a, n);
    return;
  }
  if (!r->meta || !w.current) return;
  const Thread& t = *w.current;
  const size_t off = a - r->lo;
  const size_t end = std::min(off + n, r->size);
  const uint16_t ws = uint16_t(std::min<size_t>(w.warps[t.warp].sync_masks.size(), 0xffff));
  const bool reads = !write || atomic;
  bool uninit = false;
  const Access* conflict = nullptr;
  bool conflict_was_write = false;
  for (size_t i = off; i < end; ++i) {
    ByteMeta& m = r->meta[i];
    if (reads && m.w.epoch < w.block_epoch) uninit = true;
    if (!conflict) {
      if (m.w.epoch >= w.block_epoch && !ordered(w, t, m.w, atomic)) {
        conflict = &m.w;
        conflict_was_write = true;
      } else if (write) {
        if (!ordered(w, t, m.r1, atomic))
          conflict = &m.r1;
        else if (!ordered(w, t, m.r2, atomic))
          conflict = &m.r2;
      }
      if (conflict) {
        // Report now, while the record still names the other thread.
        if (wants_message(*w.launch, DiagKind::kRace)) {
          const char* verb = atomic ? "atomically updates" : write ? "writes" : "reads";
          std::string msg = w.where() + ": shared-memory race: " + who(w, uint16_t(t.linear)) + " " + verb + " " +
                            std::to_string(n) + " bytes of " + what(w, r, i) + " that " + who(w, conflict->tid) +
                            (conflict_was_write ? " wrote" : " read") +
                            " in the same barrier interval (no __syncthreads or __syncwarp between them), at " +
                            (pc ? symbolize(pc) : std::string("cp.async"));
          report(w, DiagKind::kRace, std::move(msg));
        }
      }
    }
    if (write) {
      m.w = Access{w.epoch, atomic ? kAtomicTid : uint16_t(t.linear), ws};
    } else {
      if (m.r1.epoch == w.epoch && m.r1.tid == t.linear) {
        m.r1.ws = ws;
      } else {
        if (m.r1.epoch == w.epoch) m.r2 = m.r1;
        m.r1 = Access{w.epoch, uint16_t(t.linear), ws};
      }
    }
  }
  if (uninit && wants_message(*w.launch, DiagKind::kUninitializedRead)) {
    std::string msg = w.where() + ": read of " + std::to_string(n) + " bytes of " + what(w, r, off) +
                      " that no thread of this block has written, at " + (pc ? symbolize(pc) : std::string("?"));
    report(w, DiagKind::kUninitializedRead, std::move(msg));
  }
}

void apply_copy(Worker& w, const PendingCopy& c) {
  track(w, reinterpret_cast<uintptr_t>(c.dst), c.bytes, true, false, nullptr);
  std::memcpy(c.dst, c.data, c.bytes);
}

}  // namespace detail
}  // namespace infer::simt

// ---- the instrumentation callbacks (absent from AddressSanitizer builds, whose runtime has its own)

#if INFER_SIMT_TRACKING && !defined(__SANITIZE_ADDRESS__)

namespace {

inline void on_access(uintptr_t a, size_t n, bool write, const void* pc) {
  using namespace infer::simt::detail;
  Worker* w = t_worker;
  if (!w || !w->in_kernel) return;
  if (--w->watchdog_countdown == 0) watchdog_from_kernel(*w);
  w->in_kernel = false;
  track(*w, a, n, write, false, pc);
  w->in_kernel = true;
}

}  // namespace

#define INFER_SIMT_HOOKS(N)                                                                             \
  void __asan_load##N##_noabort(uintptr_t a) { on_access(a, N, false, __builtin_return_address(0)); }  \
  void __asan_store##N##_noabort(uintptr_t a) { on_access(a, N, true, __builtin_return_address(0)); }  \
  void __asan_load##N(uintptr_t a) { on_access(a, N, false, __builtin_return_address(0)); }            \
  void __asan_store##N(uintptr_t a) { on_access(a, N, true, __builtin_return_address(0)); }

extern "C" {
INFER_SIMT_HOOKS(1)
INFER_SIMT_HOOKS(2)
INFER_SIMT_HOOKS(4)
INFER_SIMT_HOOKS(8)
INFER_SIMT_HOOKS(16)
void __asan_loadN_noabort(uintptr_t a, size_t n) { on_access(a, n, false, __builtin_return_address(0)); }
void __asan_storeN_noabort(uintptr_t a, size_t n) { on_access(a, n, true, __builtin_return_address(0)); }
void __asan_loadN(uintptr_t a, size_t n) { on_access(a, n, false, __builtin_return_address(0)); }
void __asan_storeN(uintptr_t a, size_t n) { on_access(a, n, true, __builtin_return_address(0)); }
void __asan_handle_no_return() {}
void __asan_register_globals(void*, size_t) {}
void __asan_unregister_globals(void*, size_t) {}
void __asan_before_dynamic_init(const char*) {}
void __asan_after_dynamic_init() {}
}

#endif
