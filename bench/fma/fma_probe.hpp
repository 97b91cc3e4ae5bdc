// The per-ISA FMA peak probes (bench/fma/): fma_chains_<isa>(iters) runs 16 chains of `iters`
// FMAs on that ISA's widest float vectors; fma_chains(isa) picks one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/simd/arch.hpp"

namespace heed_bench {

float fma_chains_sse2(std::int64_t iters);
float fma_chains_avx2(std::int64_t iters);
float fma_chains_avx512(std::int64_t iters);
float fma_chains_neon(std::int64_t iters);

struct fma_probe {
  float (*run)(std::int64_t iters);
  int lanes;  // floats per vector
};

// The probe of `i` (of those compiled into heed_bench on this platform), or {nullptr, 0}.
inline fma_probe fma_probe_of(heed::isa i) {
  switch (i) {
#if defined(__x86_64__)
    case heed::isa::sse2:
      return {&fma_chains_sse2, 4};
    case heed::isa::avx2:
      return {&fma_chains_avx2, 8};
    case heed::isa::avx512:
      return {&fma_chains_avx512, 16};
#elif defined(__aarch64__)
    case heed::isa::neon:
      return {&fma_chains_neon, 4};
#endif
    default:
      return {nullptr, 0};
  }
}

}  // namespace heed_bench
