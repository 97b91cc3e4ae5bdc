// Logit soft-capping (Gemma 2): s -> cap * tanh(s / cap).
#pragma once

#include "heed/attention/variant.hpp"
#include "heed/simd/math.hpp"

namespace heed {

struct softcap : variant_base {
  static constexpr bool has_logits_transform = true;
  float cap = 50.f;

  explicit softcap(float c) noexcept : cap(c) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>&) const noexcept {
    return xsimd::batch<float, A>(cap) *
           simd::fast_tanh_abs<A>(s * xsimd::batch<float, A>(1.f / cap));
  }
};

}  // namespace heed
