// Fast vectorized exp2 / exp / tanh on xsimd batches (range reduction + polynomial).
//
// exp2: x = n + f with n = round(x), f in [-0.5, 0.5]; 2^f by a degree-5 minimax polynomial
// (relative error below 1e-7, 2.5e-7 with the float rounding), 2^n built in the exponent bits.
// Inputs below -126 give 0, so exp2(-inf) = 0 as the online softmax needs; +inf / nan inputs are
// not expected (logits are finite or -inf). With AVX-512 the rounding and the 2^n scaling are
// single instructions (vrndscaleps, vscalefps) and the underflow zeroing is a mask on the scaling:
// 9 vector operations instead of 15, same results (the polynomial and the rounding mode are the
// same).
#pragma once

#include <cstdint>
#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace simd {

constexpr float ln2 = 0.693147180559945309f;
constexpr float log2e = 1.442695040888963407f;

// 2^f for f in [-0.5, 0.5]: degree-5 minimax polynomial for the relative error (9.2e-8, fitted
// by iteratively reweighted least squares on Chebyshev nodes; the constant term is exactly 1, so
// 2^0 = 1).
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> exp2_poly(xsimd::batch<float, A> f) noexcept {
  using B = xsimd::batch<float, A>;
  B p(1.3264725351891412e-3f);
  p = xsimd::fma(p, f, B(9.6715127696728950e-3f));
  p = xsimd::fma(p, f, B(5.5507337493858790e-2f));
  p = xsimd::fma(p, f, B(2.4022242082540787e-1f));
  p = xsimd::fma(p, f, B(6.9314697759489630e-1f));
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

// c * tanh(v / c), the soft-capping of logits v at c > 0 (c = cap in natural units, cap log2(e)
// in log2 units). Capped logits are mostly well below the cap, where tanh(x) = x (1 + x^2 g(x^2))
// with an odd minimax polynomial of degree 9 on |x| <= 0.625 (absolute error 4.3e-8 in tanh, so
// below the float rounding of the result): when every lane is in that range the cap is
// v (1 + z g(z)) on z = v^2 with the coefficients pre-scaled by c^-2j, 5 vector operations after
// the test. Otherwise every lane takes c - 2c / (1 + 2^(2 v log2(e) / c)) (13 operations, one a
// division; absolute error below 3e-7 c). Caps below 1/64 always take the second form (the
// pre-scaled coefficients would overflow).
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> soft_cap(xsimd::batch<float, A> v, float c) noexcept {
  using B = xsimd::batch<float, A>;
  // Every constant first, unconditionally: in a loop the compiler then computes them once.
  const double ic2 = 1.0 / (double(c) * c);
  const float z_max = c >= 1.f / 64 ? float(0.390625 * c * c) : -1.f;  // (0.625 c)^2
  const float g4 = float(0.014889308644751962 * ic2 * ic2 * ic2 * ic2);
  const float g3 = float(-0.05170172676261182 * ic2 * ic2 * ic2);
  const float g2 = float(0.13302009454031075 * ic2 * ic2);
  const float g1 = float(-0.33331875121252424 * ic2);
  const float y_scale = 2.f * log2e / c, two_c = 2.f * c;
  const B z = v * v;
  if (xsimd::all(z <= B(z_max))) {
    B g = xsimd::fma(B(g4), z, B(g3));
    g = xsimd::fma(g, z, B(g2));
    g = xsimd::fma(g, z, B(g1));
    return xsimd::fma(v * z, g, v);
  }
  const B y = xsimd::min(xsimd::max(v * B(y_scale), B(-30.f)), B(30.f));
  return B(c) - B(two_c) / (B(1.f) + exp2_in_range<A>(y));
}

}  // namespace simd
HEED_ISA_END
}  // namespace heed
