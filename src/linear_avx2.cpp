// Linear-attention kernels compiled for avx2 (this file gets the avx2 compiler flags).
#define HEED_ISA_ARCH ::heed::simd::avx2_arch
#define HEED_ISA_FN(name) name##_avx2
#include "linear_isa.inc"
