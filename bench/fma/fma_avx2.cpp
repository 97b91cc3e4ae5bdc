// FMA peak probe for avx2 (this file alone gets the avx2 compiler flags).
#define HEED_BENCH_ARCH ::heed::simd::avx2_arch
#define HEED_BENCH_FMA_FN fma_chains_avx2
#include "fma_chains.inc"
