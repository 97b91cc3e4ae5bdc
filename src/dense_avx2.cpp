// Dense kernels compiled for avx2 (this file alone gets the avx2 compiler flags).
#define HEED_ISA_ARCH ::heed::simd::avx2_arch
#define HEED_ISA_FN(name) name##_avx2
#include "dense_isa.inc"
