// Linear-attention kernels compiled for sse2 (this file gets the sse2 compiler flags).
#define HEED_ISA_ARCH ::heed::simd::sse2_arch
#define HEED_ISA_FN(name) name##_sse2
#include "linear_isa.inc"
