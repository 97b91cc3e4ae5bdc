// Dense kernels compiled for avx512 (this file alone gets the avx512 compiler flags).
#define HEED_ISA_ARCH ::heed::simd::avx512_arch
#define HEED_ISA_FN(name) name##_avx512
#include "dense_isa.inc"
