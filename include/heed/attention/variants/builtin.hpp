// All built-in variants behind run-time switches (what the compiled library uses when any of
// window_left, softcap, alibi_slopes or sink_logits is set in dense_params). Order: ALiBi bias,
// then soft-capping, then the window mask; sinks fold in at the end of the row.
#pragma once

#include <algorithm>

#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/simd/math.hpp"

namespace heed {

struct builtin_variant : variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_row_finalize = true;
  static constexpr bool has_key_range = true;

  std::int64_t window_left = -1;
  float cap = 0.f;
  const float* slopes = nullptr;
  const float* sinks = nullptr;

  builtin_variant() = default;
  explicit builtin_variant(const dense_params& p) noexcept
      : window_left(p.window_left), cap(p.softcap), slopes(p.alibi_slopes), sinks(p.sink_logits) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    using B = xsimd::batch<float, A>;
    if (slopes) s = xsimd::fnma(B(slopes[c.q_head]), xsimd::to_float(c.q_pos - c.k_pos), s);
    if (cap > 0.f) s = B(cap) * simd::fast_tanh<A>(s * B(1.f / cap));
    return s;
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    if (window_left < 0) return xsimd::batch_bool<float, A>(true);
    return xsimd::bool_cast((c.q_pos - c.k_pos) <= static_cast<std::int32_t>(window_left));
  }
  HEED_FORCE_INLINE void finalize_row(int q_head, std::int64_t, row_state& r) const noexcept {
    if (sinks) fold_virtual_logit(r, sinks[q_head]);
  }
  HEED_FORCE_INLINE void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                                   std::int64_t&) const noexcept {
    if (window_left >= 0) k_lo = std::max(k_lo, q_lo - window_left);
  }
};

}  // namespace heed
