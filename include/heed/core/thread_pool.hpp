// A std::thread executor: n - 1 persistent workers plus the calling thread. Tasks are handed out
// dynamically (an atomic counter), so uneven tasks such as causal tiles balance across threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "heed/core/executor.hpp"

namespace heed {

class thread_pool_executor final : public executor {
 public:
  // threads <= 0 picks std::thread::hardware_concurrency().
  explicit thread_pool_executor(int threads = 0) {
    if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
    if (threads <= 0) threads = 1;
    threads_ = threads;
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
  }
  ~thread_pool_executor() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  thread_pool_executor(const thread_pool_executor&) = delete;
  thread_pool_executor& operator=(const thread_pool_executor&) = delete;

  int concurrency() const noexcept override { return threads_; }

  // Not re-entrant: one parallel_for at a time per pool.
  void parallel_for(std::int64_t n, task_fn fn) noexcept override {
    if (n <= 0) return;
    if (threads_ == 1 || n == 1) {
      for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      n_ = n;
      next_.store(0, std::memory_order_relaxed);
      active_ = threads_ - 1;
      ++generation_;
    }
    wake_.notify_all();
    run_tasks(fn, n, 0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return active_ == 0; });
    fn_ = nullptr;
  }

 private:
  void run_tasks(const task_fn& fn, std::int64_t n, int thread) noexcept {
    for (;;) {
      const std::int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) break;
      fn(i, thread);
    }
  }

  void worker_loop(int thread) {
    std::uint64_t seen = 0;
    for (;;) {
      const task_fn* fn;
      std::int64_t n;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        fn = fn_;
        n = n_;
      }
      run_tasks(*fn, n, thread);
      {
        std::lock_guard<std::mutex> lock(mu_);
        --active_;
      }
      done_.notify_one();
    }
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const task_fn* fn_ = nullptr;
  std::int64_t n_ = 0;
  std::atomic<std::int64_t> next_{0};
  int active_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace heed
