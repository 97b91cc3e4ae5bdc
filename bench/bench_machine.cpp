// This machine's limits, measured in the same run as the kernels so results read as ratios:
// BM_machine_fma/<isa>/<threads> (fp32 FMA peak of each ISA the CPU runs, counter GFLOPS),
// BM_machine_read (streaming read of 256 MiB per thread, counter GBps) and
// BM_machine_read_strided (the read pattern of decode over [seq, heads, d] K/V: 256 bytes of
// every 2 KiB record, each thread its own heads; counter GBps of the bytes used).
// Two probes explain decode's time (docs/benchmarks.md), one thread each:
// BM_machine_read_blocks/<order>: the same records read as [seq, heads, d] decode reads them, 64
// records at a time with every head's chunks in turn, fetching the next 64 records in head order
// (0) or in address order (1); BM_machine_overlap/<work>/<from_dram>: two streams of 256-byte
// rows, each row pair followed by `work` rounds of 8 independent FMAs, rows prefetched 64 ahead;
// counter ns_per_row (compare work 0 from DRAM, work w in cache, and both; 32 rounds are about
// decode's FMAs per f16 K/V row pair at GQA 4).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "bench_common.hpp"
#include "fma/fma_probe.hpp"
#include "heed/config.hpp"
#include "heed/core/thread_pool.hpp"
#include "roofline.hpp"

namespace {

using B = xsimd::batch<float>;

// Sums the 256-byte chunk at `first` of each 2 KiB record (one head's f16 row of head_dim 128
// among eight KV heads), fetching the chunk 64 records ahead into L2 as the decode kernel does
// (without it one core read this pattern at 27 GB/s instead of 32).
HEED_NOINLINE float read_chunks(const char* p, std::size_t bytes, std::size_t first) {
  constexpr std::size_t kRecord = 2048, kChunk = 256, kAhead = 64;
  constexpr std::size_t L = B::size;
  B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  for (std::size_t r = first; r + kRecord <= bytes; r += kRecord) {
    for (std::size_t l = 0; l < kChunk; l += 64)
      __builtin_prefetch(p + r + kAhead * kRecord + l, 0, 2);
    const float* f = reinterpret_cast<const float*>(p + r);
    for (std::size_t i = 0; i < kChunk / sizeof(float); i += 4 * L) {
      a0 += B::load_aligned(f + i);
      a1 += B::load_aligned(f + i + L);
      a2 += B::load_aligned(f + i + 2 * L);
      a3 += B::load_aligned(f + i + 3 * L);
    }
  }
  return xsimd::hadd(a0 + a1 + a2 + a3);
}

// FMA peak of one ISA: 16 independent FMA chains per thread (bench/fma/), the same pass as the
// roofline counter's peak (roofline.hpp), timed per iteration.
void BM_machine_fma(benchmark::State& state, heed::isa isa) {
  const int threads = static_cast<int>(state.range(0));
  const heed_bench::fma_probe probe = heed_bench::fma_probe_of(isa);
  constexpr std::int64_t kIters = 20'000'000;
  for (auto _ : state) state.SetIterationTime(heed_bench::fma_pass_seconds(probe, threads, kIters));
  state.counters["GFLOPS"] = benchmark::Counter(probe.flops(kIters) * threads * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// Streaming read, every thread its own 256 MiB: the roofline counter's read pass.
void BM_machine_read(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) state.SetIterationTime(heed_bench::read_pass_seconds(threads));
  state.counters["GBps"] = benchmark::Counter(double(heed_bench::kReadFloats) * 4 * threads * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void BM_machine_read_strided(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr std::size_t kBytes = std::size_t(512) << 20;  // 8 heads x 256 bytes x 256 Ki records
  constexpr int kHeads = 8;
  heed_bench::aligned_vector<float> buf(kBytes / sizeof(float), 1.f);
  const char* p = reinterpret_cast<const char*>(buf.data());
  heed::thread_pool_executor ex(threads);
  std::vector<float> sink(static_cast<std::size_t>(threads));
  for (auto _ : state) {
    // Thread t reads heads [8t / threads, 8(t + 1) / threads), one after another.
    ex.parallel_for(threads, [&](std::int64_t t, int) {
      float s = 0.f;
      for (std::int64_t h = kHeads * t / threads; h < kHeads * (t + 1) / threads; ++h)
        s += read_chunks(p, kBytes, std::size_t(h) * 256);
      sink[std::size_t(t)] = s;
    });
    benchmark::DoNotOptimize(sink.data());
  }
  state.counters["GBps"] =
      benchmark::Counter(double(kBytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// One 256-byte chunk summed into four accumulators.
HEED_FORCE_INLINE void add_chunk(const char* c, B (&a)[4]) {
  const float* f = reinterpret_cast<const float*>(c);
  for (std::size_t i = 0; i < 64; i += 4 * B::size)
    for (int k = 0; k < 4; ++k) a[k] += B::load_aligned(f + i + std::size_t(k) * B::size);
}

HEED_NOINLINE float read_blocks(const char* p, std::size_t bytes, bool address_order) {
  constexpr std::size_t kRecord = 2048, kChunk = 256, kHeads = 8, kBlock = 64;
  B a[4] = {B(0.f), B(0.f), B(0.f), B(0.f)};
  for (std::size_t r0 = 0; (r0 + 2 * kBlock) * kRecord <= bytes; r0 += kBlock) {
    std::size_t row = 0;  // rows of this block read so far
    for (std::size_t h = 0; h < kHeads; ++h)
      for (std::size_t r = r0; r < r0 + kBlock; ++r, ++row) {
        // The next block's row of the same rank: in head order (head h, record r + 64), or in
        // address order (record r0 + 64 + row / 8, chunk row % 8).
        const std::size_t ahead =
            address_order ? (r0 + kBlock + row / kHeads) * kRecord + row % kHeads * kChunk
                          : (r + kBlock) * kRecord + h * kChunk;
        for (std::size_t l = 0; l < kChunk; l += 64) __builtin_prefetch(p + ahead + l, 0, 2);
        add_chunk(p + r * kRecord + h * kChunk, a);
      }
  }
  return xsimd::hadd(a[0] + a[1] + a[2] + a[3]);
}

void BM_machine_read_blocks(benchmark::State& state) {
  constexpr std::size_t kBytes = std::size_t(256) << 20;
  heed_bench::aligned_vector<float> buf(kBytes / sizeof(float), 1.f);
  const char* p = reinterpret_cast<const char*>(buf.data());
  for (auto _ : state) benchmark::DoNotOptimize(read_blocks(p, kBytes, state.range(0) != 0));
  state.counters["GBps"] =
      benchmark::Counter(double(kBytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

HEED_NOINLINE float overlap_pass(const char* k, const char* v, std::size_t rows, int work) {
  B a[4] = {B(0.f), B(0.f), B(0.f), B(0.f)};
  B c[8];
  for (int j = 0; j < 8; ++j) c[j] = B(1.f);
  const B m(0.999f);
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t l = 0; l < 256; l += 64) {
      __builtin_prefetch(k + (i + 64) * 256 + l, 0, 2);
      __builtin_prefetch(v + (i + 64) * 256 + l, 0, 2);
    }
    add_chunk(k + i * 256, a);
    add_chunk(v + i * 256, a);
    // FMAs on the row just read, as decode's are: they wait for its lines.
    const float* kr = reinterpret_cast<const float*>(k + i * 256);
    B x[8];
    for (int j = 0; j < 8; ++j) x[j] = B::load_aligned(kr + (j * B::size) % 64);
    for (int w = 0; w < work; ++w)
      for (int j = 0; j < 8; ++j) c[j] = xsimd::fma(x[j], m, c[j]);
  }
  for (int j = 0; j < 8; ++j) a[j % 4] += c[j];
  return xsimd::hadd(a[0] + a[1] + a[2] + a[3]);
}

void BM_machine_overlap(benchmark::State& state) {
  const int work = static_cast<int>(state.range(0));
  const bool dram = state.range(1) != 0;
  // From DRAM: 2 x 64 MiB; in cache: 2 x 64 KiB rows, read over and over.
  const std::size_t rows = dram ? std::size_t(1) << 18 : 256;
  heed_bench::aligned_vector<float> kb((rows + 64) * 64, 1.f), vb((rows + 64) * 64, 1.f);
  const char* k = reinterpret_cast<const char*>(kb.data());
  const char* v = reinterpret_cast<const char*>(vb.data());
  for (auto _ : state) benchmark::DoNotOptimize(overlap_pass(k, v, rows, work));
  state.counters["ns_per_row"] =
      benchmark::Counter(double(rows) * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                                  benchmark::Counter::kInvert);
}

}  // namespace

static const int fma_registered = [] {
  for (heed::isa isa : heed_bench::available_isas())
    if (heed_bench::fma_probe_of(isa).run)
      benchmark::RegisterBenchmark((std::string("BM_machine_fma/") + heed::isa_name(isa)).c_str(),
                                   [isa](benchmark::State& s) { BM_machine_fma(s, isa); })
          ->Arg(1)
          ->Arg(2)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
  return 0;
}();
BENCHMARK(BM_machine_read)->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_machine_read_strided)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_machine_read_blocks)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_machine_overlap)
    ->ArgsProduct({{0, 16, 32}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
