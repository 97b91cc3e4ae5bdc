// Logit soft-capping (Gemma 2): s -> cap * tanh(s / cap).
#pragma once

#include "heed/attention/variant.hpp"
#include "heed/config.hpp"
#include "heed/simd/math.hpp"

namespace heed {
HEED_ISA_BEGIN

struct softcap : variant_base {
  static constexpr bool has_logits_transform = true;
  float cap = 50.f;

  explicit softcap(float c) noexcept : cap(c) {}

  static constexpr bool has_log2_transform = true;
  static constexpr bool heavy_transform = true;

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>&) const noexcept {
    return simd::soft_cap<A>(s, cap);
  }
  template <class A>
  xsimd::batch<float, A> transform_logits_log2(xsimd::batch<float, A> u,
                                               const lane_ctx<A>&) const noexcept {
    return apply_log2<A>(u, cap);
  }

  // cap * tanh(s / cap) in log2 units: u = s log2(e) -> C tanh(u / C) with C = cap log2(e), the
  // same soft cap at C: no unit conversions left.
  template <class A>
  HEED_FORCE_INLINE static xsimd::batch<float, A> apply_log2(xsimd::batch<float, A> u,
                                                             float cap) noexcept {
    return simd::soft_cap<A>(u, cap * simd::log2e);
  }
};

HEED_ISA_END
}  // namespace heed
