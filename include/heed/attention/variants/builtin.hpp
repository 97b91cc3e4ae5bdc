// All built-in variants behind run-time switches (what the compiled library uses when any of
// the variant fields of dense_params is set). Order: the row scale (SSMax, length scaling) on the
// query, then the ALiBi bias, the per-key bias, soft-capping, the sigmoid transform and the window
// mask; sinks (or sigmoid's fixed normalizer) fold in at the end of the row.
#pragma once

#include <algorithm>
#include <cmath>

#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variants/sigmoid_attention.hpp"
#include "heed/simd/math.hpp"

namespace heed {

struct builtin_variant : variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_row_finalize = true;
  static constexpr bool has_key_range = true;
  static constexpr bool has_query_scale = true;

  std::int64_t window_left = -1;
  float cap = 0.f;
  const float* slopes = nullptr;
  const float* sinks = nullptr;
  const float* ssmax = nullptr;
  float inv_log_base = 0.f;  // 1 / log(length_scale_base), 0 = off
  float length_floor = 1.f;
  const float* key_bias = nullptr;
  std::int32_t key_bias_len = 0;
  bool sigmoid = false;
  const float* sigmoid_bias = nullptr;

  builtin_variant() = default;
  explicit builtin_variant(const dense_params& p) noexcept
      : window_left(p.window_left),
        cap(p.softcap),
        slopes(p.alibi_slopes),
        sinks(p.sink_logits),
        ssmax(p.ssmax),
        inv_log_base(p.length_scale_base >= 2 ? 1.f / std::log(float(p.length_scale_base)) : 0.f),
        length_floor(p.length_scale_floor),
        key_bias(p.key_bias),
        key_bias_len(static_cast<std::int32_t>(p.key_bias_len)),
        sigmoid(p.sigmoid),
        sigmoid_bias(p.sigmoid_bias) {}

  HEED_FORCE_INLINE float query_scale(int q_head, std::int64_t, std::int64_t n) const noexcept {
    float f = 1.f;
    if (ssmax || inv_log_base > 0.f) {
      const float ln = std::log(float(n));
      if (ssmax) f *= ssmax[q_head] * ln;
      if (inv_log_base > 0.f) f *= std::max(length_floor, ln * inv_log_base);
    }
    return f;
  }
  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    if (slopes) s = xsimd::fnma(B(slopes[c.q_head]), xsimd::to_float(c.q_pos - c.k_pos), s);
    if (key_bias) {
      const float* row = key_bias + std::int64_t(c.q_head) * key_bias_len;
      const auto in = c.k_pos < I(key_bias_len);
      const I idx = xsimd::select(in, c.k_pos, I(0));
      s += xsimd::select(xsimd::bool_cast(in), B::gather(row, idx), B(0.f));
    }
    if (cap > 0.f) s = B(cap) * simd::fast_tanh<A>(s * B(1.f / cap));
    if (sigmoid) s = log_sigmoid<A>(s + B(sigmoid_bias ? sigmoid_bias[c.q_head] : 0.f));
    return s;
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    if (window_left < 0) return xsimd::batch_bool<float, A>(true);
    return xsimd::bool_cast((c.q_pos - c.k_pos) <= static_cast<std::int32_t>(window_left));
  }
  HEED_FORCE_INLINE void finalize_row(int q_head, std::int64_t, row_state& r) const noexcept {
    if (sigmoid) {
      unnormalized_row(r);
    } else if (sinks) {
      fold_virtual_logit(r, sinks[q_head]);
    }
  }
  HEED_FORCE_INLINE void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                                   std::int64_t&) const noexcept {
    if (window_left >= 0) k_lo = std::max(k_lo, q_lo - window_left);
  }
};

}  // namespace heed
