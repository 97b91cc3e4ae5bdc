// The instruction sets heed compiles kernels for, and the xsimd arch of each.
#pragma once

#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"

namespace heed {

enum class isa : int {
  automatic = 0,  // the best one this CPU supports among those compiled in
  sse2 = 1,
  avx2 = 2,    // AVX2 + FMA + F16C
  avx512 = 3,  // AVX-512 F/CD/BW/DQ/VL + F16C
  neon = 4,    // AArch64 Advanced SIMD (always present on aarch64; f16 conversions included)
};

HEED_ISA_BEGIN
// The ISAs heed has kernels for on the platform this is compiled for, best first (the order
// isa::automatic prefers them in). Which of them a build holds and a CPU runs: isa_available()
// (heed/attention/dense_dispatch.hpp).
#if defined(__aarch64__)
inline constexpr isa platform_isas[] = {isa::neon};
#else
inline constexpr isa platform_isas[] = {isa::avx512, isa::avx2, isa::sse2};
#endif

constexpr const char* isa_name(isa i) noexcept {
  return i == isa::sse2     ? "sse2"
         : i == isa::avx2   ? "avx2"
         : i == isa::avx512 ? "avx512"
         : i == isa::neon   ? "neon"
                            : "automatic";
}

namespace simd {

using sse2_arch = xsimd::sse2;
using avx2_arch = xsimd::fma3<xsimd::avx2>;
using avx512_arch = xsimd::avx512bw;
using neon_arch = xsimd::neon64;

template <class A>
constexpr bool is_avx512 = std::is_base_of<xsimd::avx512f, A>::value;
template <class A>
constexpr bool is_avx2 = std::is_base_of<xsimd::avx2, A>::value && !is_avx512<A>;

template <class A>
constexpr bool is_neon = std::is_base_of<xsimd::neon, A>::value;

// Vector registers of the ISA: 32 (AVX-512, NEON) or 16 (SSE2, AVX2). Register blocks of the
// kernels are sized by it: a block of accumulators and operands that needs more spills to the
// stack inside its loop (AVX2 decode's P V did, with a block sized for AVX-512).
template <class A>
constexpr int vector_registers = is_avx512<A> || is_neon<A> ? 32 : 16;

template <class A>
constexpr isa isa_of() noexcept {
  return is_avx512<A> ? isa::avx512 : is_avx2<A> ? isa::avx2 : is_neon<A> ? isa::neon : isa::sse2;
}

}  // namespace simd
HEED_ISA_END
}  // namespace heed
