// The roofline of a benchmark: t_roof = max(bytes / read bandwidth, flops / FMA peak), with the
// bandwidth and the peak of the benchmark's own thread count (and, for the peak, of the ISA it
// runs) measured in the same process. Counter `roofline` = t_roof / t (1 = at the machine's
// limit). The FMA peak is measured once per (ISA, threads) and process (it moves by a few
// percent); the read bandwidth just before each benchmark's timed loop, because it drifts by 10%
// and more over seconds on the project's hosts. The probes are those of BM_machine_fma and
// BM_machine_read (bench_machine.cpp).
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>

#include "fma/fma_probe.hpp"
#include "heed/core/executor.hpp"
#include "heed/simd/arch.hpp"

namespace heed_bench {

// Sums n floats (n a multiple of 4 vectors) with the widest vectors of the build: the read probe.
float read_all(const float* p, std::size_t n);

// Seconds for `threads` threads (plain std::threads started together) to run the FMA probe
// `probe` for `iters` iterations each: BM_machine_fma's step.
double fma_pass_seconds(const fma_probe& probe, int threads, std::int64_t iters);
// FMA peak of `i` (isa::automatic: the one the dispatch picks) with `threads` threads, flop/s,
// the best of five passes, measured once per process; 0 when heed_bench has no probe for that
// ISA or the CPU lacks it.
double fma_peak(heed::isa i, int threads);

// Floats each thread reads in a read pass (256 MiB, 2 MiB aligned, transparent huge pages).
constexpr std::size_t kReadFloats = std::size_t(256) << 20 >> 2;
// Seconds for `threads` threads to read their own kReadFloats each: BM_machine_read's step.
double read_pass_seconds(int threads);
// Streaming read bandwidth with `threads` threads, bytes/s: the median of three passes,
// measured now.
double read_bandwidth(int threads);

struct roofline_work {
  double bytes = 0;  // per iteration, read from memory (K and V)
  double flops = 0;  // per iteration, useful
};

// Measures the limits for ex's thread count and ISA `i` now and sets the counters `roofline`
// (t_roof / t), `read_GBps` and `fma_GFLOPS` (the limits used). Call after the benchmark's
// setup, before its timed loop.
void set_roofline(benchmark::State& state, heed::isa i, heed::executor& ex, roofline_work w);

// ISA `i` resolved (automatic: what the dispatch picks).
heed::isa resolved_isa(heed::isa i);

}  // namespace heed_bench
