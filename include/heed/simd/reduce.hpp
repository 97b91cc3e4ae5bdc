// Horizontal reductions missing from xsimd 8.1's API (it has hadd / haddp only).
#pragma once

#include <algorithm>
#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace simd {

template <class A>
HEED_FORCE_INLINE float hsum(xsimd::batch<float, A> x) noexcept {
  return xsimd::hadd(x);
}

template <class A>
HEED_FORCE_INLINE float hmax(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
  alignas(64) float t[B::size];
  x.store_aligned(t);
  float m = t[0];
  for (std::size_t i = 1; i < B::size; ++i) m = std::max(m, t[i]);
  return m;
}

#if defined(__AVX512F__)
// 16 rows -> one batch, lane i = sum of rows[i]: a transposing tree of 15 adds. Halves then
// quarters fold with two-source shuffles (the first fold pairs a blend with one shuffle); the
// tree leaves lane i holding row S[i], S its own inverse, so reading rows through S orders them.
HEED_FORCE_INLINE __m512 haddp16(const __m512* r) noexcept {
  constexpr int S[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) {
    const __m512 x = r[S[i]], y = r[S[i + 8]];
    // [x.lo256 | y.hi256] + [x.hi256 | y.lo256]: x folded to 8 lanes, then y folded.
    b[i] = _mm512_add_ps(_mm512_mask_blend_ps(0xFF00, x, y), _mm512_shuffle_f32x4(x, y, 0x4E));
  }
  for (int i = 0; i < 4; ++i)  // 128-bit chunks: [b_i.0+b_i.1, b_i.2+b_i.3, b_j.0+b_j.1, ...]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88),
                         _mm512_shuffle_f32x4(b[i], b[i + 4], 0xDD));
  for (int i = 0; i < 2; ++i)  // within chunks: pairs (0, 2) and (1, 3)
    d[i] = _mm512_add_ps(_mm512_mask_blend_ps(0xCCCC, c[i], c[i + 2]),
                         _mm512_shuffle_ps(c[i], c[i + 2], 0x4E));
  return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
}
#endif

// Lane i of the result is the sum of rows[i] (rows: B::size batches).
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> haddp(const xsimd::batch<float, A>* rows) noexcept {
#if defined(__AVX512F__)
  using B = xsimd::batch<float, A>;
  if constexpr (B::size == 16) {
    static_assert(sizeof(B) == sizeof(__m512), "an AVX-512 batch is one register");
    return B(haddp16(reinterpret_cast<const __m512*>(rows)));
  }
#endif
  return xsimd::haddp(rows);
}

}  // namespace simd
HEED_ISA_END
}  // namespace heed
