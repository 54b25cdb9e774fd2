// thread_pool.cpp — see thread_pool.h.
#include "cpu/thread_pool.h"

#include <algorithm>
#include <chrono>


namespace infer {

int ThreadPool::default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads <= 0 ? default_threads() : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin for up to ~2 ms (a job usually follows within microseconds during decode), then sleep.
    // note: no `pause` instruction in the loop — in VMs it can trigger pause-loop exits that deschedule the vCPU;
    // a yield every 64 polls keeps an oversubscribed machine (ctest -j, other programs) from stalling.
    const auto t0 = std::chrono::steady_clock::now();
    uint32_t spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      if ((++spins & 63) == 0) std::this_thread::yield();  // let other runnable threads in when oversubscribed
      if ((spins & 1023) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(2)) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    (*job_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run_on_all(const std::function<void(int)>& fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  fn(0);
  for (uint32_t spins = 0; pending_.load(std::memory_order_acquire) != 0;)
    if ((++spins & 63) == 0) std::this_thread::yield();
  job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, int64_t align, const std::function<void(int, int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  const int64_t units = (n + align - 1) / align;
  const int nt = int(std::min<int64_t>(n_threads_, units));
  if (nt <= 1) {
    fn(0, 0, n);
    return;
  }
  run_on_all([&](int t) {
    if (t >= nt) return;
    const int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
    const int64_t b = u0 * align, e = std::min(n, u1 * align);
    if (b < e) fn(t, b, e);
  });
}

}  // namespace infer
