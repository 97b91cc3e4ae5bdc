// The instruction sets heed compiles kernels for, and the xsimd arch of each.
#pragma once

#include <type_traits>
#include <xsimd/xsimd.hpp>

namespace heed {

enum class isa : int {
  automatic = 0,  // the best one this CPU supports among those compiled in
  sse2 = 1,
  avx2 = 2,    // AVX2 + FMA + F16C
  avx512 = 3,  // AVX-512 F/CD/BW/DQ/VL + F16C
};

constexpr const char* isa_name(isa i) noexcept {
  return i == isa::sse2     ? "sse2"
         : i == isa::avx2   ? "avx2"
         : i == isa::avx512 ? "avx512"
                            : "automatic";
}

namespace simd {

using sse2_arch = xsimd::sse2;
using avx2_arch = xsimd::fma3<xsimd::avx2>;
using avx512_arch = xsimd::avx512bw;

template <class A>
constexpr bool is_avx512 = std::is_base_of<xsimd::avx512f, A>::value;
template <class A>
constexpr bool is_avx2 = std::is_base_of<xsimd::avx2, A>::value && !is_avx512<A>;

template <class A>
constexpr isa isa_of() noexcept {
  return is_avx512<A> ? isa::avx512 : is_avx2<A> ? isa::avx2 : isa::sse2;
}

}  // namespace simd
}  // namespace heed
