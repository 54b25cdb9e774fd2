// runtime.cpp — the emulator's launch loop, fiber scheduler, barriers and warp exchanges.
//
// note: a block runs on one OS thread. Its threads are ucontext fibers; the scheduler (the worker's own
// stack) resumes one runnable fiber at a time, which runs until its next switch point (barrier, warp
// collective, exit) and swaps back. Barriers complete when every live thread waits at one; warp
// exchanges complete when every named, non-exited lane has arrived. When nothing is runnable and
// nothing can complete, the block is deadlocked: that is reported and the block is aborted by resuming
// each fiber with BlockAbort thrown from its pending switch point, so a launch never hangs.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <thread>

#include "internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define INFER_SIMT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define INFER_SIMT_ASAN 1
#endif
#if defined(INFER_SIMT_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace infer::simt {

// ---------------------------------------------------------------- schedules and settings

Schedule Schedule::parse(std::string_view text) {
  Schedule s;
  if (text == "inorder" || text == "in-order" || text == "in_order") return s;
  if (text == "reverse") {
    s.kind = ScheduleKind::kReverse;
    return s;
  }
  if (text.substr(0, 6) == "random") {
    s.kind = ScheduleKind::kRandom;
    s.seed = 1;
    if (text.size() == 6) return s;
    if (text[6] == ':' && text.size() > 7) {
      std::string digits(text.substr(7));
      char* end = nullptr;
      s.seed = std::strtoull(digits.c_str(), &end, 10);
      if (end && *end == '\0') return s;
    }
  }
  throw std::invalid_argument("INFER_SIMT_SCHEDULE: expected inorder, reverse, random or random:SEED, got '" +
                              std::string(text) + "'");
}

std::string Schedule::to_string() const {
  switch (kind) {
    case ScheduleKind::kInOrder: return "inorder";
    case ScheduleKind::kReverse: return "reverse";
    case ScheduleKind::kRandom: return "random:" + std::to_string(seed);
  }
  return "?";
}

namespace {

std::mutex g_settings_mu;
bool g_settings_init = false;
Schedule g_schedule;
int g_threads = 1;
double g_block_timeout = 120.0;

void init_settings_locked() {
  if (g_settings_init) return;
  g_settings_init = true;
  if (const char* s = std::getenv("INFER_SIMT_SCHEDULE"); s && *s) g_schedule = Schedule::parse(s);
  unsigned hw = std::thread::hardware_concurrency();
  g_threads = int(std::clamp(hw == 0 ? 1u : hw, 1u, 4u));
  if (const char* s = std::getenv("INFER_SIMT_THREADS"); s && *s) g_threads = std::clamp(std::atoi(s), 1, 256);
  if (const char* s = std::getenv("INFER_SIMT_BLOCK_TIMEOUT"); s && *s) g_block_timeout = std::max(0.001, std::atof(s));
}

std::atomic<uint64_t> g_launches{0}, g_blocks{0}, g_switches{0};

}  // namespace

Schedule schedule() {
  std::lock_guard lk(g_settings_mu);
  init_settings_locked();
  return g_schedule;
}

void set_schedule(const Schedule& s) {
  std::lock_guard lk(g_settings_mu);
  init_settings_locked();
  g_schedule = s;
}

std::vector<Schedule> test_schedules() {
  return {Schedule{ScheduleKind::kInOrder, 0}, Schedule{ScheduleKind::kReverse, 0},
          Schedule{ScheduleKind::kRandom, 1}, Schedule{ScheduleKind::kRandom, 2}};
}

int worker_threads() {
  std::lock_guard lk(g_settings_mu);
  init_settings_locked();
  return g_threads;
}

void set_worker_threads(int n) {
  std::lock_guard lk(g_settings_mu);
  init_settings_locked();
  g_threads = std::clamp(n, 1, 256);
}

double block_timeout() {
  std::lock_guard lk(g_settings_mu);
  init_settings_locked();
  return g_block_timeout;
}

void set_block_timeout(double seconds) {
  std::lock_guard lk(g_settings_mu);
  init_settings_locked();
  g_block_timeout = std::max(0.001, seconds);
}

Stats stats() { return Stats{g_launches.load(), g_blocks.load(), g_switches.load()}; }

// ---------------------------------------------------------------- diagnostics

const char* to_string(DiagKind k) {
  switch (k) {
    case DiagKind::kRace: return "race";
    case DiagKind::kUninitializedRead: return "uninitialized-read";
    case DiagKind::kBarrierDivergence: return "barrier-divergence";
    case DiagKind::kDeadlock: return "deadlock";
    case DiagKind::kWarpCollective: return "warp-collective";
    case DiagKind::kOutOfBounds: return "out-of-bounds";
    case DiagKind::kMisaligned: return "misaligned";
    case DiagKind::kNotShared: return "not-shared";
    case DiagKind::kUnwrittenOutput: return "unwritten-output";
    case DiagKind::kBadLaunch: return "bad-launch";
    case DiagKind::kKernelException: return "kernel-exception";
  }
  return "?";
}

struct Capture::Impl {
  mutable std::mutex mu;
  std::vector<Diagnostic> kept;
  size_t counts[kDiagKindCount] = {};
};

namespace {
std::mutex g_capture_mu;
std::vector<Capture*> g_captures;  // innermost last
constexpr size_t kKeptPerKind = 8;
}  // namespace

Capture::Capture() : impl_(new Impl) {
  std::lock_guard lk(g_capture_mu);
  g_captures.push_back(this);
}

Capture::~Capture() {
  {
    std::lock_guard lk(g_capture_mu);
    auto it = std::find(g_captures.begin(), g_captures.end(), this);
    if (it != g_captures.end()) g_captures.erase(it);
  }
  delete impl_;
}

std::vector<Diagnostic> Capture::diagnostics() const {
  std::lock_guard lk(impl_->mu);
  return impl_->kept;
}

size_t Capture::count(DiagKind k) const {
  std::lock_guard lk(impl_->mu);
  return impl_->counts[int(k)];
}

size_t Capture::total() const {
  std::lock_guard lk(impl_->mu);
  return std::accumulate(std::begin(impl_->counts), std::end(impl_->counts), size_t(0));
}

std::string Capture::summary() const {
  std::lock_guard lk(impl_->mu);
  std::string s;
  for (const auto& d : impl_->kept) s += std::string(to_string(d.kind)) + ": " + d.message + "\n";
  return s;
}

void Capture::clear() {
  std::lock_guard lk(impl_->mu);
  impl_->kept.clear();
  std::fill(std::begin(impl_->counts), std::end(impl_->counts), size_t(0));
}

void Capture::add(const std::vector<Diagnostic>& kept, const size_t (&counts)[kDiagKindCount]) {
  std::lock_guard lk(impl_->mu);
  impl_->kept.insert(impl_->kept.end(), kept.begin(), kept.end());
  for (int i = 0; i < kDiagKindCount; ++i) impl_->counts[i] += counts[i];
}

namespace detail {

void LaunchState::add(DiagKind kind, std::string message) {
  std::lock_guard lk(mu);
  ++counts[int(kind)];
  if (kept_per_kind[int(kind)]++ < kKeptPerKind) kept.push_back(Diagnostic{kind, kernel, std::move(message)});
}

void report(Worker& w, DiagKind kind, std::string message) {
  if (w.launch) w.launch->add(kind, std::move(message));
}

std::string Worker::where(unsigned linear) const {
  const dim3& b = launch->cfg.block;
  char buf[128];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", block_idx.x, block_idx.y, block_idx.z,
                linear % b.x, (linear / b.x) % b.y, linear / (b.x * b.y));
  return buf;
}

thread_local Worker* t_worker = nullptr;

// ---------------------------------------------------------------- fibers

namespace {

size_t fiber_stack_bytes() {
  static const size_t bytes = [] {
    size_t kb = 256;
#if defined(INFER_SIMT_ASAN)
    kb = 512;  // redzones make frames larger
#endif
    if (const char* s = std::getenv("INFER_SIMT_STACK_KB"); s && *s) kb = std::max(16, std::atoi(s));
    return kb * 1024;
  }();
  return bytes;
}

// Stacks are mmap'ed with NORESERVE (only touched pages cost memory) and a guard page below, so an
// overflow faults instead of corrupting the neighbour.
unsigned char* map_stack(size_t bytes) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("simt: cannot map a fiber stack");
  mprotect(p, page, PROT_NONE);
  return static_cast<unsigned char*>(p) + page;
}

inline void asan_start_switch(void** save, const void* bottom, size_t size) {
#if defined(INFER_SIMT_ASAN)
  __sanitizer_start_switch_fiber(save, bottom, size);
#else
  (void)save, (void)bottom, (void)size;
#endif
}

inline void asan_finish_switch(void* save, const void** old_bottom, size_t* old_size) {
#if defined(INFER_SIMT_ASAN)
  __sanitizer_finish_switch_fiber(save, old_bottom, old_size);
#else
  (void)save, (void)old_bottom, (void)old_size;
#endif
}

// From a fiber back to its worker's scheduler. `exiting`: the fiber never resumes (ASan frees its fake stack).
void to_scheduler(Worker& w, Thread& t, bool exiting) {
  asan_start_switch(exiting ? nullptr : &t.asan_fake_stack, w.sched_stack_bottom, w.sched_stack_size);
  swapcontext(&t.uc, &w.sched_uc);
  asan_finish_switch(t.asan_fake_stack, &w.sched_stack_bottom, &w.sched_stack_size);
}

std::string timeout_message(const Worker& w) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                ": the block ran for more than %.3g s (INFER_SIMT_BLOCK_TIMEOUT); a thread spinning on a flag "
                "that another block sets cannot make progress here",
                w.launch->block_timeout);
  return w.where() + buf;
}

void fiber_main() {
  Worker& w = *t_worker;
  Thread& t = *w.current;
  asan_finish_switch(nullptr, &w.sched_stack_bottom, &w.sched_stack_size);
  try {
    w.in_kernel = true;
    w.launch->body(w.launch->ctx);
    w.in_kernel = false;
    // Copies never waited for still land (the GPU would finish them too).
    for (const auto& c : t.copies) apply_copy(w, c);
    t.copies.clear();
  } catch (const BlockAbort&) {
    w.in_kernel = false;
  } catch (const std::exception& e) {
    w.in_kernel = false;
    report(w, DiagKind::kKernelException, w.where() + ": kernel threw: " + e.what());
    w.aborting = true;
  } catch (...) {
    w.in_kernel = false;
    report(w, DiagKind::kKernelException, w.where() + ": kernel threw a non-std exception");
    w.aborting = true;
  }
  t.state = FiberState::kDone;
  to_scheduler(w, t, /*exiting=*/true);
  std::abort();  // unreachable: a finished fiber is never resumed
}

}  // namespace

void watchdog_from_kernel(Worker& w) {
  w.watchdog_countdown = kWatchdogPeriod;
  if (std::chrono::steady_clock::now() < w.deadline || !w.current || w.aborting) return;
  report(w, DiagKind::kDeadlock, timeout_message(w));
  w.aborting = true;
  w.in_kernel = false;
  Thread& t = *w.current;
  t.state = FiberState::kDone;  // abandoned: its stack is simply reused
  to_scheduler(w, t, /*exiting=*/true);
  std::abort();  // unreachable
}

bool watchdog_expired(Worker& w) {
  w.watchdog_countdown = kWatchdogPeriod;
  if (std::chrono::steady_clock::now() < w.deadline || w.aborting) return false;
  report(w, DiagKind::kDeadlock, timeout_message(w));
  return true;
}

namespace {

// ---------------------------------------------------------------- the block scheduler

inline void set_runnable(Worker& w, unsigned i) { w.runnable[i >> 6] |= uint64_t(1) << (i & 63); }
inline void clear_runnable(Worker& w, unsigned i) { w.runnable[i >> 6] &= ~(uint64_t(1) << (i & 63)); }

int pick(Worker& w) {
  const auto& bits = w.runnable;
  switch (w.launch->sched.kind) {
    case ScheduleKind::kInOrder:
      for (size_t i = 0; i < bits.size(); ++i)
        if (bits[i]) return int(i * 64 + size_t(std::countr_zero(bits[i])));
      return -1;
    case ScheduleKind::kReverse:
      for (size_t i = bits.size(); i-- > 0;)
        if (bits[i]) return int(i * 64 + 63 - size_t(std::countl_zero(bits[i])));
      return -1;
    case ScheduleKind::kRandom: {
      size_t n = 0;
      for (uint64_t b : bits) n += size_t(std::popcount(b));
      if (n == 0) return -1;
      size_t k = size_t(w.rng() % n);
      for (size_t i = 0; i < bits.size(); ++i) {
        size_t c = size_t(std::popcount(bits[i]));
        if (k < c) {
          uint64_t b = bits[i];
          for (size_t j = 0; j < k; ++j) b &= b - 1;  // drop the k lowest set bits
          return int(i * 64 + size_t(std::countr_zero(b)));
        }
        k -= c;
      }
      return -1;
    }
  }
  return -1;
}

void resume(Worker& w, Thread& t) {
  clear_runnable(w, t.linear);
  if (!t.started) {
    t.started = true;
    getcontext(&t.uc);
    t.uc.uc_stack.ss_sp = t.stack;
    t.uc.uc_stack.ss_size = t.stack_size;
    t.uc.uc_link = nullptr;
    makecontext(&t.uc, fiber_main, 0);
#if defined(INFER_SIMT_ASAN)
    // note: ASan's swapcontext interceptor clears the shadow of uc_stack on every switch (slow with
    // many fibers); clear it once per fiber here and hide the stack from the interceptor (swapcontext
    // itself does not use uc_stack after makecontext).
    __asan_unpoison_memory_region(t.stack, t.stack_size);
    t.uc.uc_stack.ss_sp = nullptr;
    t.uc.uc_stack.ss_size = 0;
#endif
  }
  t.state = FiberState::kRunning;
  w.current = &t;
  asan_start_switch(&w.sched_fake_stack, t.stack, t.stack_size);
  swapcontext(&w.sched_uc, &t.uc);
  asan_finish_switch(w.sched_fake_stack, nullptr, nullptr);
  w.current = nullptr;
  ++w.switches;
}

// A warp exchange completes when every lane named in the mask (and not exited) waits at the same op,
// phase and mask.
void try_complete_warp(Worker& w, const Thread& t) {
  Warp& wp = w.warps[t.warp];
  const unsigned required = t.mask & wp.exist & ~wp.done;
  const unsigned base = t.warp * 32;
  for (unsigned m = required; m; m &= m - 1) {
    const Thread& u = w.threads[base + unsigned(std::countr_zero(m))];
    if (u.state != FiberState::kWarp || u.phase != t.phase || u.mask != t.mask || std::strcmp(u.op, t.op) != 0)
      return;
  }
  for (unsigned m = required; m; m &= m - 1) {
    Thread& u = w.threads[base + unsigned(std::countr_zero(m))];
    u.state = FiberState::kRunnable;
    u.participants = required;
    set_runnable(w, u.linear);
  }
  if (t.phase == 2) wp.sync_masks.push_back(required);
}

void on_exit(Worker& w, Thread& t) {
  --w.live;
  Warp& wp = w.warps[t.warp];
  wp.done |= 1u << t.lane;
  // Lanes waiting for this one no longer do.
  const unsigned base = t.warp * 32;
  for (unsigned m = wp.exist & ~wp.done; m; m &= m - 1) {
    const Thread& u = w.threads[base + unsigned(std::countr_zero(m))];
    if (u.state == FiberState::kWarp) try_complete_warp(w, u);
  }
}

void abort_block(Worker& w) {
  w.aborting = true;
  w.launch->abort = true;
  for (unsigned i = 0; i < w.nthreads; ++i) {
    Thread& t = w.threads[i];
    if (t.state == FiberState::kNew) {
      t.state = FiberState::kDone;
      clear_runnable(w, i);
      --w.live;
    } else if (t.state != FiberState::kDone && t.state != FiberState::kRunnable) {
      t.state = FiberState::kRunnable;
      set_runnable(w, i);
    }
  }
}

std::string loc_string(const device::SourceLoc& l) {
  const char* f = l.file;
  if (const char* s = std::strrchr(f, '/')) f = s + 1;
  return std::string(f) + ":" + std::to_string(l.line);
}

std::string range_string(const std::vector<unsigned>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < 6; ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  if (ids.size() > 6) s += ",… (" + std::to_string(ids.size()) + " threads)";
  return s;
}

// Nothing is runnable and threads are still alive: release a barrier, or report a deadlock.
void resolve_quiescence(Worker& w) {
  std::vector<unsigned> at_barrier, at_warp, exited;
  for (unsigned i = 0; i < w.nthreads; ++i) {
    switch (w.threads[i].state) {
      case FiberState::kBarrier: at_barrier.push_back(i); break;
      case FiberState::kWarp: at_warp.push_back(i); break;
      case FiberState::kDone: exited.push_back(i); break;
      default: break;
    }
  }
  if (at_warp.empty() && !at_barrier.empty()) {
    const Thread& first = w.threads[at_barrier[0]];
    if (!exited.empty() && !w.reported_exit_divergence) {
      w.reported_exit_divergence = true;
      report(w, DiagKind::kBarrierDivergence,
             w.where(exited[0]) + ": " + std::to_string(exited.size()) + " thread(s) (" + range_string(exited) +
                 ") exited while " + std::to_string(at_barrier.size()) + " wait at __syncthreads (" +
                 loc_string(first.loc) + "); a barrier must be reached by every thread of the block");
    }
    for (unsigned i : at_barrier) {
      const Thread& t = w.threads[i];
      const bool same_loc = t.loc.line == first.loc.line && std::strcmp(t.loc.file, first.loc.file) == 0;
      if ((!same_loc || t.bar_op != first.bar_op) && !w.reported_loc_divergence) {
        w.reported_loc_divergence = true;
        report(w, DiagKind::kBarrierDivergence,
               w.where(i) + ": threads wait at different barriers: thread " + std::to_string(first.linear) + " at " +
                   loc_string(first.loc) + ", thread " + std::to_string(i) + " at " + loc_string(t.loc));
      }
    }
    int count = 0;
    for (unsigned i : at_barrier) {
      Thread& t = w.threads[i];
      count += t.pred != 0;
      t.state = FiberState::kRunnable;
      set_runnable(w, i);
    }
    w.bar_count = count;
    w.bar_total = int(at_barrier.size());
    ++w.epoch;
    for (auto& wp : w.warps) wp.sync_masks.clear();
    return;
  }
  if (at_barrier.empty() && at_warp.empty()) {  // cannot happen: live threads are runnable or waiting
    report(w, DiagKind::kDeadlock, w.where(0) + ": emulator error: live threads but none runnable or waiting");
    abort_block(w);
    return;
  }
  // Deadlock: describe who waits where.
  std::map<std::string, std::vector<unsigned>> groups;
  for (unsigned i : at_barrier) groups["__syncthreads at " + loc_string(w.threads[i].loc)].push_back(i);
  for (unsigned i : at_warp) {
    const Thread& t = w.threads[i];
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s%s (mask 0x%08x) in warp %u", t.op, t.phase == 1 ? " (release)" : "", t.mask,
                  t.warp);
    groups[buf].push_back(i);
  }
  std::string msg = w.where(at_warp.empty() ? at_barrier[0] : at_warp[0]) + ": no thread can proceed:";
  for (const auto& [what, ids] : groups) msg += " threads " + range_string(ids) + " wait at " + what + ";";
  if (!exited.empty()) msg += " threads " + range_string(exited) + " exited;";
  report(w, at_barrier.empty() ? DiagKind::kWarpCollective : DiagKind::kDeadlock, msg);
  abort_block(w);
}

void run_block(Worker& w, LaunchState& ls, uint64_t linear) {
  const dim3& g = ls.cfg.grid;
  const dim3& b = ls.cfg.block;
  w.block_idx = uint3{unsigned(linear % g.x), unsigned((linear / g.x) % g.y), unsigned(linear / (uint64_t(g.x) * g.y))};
  const unsigned n = ls.threads_per_block;
  w.nthreads = n;
  w.live = n;
  w.aborting = false;
  w.reported_exit_divergence = w.reported_loc_divergence = false;
  if (w.threads.size() < n) w.threads.resize(n);
  while (w.stacks.size() < n) w.stacks.push_back(map_stack(w.stack_size));
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = w.threads[i];
    t.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
    t.linear = i;
    t.warp = i / 32;
    t.lane = i % 32;
    t.state = FiberState::kNew;
    t.started = false;
    t.stack = w.stacks[i];
    t.stack_size = w.stack_size;
    t.asan_fake_stack = nullptr;
    t.copies.clear();
    t.group_ends.clear();
  }
  const unsigned nwarps = (n + 31) / 32;
  w.warps.resize(nwarps);
  for (unsigned i = 0; i < nwarps; ++i) {
    const unsigned lanes = std::min(32u, n - i * 32);
    w.warps[i].exist = lanes == 32 ? ~0u : ((1u << lanes) - 1);
    w.warps[i].done = 0;
    w.warps[i].sync_masks.clear();
  }
  w.runnable.assign((n + 63) / 64, 0);
  for (unsigned i = 0; i < n; ++i) set_runnable(w, i);
  w.rng.seed(ls.sched.seed * 0x9e3779b97f4a7c15ull + linear * 0xbf58476d1ce4e5b9ull + 1);
  w.block_epoch = ++w.epoch;
  poison_dyn_smem(w);
  w.deadline = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(ls.block_timeout));
  w.watchdog_countdown = kWatchdogPeriod;

  while (w.live > 0) {
    if (--w.watchdog_countdown == 0 && watchdog_expired(w)) abort_block(w);
    if (w.aborting && !ls.abort) ls.abort = true;
    const int i = pick(w);
    if (i < 0) {
      resolve_quiescence(w);
      continue;
    }
    Thread& t = w.threads[unsigned(i)];
    resume(w, t);
    switch (t.state) {
      case FiberState::kDone: on_exit(w, t); break;
      case FiberState::kWarp: try_complete_warp(w, t); break;
      case FiberState::kRunning: t.state = FiberState::kRunnable, set_runnable(w, t.linear); break;
      default: break;
    }
    if (w.aborting) {
      // A fatal diagnostic in this block: unwind the other fibers (once).
      bool pending = false;
      for (unsigned j = 0; j < n && !pending; ++j)
        pending = w.threads[j].state != FiberState::kDone && w.threads[j].state != FiberState::kRunnable;
      if (pending || std::any_of(w.threads.begin(), w.threads.begin() + n,
                                 [](const Thread& x) { return x.state == FiberState::kNew; }))
        abort_block(w);
    }
  }
}

// ---------------------------------------------------------------- workers

class Pool {
 public:
  // Runs the launch on the calling thread plus `helpers` pool threads.
  void run(LaunchState& ls, int helpers) {
    std::unique_lock lk(mu_);
    while (int(threads_.size()) < helpers) {
      const size_t idx = threads_.size();
      threads_.emplace_back([this, idx] { loop(idx); });
    }
    job_ = &ls;
    want_ = size_t(helpers);
    running_ = helpers;
    ++gen_;
    cv_.notify_all();
    lk.unlock();
    run_blocks(ls);
    lk.lock();
    done_cv_.wait(lk, [&] { return running_ == 0; });
    job_ = nullptr;
  }

  static void run_blocks(LaunchState& ls) {
    Worker& w = this_worker();
    w.launch = &ls;
    prepare_dyn_smem(w, ls.cfg.smem_bytes);
    for (;;) {
      if (ls.abort) break;
      const uint64_t i = ls.next.fetch_add(1);
      if (i >= ls.blocks) break;
      run_block(w, ls, ls.order[i]);
    }
    g_switches += w.switches;
    w.switches = 0;
    w.launch = nullptr;
  }

 private:
  void loop(size_t idx) {
    uint64_t seen = 0;
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return gen_ != seen; });
      seen = gen_;
      if (idx >= want_) continue;
      LaunchState* ls = job_;
      lk.unlock();
      run_blocks(*ls);
      lk.lock();
      if (--running_ == 0) done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> threads_;
  LaunchState* job_ = nullptr;
  size_t want_ = 0;
  int running_ = 0;
  uint64_t gen_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: its threads wait forever and die with the process
  return *p;
}

std::mutex g_launch_mu;  // launches run one at a time (the pool has one job slot)

// expect_written buffers registered by this thread for its next launch
thread_local std::vector<Output>* t_pending_outputs = nullptr;

}  // namespace

Worker& this_worker() {
  if (!t_worker) {
    t_worker = new Worker;  // lives as long as its OS thread (pool threads never exit)
    t_worker->stack_size = fiber_stack_bytes();
    init_tracking(*t_worker);
  }
  return *t_worker;
}

}  // namespace detail

using namespace detail;

void expect_written(void* p, size_t count, size_t elem_size, std::string name) {
  if (!t_pending_outputs) t_pending_outputs = new std::vector<Output>;
  std::memset(p, 0xff, count * elem_size);
  Output o;
  o.p = static_cast<unsigned char*>(p);
  o.count = count;
  o.elem = elem_size;
  o.name = std::move(name);
  t_pending_outputs->push_back(std::move(o));
}

namespace {

void check_outputs(LaunchState& ls) {
  for (const Output& o : ls.outputs) {
    size_t unwritten = 0;
    std::vector<size_t> first;
    for (size_t e = 0; e < o.count; ++e) {
      const unsigned char* p = o.p + e * o.elem;
      bool poison = true, marked = true;
      for (size_t k = 0; k < o.elem; ++k) {
        poison &= p[k] == 0xff;
        if (o.written) marked &= o.written[e * o.elem + k].load(std::memory_order_relaxed) != 0;
      }
      // Unwritten: still the poison and (when tracked) not every byte stored to.
      if (poison && (!o.written || !marked)) {
        ++unwritten;
        if (first.size() < 8) first.push_back(e);
      }
    }
    if (unwritten) {
      std::string idx;
      for (size_t i = 0; i < first.size(); ++i) {
        if (i) idx += ',';
        idx += std::to_string(first[i]);
      }
      ls.add(DiagKind::kUnwrittenOutput, "output '" + o.name + "': " + std::to_string(unwritten) + " of " +
                                             std::to_string(o.count) + " elements were never written (indices " +
                                             idx + (unwritten > first.size() ? ",…" : "") + ")");
    }
  }
}

void finish(LaunchState& ls) {
  std::vector<Diagnostic> kept;
  size_t counts[kDiagKindCount];
  {
    std::lock_guard lk(ls.mu);
    kept = ls.kept;
    std::copy(std::begin(ls.counts), std::end(ls.counts), std::begin(counts));
  }
  if (std::getenv("INFER_SIMT_VERBOSE"))
    for (const auto& d : kept) std::fprintf(stderr, "simt: %s: %s: %s\n", to_string(d.kind), d.kernel.c_str(), d.message.c_str());
  {
    std::lock_guard lk(g_capture_mu);
    if (!g_captures.empty()) {
      g_captures.back()->add(kept, counts);
      return;
    }
  }
  if (kept.empty()) return;
  std::string what = "simt: kernel " + ls.kernel + " (schedule " + ls.sched.to_string() + "):";
  for (const auto& d : kept) what += std::string("\n  ") + to_string(d.kind) + ": " + d.message;
  throw LaunchError(what, std::move(kept));
}

}  // namespace

void launch(const LaunchConfig& cfg, KernelThunk body, void* ctx) {
  if (t_worker && t_worker->launch)
    throw std::logic_error("simt: a kernel launched a kernel (dynamic parallelism is not emulated)");
  LaunchState ls;
  ls.cfg = cfg;
  ls.body = body;
  ls.ctx = ctx;
  ls.kernel = kernel_name(cfg.kernel);
  ls.sched = schedule();
  ls.block_timeout = block_timeout();
  if (t_pending_outputs) {
    ls.outputs = std::move(*t_pending_outputs);
    t_pending_outputs->clear();
  }
  const dim3& b = cfg.block;
  const dim3& g = cfg.grid;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  ls.blocks = uint64_t(g.x) * g.y * g.z;
  constexpr size_t kMaxSmem = 227 * 1024;  // the largest opt-in shared memory per block (sm_90)
  if (threads == 0 || threads > 1024 || b.z > 64 || ls.blocks == 0 || g.y > 65535 || g.z > 65535 ||
      cfg.smem_bytes > kMaxSmem) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "invalid launch: grid (%u,%u,%u) block (%u,%u,%u) dynamic smem %zu bytes", g.x, g.y,
                  g.z, b.x, b.y, b.z, cfg.smem_bytes);
    ls.add(DiagKind::kBadLaunch, buf);
    finish(ls);
    return;
  }
  ls.threads_per_block = unsigned(threads);
  ls.order.resize(ls.blocks);
  for (uint64_t i = 0; i < ls.blocks; ++i)
    ls.order[i] = ls.sched.kind == ScheduleKind::kReverse ? ls.blocks - 1 - i : i;
  if (ls.sched.kind == ScheduleKind::kRandom) {
    std::mt19937_64 rng(ls.sched.seed ^ 0x5851f42d4c957f2dull);
    std::shuffle(ls.order.begin(), ls.order.end(), rng);
  }
  if (access_tracking_enabled())
    for (Output& o : ls.outputs) {
      o.written.reset(new std::atomic<uint8_t>[o.count * o.elem]);
      for (size_t i = 0; i < o.count * o.elem; ++i) o.written[i].store(0, std::memory_order_relaxed);
    }

  {
    std::lock_guard lk(g_launch_mu);
    const int helpers = int(std::min<uint64_t>(uint64_t(worker_threads()), ls.blocks)) - 1;
    if (helpers > 0)
      pool().run(ls, helpers);
    else
      Pool::run_blocks(ls);
  }
  ++g_launches;
  g_blocks += ls.next.load() < ls.blocks ? ls.next.load() : ls.blocks;
  if (!ls.abort) check_outputs(ls);
  finish(ls);
}

// ---------------------------------------------------------------- device side

namespace device {

namespace {

// Marks runtime code called from a kernel: its own memory accesses are not the kernel's.
struct RuntimeScope {
  Worker& w;
  bool saved;
  RuntimeScope() : w(*t_worker), saved(w.in_kernel) { w.in_kernel = false; }
  ~RuntimeScope() { w.in_kernel = saved; }
  Thread& t() const { return *w.current; }
};

// A switch point: back to the scheduler until this thread is resumed.
void yield(Worker& w, Thread& t) {
  to_scheduler(w, t, false);
  if (w.aborting) throw BlockAbort{};
}

const uint3 kZero3{0, 0, 0};
const dim3 kOne3{1, 1, 1};

}  // namespace

const uint3& thread_idx() noexcept {
  Worker* w = t_worker;
  return w && w->current ? w->current->tid : kZero3;
}
const uint3& block_idx() noexcept {
  Worker* w = t_worker;
  return w && w->launch ? w->block_idx : kZero3;
}
const dim3& block_dim() noexcept {
  Worker* w = t_worker;
  return w && w->launch ? w->launch->cfg.block : kOne3;
}
const dim3& grid_dim() noexcept {
  Worker* w = t_worker;
  return w && w->launch ? w->launch->cfg.grid : kOne3;
}
unsigned lane() noexcept {
  Worker* w = t_worker;
  return w && w->current ? w->current->lane : 0;
}
unsigned active_mask() noexcept {
  Worker* w = t_worker;
  if (!w || !w->current) return 0;
  const Warp& wp = w->warps[w->current->warp];
  return wp.exist & ~wp.done;
}

int syncthreads(int op, int pred, const SourceLoc& loc) {
  RuntimeScope s;
  Thread& t = s.t();
  t.state = FiberState::kBarrier;
  t.bar_op = op;
  t.pred = pred;
  t.loc = loc;
  yield(s.w, t);
  switch (op) {
    case 1: return s.w.bar_count;
    case 2: return s.w.bar_count == s.w.bar_total;
    case 3: return s.w.bar_count > 0;
    default: return 0;
  }
}

namespace {

void warp_wait(RuntimeScope& s, const char* op, unsigned mask, uint8_t phase) {
  Thread& t = s.t();
  if (!((mask >> t.lane) & 1u)) {
    char buf[160];
    std::snprintf(buf, sizeof buf, ": lane %u calls %s with mask 0x%08x, which does not name it", t.lane, op, mask);
    report(s.w, DiagKind::kWarpCollective, s.w.where() + buf);
    mask |= 1u << t.lane;
  }
  t.state = FiberState::kWarp;
  t.op = op;
  t.mask = mask;
  t.phase = phase;
  yield(s.w, t);
}

}  // namespace

WarpView warp_gather(const char* op, unsigned mask, const void* data, size_t bytes) {
  RuntimeScope s;
  Thread& t = s.t();
  Warp& wp = s.w.warps[t.warp];
  if (bytes > kWarpSlotBytes) throw std::logic_error("simt: warp exchange larger than a slot");
  if (bytes) std::memcpy(wp.slots + t.lane * kWarpSlotBytes, data, bytes);
  warp_wait(s, op, mask, 0);
  return WarpView{wp.slots, t.participants};
}

void warp_release(const char* op, unsigned mask) {
  RuntimeScope s;
  warp_wait(s, op, mask, 1);
}

void warp_sync(unsigned mask) {
  RuntimeScope s;
  warp_wait(s, "__syncwarp", mask, 2);
}

void* dynamic_smem() noexcept {
  Worker* w = t_worker;
  return w ? reinterpret_cast<void*>(w->dyn.lo) : nullptr;
}

size_t dynamic_smem_bytes() noexcept {
  Worker* w = t_worker;
  return w ? w->dyn.size : 0;
}

bool is_shared(const void* p, size_t bytes) noexcept {
  Worker* w = t_worker;
  if (!w) return false;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return (a - w->tls.lo < w->tls.size && a + bytes - w->tls.lo <= w->tls.size) ||
         (a - w->dyn.lo < w->dyn.size && a + bytes - w->dyn.lo <= w->dyn.size);
}

void note_atomic(const void* p, size_t bytes, const void* pc) noexcept {
  Worker* w = t_worker;
  if (!w || !w->in_kernel) return;
  if (--w->watchdog_countdown == 0) watchdog_from_kernel(*w);
  w->in_kernel = false;
  track(*w, reinterpret_cast<uintptr_t>(p), bytes, true, true, pc);
  w->in_kernel = true;
}

void cp_async(void* dst, const void* src, size_t bytes, size_t src_bytes) {
  RuntimeScope s;
  Thread& t = s.t();
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst), sp = reinterpret_cast<uintptr_t>(src);
  if (bytes != 4 && bytes != 8 && bytes != 16) throw std::logic_error("simt: cp.async size must be 4, 8 or 16");
  if (d % bytes || sp % bytes) {
    char buf[160];
    std::snprintf(buf, sizeof buf, ": cp.async of %zu bytes from %p to %p is not %zu-byte aligned", bytes, src, dst, bytes);
    report(s.w, DiagKind::kMisaligned, s.w.where() + buf);
  }
  if (!is_shared(dst, bytes)) {
    report(s.w, DiagKind::kNotShared, s.w.where() + ": cp.async destination is not shared memory");
    return;
  }
  PendingCopy c;
  c.dst = static_cast<unsigned char*>(dst);
  c.bytes = bytes;
  std::memset(c.data, 0, sizeof c.data);
  if (src_bytes) std::memcpy(c.data, src, std::min(src_bytes, bytes));
  t.copies.push_back(c);
}

void cp_async_commit() {
  RuntimeScope s;
  Thread& t = s.t();
  t.group_ends.push_back(t.copies.size());
}

void cp_async_wait(int pending_groups) {
  RuntimeScope s;
  Thread& t = s.t();
  size_t upto = 0;  // copies [0, upto) must land now
  if (pending_groups < 0) {
    upto = t.copies.size();
  } else if (t.group_ends.size() > size_t(pending_groups)) {
    upto = t.group_ends[t.group_ends.size() - size_t(pending_groups) - 1];
  }
  if (upto) {
    for (size_t i = 0; i < upto; ++i) apply_copy(s.w, t.copies[i]);
    t.copies.erase(t.copies.begin(), t.copies.begin() + std::ptrdiff_t(upto));
    std::vector<size_t> ends;
    for (size_t e : t.group_ends)
      if (e > upto) ends.push_back(e - upto);
    t.group_ends = std::move(ends);
  }
  if (pending_groups < 0) t.group_ends.clear();
  if (s.w.launch->sched.kind == ScheduleKind::kRandom) {  // one more interleaving point
    t.state = FiberState::kRunning;
    yield(s.w, t);
  }
}

void report(DiagKind kind, const std::string& message, bool fatal) {
  Worker* w = t_worker;
  if (!w || !w->launch) throw std::runtime_error(std::string("simt: ") + to_string(kind) + ": " + message);
  RuntimeScope s;
  detail::report(s.w, kind, s.w.where() + ": " + message);
  if (fatal) {
    s.w.aborting = true;
    s.w.launch->abort = true;
    throw BlockAbort{};
  }
}

void out_of_bounds(const void* base, size_t extent_bytes, const void* addr, size_t bytes) {
  const auto a = reinterpret_cast<intptr_t>(addr), b = reinterpret_cast<intptr_t>(base);
  char buf[256];
  std::snprintf(buf, sizeof buf, "out-of-bounds access of %zu bytes at byte offset %lld of a %zu-byte buffer", bytes,
                static_cast<long long>(a - b), extent_bytes);
  Worker* w = t_worker;
  if (!w || !w->launch || !w->current) throw std::out_of_range(std::string("dev_ptr: ") + buf);
  std::string msg = buf;
  msg += " (at " + symbolize(__builtin_return_address(0)) + ")";
  report(DiagKind::kOutOfBounds, msg, /*fatal=*/true);
  std::abort();  // unreachable
}

std::string where() {
  Worker* w = t_worker;
  return w && w->launch ? w->where() : std::string("host");
}

}  // namespace device
}  // namespace infer::simt
