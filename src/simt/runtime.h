// runtime.h — the SIMT emulator: runs the CUDA kernels of kernels/*.cu on the CPU, for tests.
//
// The same kernel source that nvcc compiles is compiled by the host compiler with -DINFER_SIMT
// (cmake/simt.cmake builds them into the static library infer_simt). kernels/simt.h maps the CUDA
// built-ins onto the entry points in infer::simt::device below; this file is also the API tests use
// to pick a schedule, read the emulator's diagnostics and register output buffers.
//
// Execution model (docs/simt.md has the long version):
//   - a launch runs its blocks on worker OS threads (set_worker_threads), one block at a time per worker;
//   - the threads of a block are fibers (ucontext, small mmap'ed stacks) on that worker; every barrier,
//     warp collective, mma, ldmatrix and cp.async wait is a switch point, and the schedule (in order,
//     reversed, seeded random) picks which runnable thread goes next;
//   - __shared__ variables are `static thread_local` (one instance per worker thread), dynamic shared
//     memory is a per-worker buffer; every load and store of the kernel code is seen by the emulator
//     (the kernels are compiled with -fsanitize=kernel-address, whose callbacks are implemented in
//     tracking.cpp), which finds shared-memory races, reads of never-written shared memory and
//     outputs left unwritten;
//   - errors are Diagnostics: a launch throws LaunchError, or, while a Capture is alive, records them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <vector_types.h>  // dim3, uint3 (CUDA's host header; no CUDA runtime needed)

namespace infer::simt {

// ---- schedules

enum class ScheduleKind : uint8_t {
  kInOrder,  // lowest runnable thread first; blocks in order
  kReverse,  // highest runnable thread first; blocks in reverse order
  kRandom,   // a seeded random runnable thread at every switch point; blocks shuffled
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::kInOrder;
  uint64_t seed = 0;

  // "inorder", "reverse", "random" (seed 1) or "random:SEED". Throws std::invalid_argument.
  static Schedule parse(std::string_view text);
  std::string to_string() const;
  bool operator==(const Schedule&) const = default;
};

// The schedule launches use. Initially INFER_SIMT_SCHEDULE from the environment, else in order.
Schedule schedule();
void set_schedule(const Schedule& s);

// Sets the schedule for its lifetime.
class ScopedSchedule {
 public:
  explicit ScopedSchedule(const Schedule& s) : saved_(schedule()) { set_schedule(s); }
  ~ScopedSchedule() { set_schedule(saved_); }
  ScopedSchedule(const ScopedSchedule&) = delete;
  ScopedSchedule& operator=(const ScopedSchedule&) = delete;

 private:
  Schedule saved_;
};

// The schedules a kernel test should run under: in order, reversed, and two random seeds.
std::vector<Schedule> test_schedules();

// Number of OS threads that run blocks in parallel (1 = the launching thread only). Initially
// INFER_SIMT_THREADS from the environment, else min(4, hardware threads).
int worker_threads();
void set_worker_threads(int n);

// Longest a block may run (seconds) before it is reported as hung (e.g. spinning on a flag that only
// another block sets) and abandoned, so that a launch never hangs. Initially INFER_SIMT_BLOCK_TIMEOUT
// from the environment, else 120.
double block_timeout();
void set_block_timeout(double seconds);

// True when the kernels were compiled with access instrumentation, i.e. shared-memory race,
// uninitialized-read and exact unwritten-output tracking work (off in AddressSanitizer builds).
bool access_tracking_enabled();

// ---- diagnostics

enum class DiagKind : uint8_t {
  kRace,                // two threads touch a shared-memory byte in one barrier interval, one of them writes
  kUninitializedRead,   // read of shared memory that no thread of the block has written
  kBarrierDivergence,   // threads exited while others wait at __syncthreads, or wait at different ones
  kDeadlock,            // no thread can make progress (e.g. lanes of a shuffle wait at __syncthreads)
  kWarpCollective,      // warp collective misuse: mismatched op/mask, source lane not participating
  kOutOfBounds,         // global access outside a dev_ptr's buffer, or past the dynamic shared memory
  kMisaligned,          // misaligned vector access, cp.async or ldmatrix address
  kNotShared,           // ldmatrix / cp.async destination not in shared memory
  kUnwrittenOutput,     // an expect_written buffer still holds its poison after the launch
  kBadLaunch,           // invalid grid/block/shared-memory configuration
  kKernelException,     // the kernel threw a C++ exception
};
inline constexpr int kDiagKindCount = 11;
const char* to_string(DiagKind k);

struct Diagnostic {
  DiagKind kind;
  std::string kernel;   // demangled kernel name
  std::string message;  // what, where (block, thread, address, code location)
};

// Thrown by a launch with diagnostics when no Capture is alive.
class LaunchError : public std::runtime_error {
 public:
  LaunchError(const std::string& what, std::vector<Diagnostic> diags)
      : std::runtime_error(what), diagnostics_(std::move(diags)) {}
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

// While a Capture is alive, launches (from any thread) record their diagnostics into the innermost
// Capture instead of throwing. Per launch, at most 8 messages of each kind are kept; count() counts all.
class Capture {
 public:
  Capture();
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  std::vector<Diagnostic> diagnostics() const;
  size_t count(DiagKind k) const;  // every occurrence, including messages not kept
  size_t total() const;
  bool has(DiagKind k) const { return count(k) > 0; }
  std::string summary() const;  // one line per kept diagnostic
  void clear();

  // internal: called by the launch that finishes
  void add(const std::vector<Diagnostic>& kept, const size_t (&counts)[kDiagKindCount]);

 private:
  struct Impl;
  Impl* impl_;
};

// Registers an output buffer of the next launch made by this thread: fills it with poison now
// (all bytes 0xff: NaN for f32/bf16/f16/e4m3) and, after that launch, reports the elements that no
// thread wrote (exactly, when access tracking is on; else the elements still equal to the poison).
void expect_written(void* p, size_t count, size_t elem_size, std::string name);
template <class T>
void expect_written(T* p, size_t count, std::string name) {
  expect_written(static_cast<void*>(p), count, sizeof(T), std::move(name));
}

// Counters since process start (for tests and for the docs' cost notes).
struct Stats {
  uint64_t launches = 0;
  uint64_t blocks = 0;
  uint64_t switches = 0;  // fiber switches
};
Stats stats();

// ---- launch (called by infer_launch in kernels/common.cuh)

struct LaunchConfig {
  const void* kernel;  // the __global__ function, for its name
  dim3 grid;
  dim3 block;
  size_t smem_bytes;  // dynamic shared memory
};
using KernelThunk = void (*)(void* ctx);

// Runs body(ctx) once per thread of every block under the current schedule. Returns when the launch
// is done; throws LaunchError on diagnostics unless a Capture is alive.
void launch(const LaunchConfig& cfg, KernelThunk body, void* ctx);

// ---- device side: what kernels/simt.h maps the CUDA built-ins onto. Only valid inside a kernel.
namespace device {

// A call site (std::source_location needs __builtin_source_location, which clang 14 lacks).
struct SourceLoc {
  const char* file = "";
  unsigned line = 0;
  static constexpr SourceLoc current(const char* f = __builtin_FILE(), unsigned l = __builtin_LINE()) {
    return SourceLoc{f, l};
  }
};

constexpr size_t kWarpSlotBytes = 64;  // per-lane bytes of a warp exchange

const uint3& thread_idx() noexcept;
const uint3& block_idx() noexcept;
const dim3& block_dim() noexcept;
const dim3& grid_dim() noexcept;
unsigned lane() noexcept;         // lane in the warp (linear thread index % 32)
unsigned active_mask() noexcept;  // lanes of this warp that exist and have not exited

// __syncthreads and its reducing forms; `op` is 0 (plain), 1 (count), 2 (and), 3 (or).
int syncthreads(int op, int pred, const SourceLoc& loc);

// A warp exchange: every lane named in `mask` deposits `bytes` (<= kWarpSlotBytes) and waits until
// all of them (those not exited) have; then each reads what it needs from view.slot(lane) and calls
// warp_release with the same op and mask. Lanes that exited are left out (participants).
struct WarpView {
  const unsigned char* slots;  // [32][kWarpSlotBytes]
  unsigned participants;
  const void* slot(unsigned lane) const { return slots + lane * kWarpSlotBytes; }
  bool has(unsigned lane) const { return lane < 32 && ((participants >> lane) & 1u); }
};
WarpView warp_gather(const char* op, unsigned mask, const void* data, size_t bytes);
void warp_release(const char* op, unsigned mask);
void warp_sync(unsigned mask);  // __syncwarp: a warp barrier that also orders shared memory

void* dynamic_smem() noexcept;
size_t dynamic_smem_bytes() noexcept;
bool is_shared(const void* p, size_t bytes) noexcept;

// Atomics are done by the header without instrumentation; this tells the tracker about them
// (pc: the code address, for messages).
void note_atomic(const void* p, size_t bytes, const void* pc) noexcept;

// cp.async: the copy is deferred to the cp_async_wait that covers its group, as on the GPU the data
// is only guaranteed to have landed then. src_bytes < bytes zero-fills the rest.
void cp_async(void* dst, const void* src, size_t bytes, size_t src_bytes);
void cp_async_commit();
void cp_async_wait(int pending_groups);  // -1: wait for every copy, committed or not

// Reports a diagnostic from kernel code. Fatal ones end the launch (the call does not return).
void report(DiagKind kind, const std::string& message, bool fatal);
[[noreturn]] void out_of_bounds(const void* base, size_t extent_bytes, const void* addr, size_t bytes);

// Describes the calling thread: "block (x,y,z) thread (x,y,z)".
std::string where();

}  // namespace device
}  // namespace infer::simt
