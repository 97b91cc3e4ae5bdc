// The per-ISA FMA peak probes (bench/fma/): fma_chains_<isa>(iters) runs fma_chain_count_<isa>()
// chains (16, or 12 where the ISA has 16 vector registers) of `iters`
// FMAs on that ISA's widest float vectors, one per ISA the build compiles (HEED_BENCH_HAVE_<ISA>);
// fma_probe_of(isa) picks one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/simd/arch.hpp"

namespace heed_bench {

#define HEED_BENCH_DECLARE_FMA(isa)           \
  float fma_chains_##isa(std::int64_t iters); \
  int fma_lanes_##isa();                      \
  int fma_chain_count_##isa();
HEED_BENCH_DECLARE_FMA(sse2)
HEED_BENCH_DECLARE_FMA(avx2)
HEED_BENCH_DECLARE_FMA(avx512)
HEED_BENCH_DECLARE_FMA(neon)

struct fma_probe {
  float (*run)(std::int64_t iters);
  int lanes;   // floats per vector
  int chains;  // independent FMA chains
  // Flops of one run(iters) on one thread: `chains` chains of `iters` FMAs of 2 flops per lane.
  double flops(std::int64_t iters) const { return double(iters) * chains * lanes * 2; }
};

// The probe of `i` (of those compiled into heed_bench on this platform), or {nullptr, 0}.
inline fma_probe fma_probe_of(heed::isa i) {
  switch (i) {
#if defined(HEED_BENCH_HAVE_SSE2)
    case heed::isa::sse2:
      return {&fma_chains_sse2, fma_lanes_sse2(), fma_chain_count_sse2()};
#endif
#if defined(HEED_BENCH_HAVE_AVX2)
    case heed::isa::avx2:
      return {&fma_chains_avx2, fma_lanes_avx2(), fma_chain_count_avx2()};
#endif
#if defined(HEED_BENCH_HAVE_AVX512)
    case heed::isa::avx512:
      return {&fma_chains_avx512, fma_lanes_avx512(), fma_chain_count_avx512()};
#endif
#if defined(HEED_BENCH_HAVE_NEON)
    case heed::isa::neon:
      return {&fma_chains_neon, fma_lanes_neon(), fma_chain_count_neon()};
#endif
    default:
      return {nullptr, 0, 0};
  }
}

}  // namespace heed_bench
