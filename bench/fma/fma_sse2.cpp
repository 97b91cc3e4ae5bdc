// FMA peak probe for sse2 (this file alone gets the sse2 compiler flags).
#define HEED_BENCH_ARCH ::heed::simd::sse2_arch
#define HEED_BENCH_FMA_FN fma_chains_sse2
#include "fma_chains.inc"
