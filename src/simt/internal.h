// internal.h — state shared by the emulator's sources (runtime.cpp, tracking.cpp, symbols.cpp).
// Nothing here is used by kernels or tests.
#pragma once
#include <ucontext.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "runtime.h"

namespace infer::simt::detail {

// Thrown inside a fiber to unwind it when its block is aborted (fatal diagnostic); caught in fiber_main.
struct BlockAbort {};

// ---- shared-memory access tracking (tracking.cpp)

// One access to a shared-memory byte: the barrier epoch it happened in (0 = none), the thread, and how
// many __syncwarp had completed in that thread's warp since the last barrier (for warp-level ordering).
struct Access {
  uint32_t epoch = 0;
  uint16_t tid = 0;
  uint16_t ws = 0;
};
// Per byte of shared memory: the last write and the last two reads by distinct threads.
struct ByteMeta {
  Access w, r1, r2;
};
constexpr uint16_t kAtomicTid = 0xffff;  // the "writer" of a byte last updated by an atomic

// A range of shared memory with its metadata (one ByteMeta per byte).
struct Region {
  uintptr_t lo = 0;
  size_t size = 0;
  ByteMeta* meta = nullptr;
  size_t meta_bytes = 0;  // mapping size
};

// An expect_written buffer of one launch.
struct Output {
  unsigned char* p = nullptr;
  size_t count = 0, elem = 0;
  std::string name;
  std::unique_ptr<std::atomic<uint8_t>[]> written;  // per byte, when tracking is on
};

// ---- fibers and blocks (runtime.cpp)

enum class FiberState : uint8_t { kNew, kRunnable, kRunning, kBarrier, kWarp, kDone };

struct PendingCopy {
  unsigned char* dst;
  size_t bytes;
  unsigned char data[16];
};

struct Thread {
  uint3 tid{};
  unsigned linear = 0, warp = 0, lane = 0;
  FiberState state = FiberState::kNew;
  bool started = false;
  ucontext_t uc{};
  unsigned char* stack = nullptr;  // usable stack (above the guard page)
  size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  // what it waits for
  const char* op = nullptr;  // warp collective name
  unsigned mask = 0;
  uint8_t phase = 0;  // 0 gather, 1 release, 2 __syncwarp
  int bar_op = 0, pred = 0;
  device::SourceLoc loc;
  unsigned participants = 0;  // of its last completed warp gather
  // cp.async copies not yet waited for, and the end index of each committed group
  std::vector<PendingCopy> copies;
  std::vector<size_t> group_ends;
};

struct Warp {
  unsigned exist = 0, done = 0;
  std::vector<unsigned> sync_masks;  // participants of each __syncwarp since the last barrier
  alignas(16) unsigned char slots[32 * device::kWarpSlotBytes];
};

struct LaunchState {
  LaunchConfig cfg{};
  KernelThunk body = nullptr;
  void* ctx = nullptr;
  std::string kernel;
  Schedule sched;
  unsigned threads_per_block = 0;
  uint64_t blocks = 0;
  double block_timeout = 120.0;
  std::vector<uint64_t> order;  // block visiting order
  std::atomic<uint64_t> next{0};
  std::atomic<bool> abort{false};
  std::vector<Output> outputs;

  std::mutex mu;
  std::vector<Diagnostic> kept;
  size_t counts[kDiagKindCount] = {};
  size_t kept_per_kind[kDiagKindCount] = {};

  void add(DiagKind kind, std::string message);
};

struct Worker {
  ucontext_t sched_uc{};
  void* sched_fake_stack = nullptr;
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;

  LaunchState* launch = nullptr;
  Thread* current = nullptr;  // the running fiber
  bool in_kernel = false;     // kernel code (not the runtime) is running: track its accesses
  bool aborting = false;

  uint3 block_idx{};
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  unsigned nthreads = 0, live = 0;
  std::vector<uint64_t> runnable;  // bitset over threads
  std::mt19937_64 rng;
  int bar_count = 0, bar_total = 0;
  bool reported_exit_divergence = false, reported_loc_divergence = false;

  std::vector<unsigned char*> stacks;  // fiber stacks, reused across blocks
  size_t stack_size = 0;

  Region tls;   // static __shared__ (this OS thread's TLS block of the module)
  Region dyn;   // dynamic shared memory
  unsigned char* dyn_buf = nullptr;
  size_t dyn_buf_bytes = 0;
  uint32_t epoch = 0;        // bumped at each block start and each barrier
  uint32_t block_epoch = 0;  // epoch at the start of the current block
  uint64_t switches = 0;
  // watchdog: checked every kWatchdogPeriod accesses / atomics / scheduler steps
  std::chrono::steady_clock::time_point deadline{};
  uint32_t watchdog_countdown = 0;

  std::string where(unsigned linear) const;  // "block (x,y,z) thread (x,y,z)"
  std::string where() const { return where(current ? current->linear : 0); }
};

extern thread_local Worker* t_worker;
Worker& this_worker();
void report(Worker& w, DiagKind kind, std::string message);  // non-fatal, from runtime code

constexpr uint32_t kWatchdogPeriod = 1u << 16;
// Called from kernel context (hooks, atomics): when the block is past its deadline, reports it and
// abandons the running fiber (it is never resumed; the scheduler then aborts the block).
void watchdog_from_kernel(Worker& w);
// Called from the scheduler: reports and aborts the block when past its deadline.
bool watchdog_expired(Worker& w);

// tracking.cpp
void init_tracking(Worker& w);
void prepare_dyn_smem(Worker& w, size_t bytes);  // at launch start on each worker
void poison_dyn_smem(Worker& w);                 // at each block start
void track(Worker& w, uintptr_t addr, size_t n, bool write, bool atomic, const void* pc);
void apply_copy(Worker& w, const PendingCopy& c);  // a deferred cp.async lands (tracked write)

// symbols.cpp
std::string symbolize(const void* pc);       // "function+0x1c" or "0x…"
std::string kernel_name(const void* fn);     // demangled, without the parameter list
std::string tls_variable(size_t offset);     // "tile+132" for an offset in the module's TLS block
bool tls_block(uintptr_t* lo, size_t* size);  // the calling thread's TLS block of this module

}  // namespace infer::simt::detail
