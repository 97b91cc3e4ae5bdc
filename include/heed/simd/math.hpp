// Fast vectorized exp2 / exp / tanh on xsimd batches (range reduction + polynomial).
//
// exp2: x = n + f with n = round(x), f in [-0.5, 0.5]; 2^f by a degree-6 Taylor polynomial
// (relative error below 2e-7), 2^n built in the exponent bits. Inputs below -126 give 0, so
// exp2(-inf) = 0 as the online softmax needs; +inf / nan inputs are not expected (logits are
// finite or -inf). With AVX-512 the rounding and the 2^n scaling are single instructions
// (vrndscaleps, vscalefps) and the underflow zeroing is a mask on the scaling: 10 vector
// operations instead of 16, same results (the polynomial and the rounding mode are the same).
#pragma once

#include <cstdint>
#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "heed/config.hpp"

namespace heed {
namespace simd {

constexpr float ln2 = 0.693147180559945309f;
constexpr float log2e = 1.442695040888963407f;

// 2^f for f in [-0.5, 0.5], Taylor coefficients ln2^k / k!.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> exp2_poly(xsimd::batch<float, A> f) noexcept {
  using B = xsimd::batch<float, A>;
  B p(1.5403530393381606e-4f);
  p = xsimd::fma(p, f, B(1.3333558146428443e-3f));
  p = xsimd::fma(p, f, B(9.6181291076284772e-3f));
  p = xsimd::fma(p, f, B(5.5504108664821580e-2f));
  p = xsimd::fma(p, f, B(2.4022650695910071e-1f));
  p = xsimd::fma(p, f, B(6.9314718055994531e-1f));
  return xsimd::fma(p, f, B(1.f));
}

// 2^x for x already inside [-126, 127] (no clamping, no underflow path): for callers that bound
// their argument themselves.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> exp2_in_range(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return B(_mm512_scalef_ps(exp2_poly<A>(x - B(n)), n));
  }
#endif
  using I = xsimd::batch<std::int32_t, A>;
  const I n = xsimd::nearbyint_as_int(x);
  const B p = exp2_poly<A>(x - xsimd::to_float(n));
  const I bits = (n + I(127)) << 23;
  return p * xsimd::bitwise_cast<B>(bits);
}

template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> fast_exp2(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    // Lanes below -126 (and -inf, whose reduction is NaN) are zeroed by the mask; above 127 the
    // scaling saturates to +inf instead of wrapping.
    const __mmask16 keep = _mm512_cmp_ps_mask(x, B(-126.f), _CMP_GE_OQ);
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return B(_mm512_maskz_scalef_ps(keep, exp2_poly<A>(x - B(n)), n));
  }
#endif
  const B lo(-126.f);
  const auto underflow = x < lo;
  x = xsimd::min(xsimd::max(x, lo), B(127.f));
  return xsimd::select(underflow, B(0.f), exp2_in_range<A>(x));
}

template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> fast_exp(xsimd::batch<float, A> x) noexcept {
  return fast_exp2<A>(x * xsimd::batch<float, A>(log2e));
}

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|); accurate to a few ulp of 1.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> fast_tanh(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
  const B ax = xsimd::abs(x);
  const B e = fast_exp2<A>(ax * B(-2.f * log2e));
  const B t = (B(1.f) - e) / (B(1.f) + e);
  // small |x|: 1 - e loses digits; use the odd series x - x^3/3 + 2x^5/15 there
  const B x2 = x * x;
  const B small = x * xsimd::fma(x2, xsimd::fma(x2, B(2.f / 15.f), B(-1.f / 3.f)), B(1.f));
  return xsimd::select(ax < B(0.0625f), small, xsimd::copysign(t, x));
}

// 1 / (1 + 2^y) with y clamped to [-30, 30] and the reciprocal estimate refined once; tanh(x) is
// 1 - 2 r with y = 2 x log2(e) (the fast_tanh_abs family, see below).
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> inv_one_plus_exp2(xsimd::batch<float, A> y) noexcept {
  using B = xsimd::batch<float, A>;
  const B den = B(1.f) + exp2_in_range<A>(xsimd::min(xsimd::max(y, B(-30.f)), B(30.f)));
  const B r = xsimd::reciprocal(den);
  return r * xsimd::fnma(den, r, B(2.f));
}

// tanh for soft-capping logits, where only the absolute error matters (softmax is invariant to
// shifts, and cap * error is what reaches the logits): 1 - 2 / (1 + e^(2x)) with the reciprocal
// estimate refined once; e^(2x) is computed for 2x log2(e) clamped to [-30, 30] (tanh is within
// 1e-9 of +-1 beyond), so no underflow path. Absolute error below 5e-7 everywhere (3e-7 with
// AVX-512's rcp14); no small-|x| branch, so about half the work of fast_tanh.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> fast_tanh_abs(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
  return xsimd::fnma(B(2.f), inv_one_plus_exp2<A>(x * B(2.f * log2e)), B(1.f));
}

}  // namespace simd
}  // namespace heed
