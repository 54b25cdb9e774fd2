// thread_pool.h — a small fork-join pool for the CPU backend. parallel_for splits [0, n) into one
// contiguous chunk per thread; the caller's thread takes part. Workers spin briefly between jobs (decode
// issues a few hundred jobs per token, so waking through a condition variable each time would dominate),
// then sleep.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace infer {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Calls fn(thread_index, begin, end) for disjoint chunks covering [0, n); chunk boundaries are multiples
  // of `align` (except the end). Returns when every chunk is done.
  void parallel_for(int64_t n, int64_t align, const std::function<void(int, int64_t, int64_t)>& fn);
  // Calls fn(thread_index) once on every thread.
  void run_on_all(const std::function<void(int)>& fn);

  static int default_threads();  // the machine's core count

 private:
  void worker(int index);
  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace infer
