// Logit soft-capping (Gemma 2): s -> cap * tanh(s / cap).
#pragma once

#include "heed/attention/variant.hpp"
#include "heed/simd/math.hpp"

namespace heed {

struct softcap : variant_base {
  static constexpr bool has_logits_transform = true;
  float cap = 50.f;

  explicit softcap(float c) noexcept : cap(c) {}

  static constexpr bool has_log2_transform = true;

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>&) const noexcept {
    return xsimd::batch<float, A>(cap) *
           simd::fast_tanh_abs<A>(s * xsimd::batch<float, A>(1.f / cap));
  }
  template <class A>
  xsimd::batch<float, A> transform_logits_log2(xsimd::batch<float, A> u,
                                               const lane_ctx<A>&) const noexcept {
    return apply_log2<A>(u, cap);
  }

  // cap * tanh(s / cap) in log2 units: u = s log2(e) -> cap log2(e) tanh(u ln2 / cap). With
  // tanh(x) = 1 - 2 / (1 + 2^(2 x log2 e)) and 2 x log2(e) = 2 u / cap, that is C - 2 C r with
  // C = cap log2(e) and r = 1 / (1 + 2^(2u / cap)): no unit conversions left.
  template <class A>
  HEED_FORCE_INLINE static xsimd::batch<float, A> apply_log2(xsimd::batch<float, A> u,
                                                             float cap) noexcept {
    using B = xsimd::batch<float, A>;
    const float c = cap * simd::log2e;
    return xsimd::fnma(B(2.f * c), simd::inv_one_plus_exp2<A>(u * B(2.f / cap)), B(c));
  }
};

}  // namespace heed
