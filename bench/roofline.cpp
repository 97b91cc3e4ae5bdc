// The limits behind the roofline counter (roofline.hpp) and BM_machine_fma / BM_machine_read.
#include "roofline.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <thread>
#include <utility>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "bench_common.hpp"
#include "fma/fma_probe.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/config.hpp"

namespace heed_bench {

namespace {
using B = xsimd::batch<float>;
double seconds_of(const std::chrono::steady_clock::time_point& t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Seconds for `threads` threads to run fn(t) each, all started together: plain std::threads
// released by one flag, so that no thread pool's wake-up or task stealing (one thread taking
// both tasks before the other woke) enters the measurement.
template <class Fn>
double timed_on_threads(int threads, Fn fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      fn(t);
    });
  while (ready.load() < threads - 1) {
  }
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  fn(0);
  for (auto& th : pool) th.join();
  return seconds_of(t0);
}
}  // namespace

HEED_NOINLINE float read_all(const float* p, std::size_t n) {
  constexpr std::size_t L = B::size;
  B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  for (std::size_t i = 0; i + 4 * L <= n; i += 4 * L) {
    a0 += B::load_aligned(p + i);
    a1 += B::load_aligned(p + i + L);
    a2 += B::load_aligned(p + i + 2 * L);
    a3 += B::load_aligned(p + i + 3 * L);
  }
  return xsimd::hadd(a0 + a1 + a2 + a3);
}

heed::isa resolved_isa(heed::isa i) { return i == heed::isa::automatic ? heed::best_isa() : i; }

double fma_pass_seconds(const fma_probe& probe, int threads, std::int64_t iters) {
  std::vector<float> sink(static_cast<std::size_t>(threads));
  const double s =
      timed_on_threads(threads, [&](int t) { sink[std::size_t(t)] = probe.run(iters); });
  benchmark::DoNotOptimize(sink.data());
  return s;
}

double measure_fma_peak(heed::isa i, int threads) {
  i = resolved_isa(i);
  const fma_probe probe = fma_probe_of(i);
  if (probe.run == nullptr || !heed::isa_available(i)) return 0;
  constexpr std::int64_t kIters = 10'000'000;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep)
    best = std::max(best, probe.flops(kIters) * threads / fma_pass_seconds(probe, threads, kIters));
  return best;
}

double fma_peak(heed::isa i, int threads) {
  static std::map<std::pair<int, int>, double> cache;
  const auto key = std::make_pair(static_cast<int>(resolved_isa(i)), threads);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, measure_fma_peak(i, threads)).first;
  return it->second;
}

double read_pass_seconds(int threads) {
  static std::vector<aligned_vector<float>> bufs;
  if (bufs.size() < std::size_t(threads)) bufs.resize(std::size_t(threads));
  // Each thread first touches its own buffer.
  timed_on_threads(threads, [&](int t) {
    auto& b = bufs[std::size_t(t)];
    if (b.size() != kReadFloats) b.assign(kReadFloats, 1.f);
  });
  std::vector<float> sink(static_cast<std::size_t>(threads));
  const double s = timed_on_threads(threads, [&](int t) {
    sink[std::size_t(t)] = read_all(bufs[std::size_t(t)].data(), kReadFloats);
  });
  benchmark::DoNotOptimize(sink.data());
  return s;
}

double read_bandwidth(int threads) {
  double rates[3];
  for (double& r : rates) r = double(kReadFloats) * 4 * threads / read_pass_seconds(threads);
  std::sort(rates, rates + 3);
  return rates[1];
}

void set_roofline(benchmark::State& state, heed::isa i, heed::executor& ex, roofline_work w) {
  const int threads = ex.concurrency();
  const double peak = fma_peak(i, threads), bw = read_bandwidth(threads);
  double t_roof = 0;
  if (bw > 0) t_roof = std::max(t_roof, w.bytes / bw);
  if (peak > 0) t_roof = std::max(t_roof, w.flops / peak);
  state.counters["roofline"] =
      benchmark::Counter(t_roof, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["read_GBps"] = bw * 1e-9;
  state.counters["fma_GFLOPS"] = peak * 1e-9;
}

}  // namespace heed_bench
