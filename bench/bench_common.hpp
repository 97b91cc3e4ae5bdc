// Shapes and inputs shared by the heed benchmarks: Hq = 32, Hkv = 8, head_dim = 128, causal.
#pragma once

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <new>
#include <random>
#include <utility>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/core/dtype.hpp"
#include "heed/simd/arch.hpp"

namespace heed_bench {

// A setup call of a benchmark (no benchmark::State at hand) that must succeed: a failure means the
// benchmark's own inputs are wrong, so it stops the run with the status rather than timing garbage.
inline void bench_ok(heed::status s) {
  if (s != heed::status::ok) {
    std::fprintf(stderr, "heed_bench: setup failed: %s\n", heed::status_string(s));
    std::abort();
  }
}

constexpr int kHq = 32;
constexpr int kHkv = 8;
constexpr int kD = 128;

// Inputs of 2 MiB or more are 2 MiB aligned and backed by transparent huge pages
// (madvise; the Debian default is THP "madvise"), as an engine's KV cache is when it asks for
// them; HEED_BENCH_SMALL_PAGES=1 in the environment keeps 4 KiB pages, to compare. Alignment
// alone matters too: a plain std::vector of 64 MiB starts 16 bytes past a page boundary, so each
// 256-byte f16 row spans 5 cache lines; decode of [seq, heads, d] K/V measured 20% slower for
// that alone. The machine read benchmark uses the same buffers, so ratios compare like with like.
template <class T>
struct huge_page_allocator {
  using value_type = T;
  static constexpr std::size_t kHuge = std::size_t(2) << 20;
  huge_page_allocator() = default;
  template <class U>
  huge_page_allocator(const huge_page_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    const bool huge = n * sizeof(T) >= kHuge;
    const std::size_t align = huge ? kHuge : 64;
    const std::size_t bytes = (n * sizeof(T) + align - 1) / align * align;
    void* p = std::aligned_alloc(align, bytes == 0 ? align : bytes);
    if (p == nullptr) throw std::bad_alloc();
    const char* small = std::getenv("HEED_BENCH_SMALL_PAGES");
    if (huge && !(small && small[0] == '1')) madvise(p, bytes, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <class U>
  bool operator==(const huge_page_allocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const huge_page_allocator<U>&) const noexcept {
    return false;
  }
};

template <class T>
using aligned_vector = std::vector<T, huge_page_allocator<T>>;

template <class T>
aligned_vector<T> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  aligned_vector<T> v(n);
  for (auto& x : v) x = heed::from_float<T>(nd(rng));
  return v;
}

// random_vector(n, seed), kept for the process: Google Benchmark calls a benchmark function
// several times (to size the run, then for each repetition), and drawing hundreds of MiB of
// normal deviates took longer than the measurement. One vector per (type, seed): the last size.
template <class T>
const aligned_vector<T>& shared_random_vector(std::size_t n, unsigned seed) {
  static std::list<std::pair<unsigned, aligned_vector<T>>> cache;  // stable references
  for (auto& e : cache)
    if (e.first == seed) {
      if (e.second.size() != n) e.second = random_vector<T>(n, seed);
      return e.second;
    }
  cache.emplace_back(seed, random_vector<T>(n, seed));
  return cache.back().second;
}

// The ISAs of this platform that the library holds and this CPU runs, best first: the
// benchmarks that take an ISA are registered once for each.
inline std::vector<heed::isa> available_isas() {
  std::vector<heed::isa> out;
  for (heed::isa i : heed::platform_isas)
    if (heed::isa_available(i)) out.push_back(i);
  return out;
}

// Useful flops of causal attention: 2 GEMMs of 2 flops per multiply-add over unmasked pairs.
inline double causal_flops(std::int64_t lq, std::int64_t lk, int hq, int d) {
  double pairs = 0;
  const std::int64_t off = lk - lq;
  for (std::int64_t i = 0; i < lq; ++i) pairs += double(off + i + 1);
  return 4.0 * hq * d * pairs;
}

// Runs step `a` and step `b` once in every iteration, each timed on its own, the order
// alternating so that neither always runs first, and returns the median of the per-iteration
// ratios time(b) / time(a). The two steps run milliseconds apart, so drifts of the machine
// (its memory bandwidth moves by 10% and more over seconds here), which two separate benchmarks
// see at different moments, cancel out. A step returns false on an error (the benchmark is then
// marked skipped).
template <class StepA, class StepB>
double paired_time_ratio(benchmark::State& state, StepA&& a, StepB&& b) {
  std::vector<double> ratios;
  std::int64_t iteration = 0;
  for (auto _ : state) {
    double seconds[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      const int which = static_cast<int>((i + iteration) % 2);
      const auto t0 = std::chrono::steady_clock::now();
      const bool ok = which ? b() : a();
      seconds[which] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!ok) state.SkipWithError("step failed");
      benchmark::ClobberMemory();
    }
    ratios.push_back(seconds[1] / seconds[0]);
    ++iteration;
  }
  if (ratios.empty()) return 0;
  std::sort(ratios.begin(), ratios.end());
  return ratios[ratios.size() / 2];
}

}  // namespace heed_bench
