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

#include "heed/core/executor.hpp"
#include "heed/simd/arch.hpp"

namespace heed_bench {

// Sums n floats (n a multiple of 4 vectors) with the widest vectors of the build: the read probe.
float read_all(const float* p, std::size_t n);

// FMA peak of `i` (isa::automatic: the one the dispatch picks) with `threads` threads, flop/s;
// 0 when heed_bench has no probe for that ISA or the CPU lacks it.
double fma_peak(heed::isa i, heed::executor& ex);
// FMA peak measured now (no cache): BM_machine_fma.
double measure_fma_peak(heed::isa i, heed::executor& ex);
// Streaming read bandwidth with ex.concurrency() threads, each reading its own 256 MiB buffer
// (2 MiB aligned, transparent huge pages), bytes/s: the median of three passes, measured now.
double read_bandwidth(heed::executor& ex);

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
