// FMA peak probe for neon (this file alone gets the neon compiler flags).
#define HEED_BENCH_ARCH ::heed::simd::neon_arch
#define HEED_BENCH_FMA_FN fma_chains_neon
#include "fma_chains.inc"
