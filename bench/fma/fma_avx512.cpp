// FMA peak probe for avx512 (this file alone gets the avx512 compiler flags).
#define HEED_BENCH_ARCH ::heed::simd::avx512_arch
#define HEED_BENCH_FMA_FN fma_chains_avx512
#include "fma_chains.inc"
