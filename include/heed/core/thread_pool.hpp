// A std::thread executor: n - 1 persistent workers plus the calling thread. Tasks are handed out
// dynamically (an atomic counter), so uneven tasks such as causal tiles balance across threads.
// Between calls the workers spin briefly (about 50-100 us) before they sleep, and the caller spins
// briefly for the last worker, so back-to-back small calls (one decode token per layer) do not
// pay a futex wake-up each; an idle pool sleeps.
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
      active_.store(threads_ - 1, std::memory_order_relaxed);
      generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    wake_.notify_all();
    run_tasks(fn, n, 0);
    for (int spin = 0; spin < kSpins; ++spin) {
      if (active_.load(std::memory_order_acquire) == 0) return;
      cpu_relax();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return active_.load(std::memory_order_acquire) == 0; });
  }

 private:
  void run_tasks(const task_fn& fn, std::int64_t n, int thread) noexcept {
    for (;;) {
      const std::int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) break;
      fn(i, thread);
    }
  }

  static void cpu_relax() noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    std::this_thread::yield();
#endif
  }

  void worker_loop(int thread) {
    std::uint64_t seen = 0;
    for (;;) {
      // Spin a little for the next call, then sleep until it comes.
      bool ready = false;
      for (int spin = 0; spin < kSpins && !ready; ++spin) {
        ready = generation_.load(std::memory_order_acquire) != seen;
        if (!ready) cpu_relax();
      }
      if (!ready) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock,
                   [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
        if (stop_) return;
      }
      seen = generation_.load(std::memory_order_acquire);
      // fn_ and n_ were written before the generation was published (release/acquire), and stay
      // valid until every worker has checked in below.
      run_tasks(*fn_, n_, thread);
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's predicate check
        done_.notify_one();
      }
    }
  }

  static constexpr int kSpins = 1 << 12;

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const task_fn* fn_ = nullptr;
  std::int64_t n_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<std::uint64_t> generation_{0};
  bool stop_ = false;
};

}  // namespace heed
