// Linear-attention kernels compiled for avx512 (this file gets the avx512 compiler flags).
#define HEED_ISA_ARCH ::heed::simd::avx512_arch
#define HEED_ISA_FN(name) name##_avx512
#include "linear_isa.inc"
