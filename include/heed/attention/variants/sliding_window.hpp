// Sliding window: query at position i sees keys j with i - j <= window_left (and the causal
// mask, when on, removes j > i).
#pragma once

#include <algorithm>

#include "heed/attention/variant.hpp"

namespace heed {

struct sliding_window : variant_base {
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_key_range = true;
  std::int64_t window_left = 0;

  explicit sliding_window(std::int64_t w) noexcept : window_left(w) {}

  template <class A>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    const auto dist = c.q_pos - c.k_pos;
    return xsimd::bool_cast(dist <= static_cast<std::int32_t>(window_left));
  }
  HEED_FORCE_INLINE void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                                   std::int64_t&) const noexcept {
    k_lo = std::max(k_lo, q_lo - window_left);
  }
};

}  // namespace heed
