// All built-in variants behind run-time switches (what the compiled library and the scores use
// when any field of logit_settings beyond the scale is set). Order: the row scale (SSMax, length
// scaling) on the query, then the ALiBi bias, the per-key bias, soft-capping, the sigmoid transform
// and the window mask; sinks (or sigmoid's fixed normalizer) fold in at the end of the row.
#pragma once

#include <algorithm>
#include <cmath>

#include "heed/attention/logit_settings.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variants/alibi.hpp"
#include "heed/attention/variants/key_bias.hpp"
#include "heed/attention/variants/sigmoid_attention.hpp"
#include "heed/attention/variants/softcap.hpp"
#include "heed/config.hpp"
#include "heed/simd/math.hpp"

namespace heed {
HEED_ISA_BEGIN

// The row-level built-ins alone (learned sinks, SSMax, length scaling): they cost one multiply
// per query row and a fold per row, so the compiled library takes this variant, and the plain
// inner loop, when nothing per-logit is set.
struct builtin_row_variant : variant_base {
  static constexpr bool has_row_finalize = true;
  static constexpr bool has_query_scale = true;

  const float* sinks = nullptr;
  const float* ssmax = nullptr;
  float inv_log_base = 0.f;  // 1 / log(length_scale_base), 0 = off
  float length_floor = 1.f;
  bool sigmoid = false;

  builtin_row_variant() = default;
  HEED_FORCE_INLINE explicit builtin_row_variant(const logit_settings& p) noexcept
      : sinks(p.sink_logits),
        ssmax(p.ssmax),
        inv_log_base(p.length_scale_base >= 2 ? 1.f / std::log(float(p.length_scale_base)) : 0.f),
        length_floor(p.length_scale_floor),
        sigmoid(p.sigmoid) {}

  // True when the parameters need no per-logit hook (this variant is enough).
  HEED_FORCE_INLINE static bool covers(const logit_settings& p) noexcept {
    return p.window_left < 0 && !(p.softcap > 0.f) && p.alibi_slopes == nullptr &&
           p.key_bias == nullptr && !p.sigmoid;
  }

  HEED_FORCE_INLINE float query_scale(int q_head, std::int64_t, std::int64_t n) const noexcept {
    float f = 1.f;
    if (ssmax || inv_log_base > 0.f) {
      const float ln = std::log(float(n));
      if (ssmax) f *= ssmax[q_head] * ln;
      if (inv_log_base > 0.f) f *= std::max(length_floor, ln * inv_log_base);
    }
    return f;
  }
  HEED_FORCE_INLINE void finalize_row(int q_head, std::int64_t, row_state& r) const noexcept {
    if (sigmoid) {
      unnormalized_row(r);
    } else if (sinks) {
      fold_virtual_logit(r, sinks[q_head]);
    }
  }
};

// ALiBi as the only per-logit built-in (with the row-level ones): a dedicated instantiation, so
// the most common single modifiers do not pay the catch-all's run-time switches per logit.
struct builtin_alibi_variant : builtin_row_variant {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_log2_transform = true;
  const float* slopes = nullptr;

  builtin_alibi_variant() = default;
  HEED_FORCE_INLINE explicit builtin_alibi_variant(const logit_settings& p) noexcept
      : builtin_row_variant(p), slopes(p.alibi_slopes) {}
  HEED_FORCE_INLINE static bool covers(const logit_settings& p) noexcept {
    return p.alibi_slopes != nullptr && p.window_left < 0 && !(p.softcap > 0.f) &&
           p.key_bias == nullptr && !p.sigmoid;
  }
  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    return alibi(slopes).transform_logits(s, c);
  }
  template <class A>
  xsimd::batch<float, A> transform_logits_log2(xsimd::batch<float, A> u,
                                               const lane_ctx<A>& c) const noexcept {
    return alibi::apply_log2<A>(u, c, slopes[c.q_head]);
  }
};

// Soft-capping as the only per-logit built-in (with the row-level ones).
struct builtin_softcap_variant : builtin_row_variant {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_log2_transform = true;
  static constexpr bool heavy_transform = true;
  float cap = 0.f;

  builtin_softcap_variant() = default;
  HEED_FORCE_INLINE explicit builtin_softcap_variant(const logit_settings& p) noexcept
      : builtin_row_variant(p), cap(p.softcap) {}
  HEED_FORCE_INLINE static bool covers(const logit_settings& p) noexcept {
    return p.softcap > 0.f && p.alibi_slopes == nullptr && p.window_left < 0 &&
           p.key_bias == nullptr && !p.sigmoid;
  }
  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    return softcap(cap).transform_logits(s, c);
  }
  template <class A>
  xsimd::batch<float, A> transform_logits_log2(xsimd::batch<float, A> u,
                                               const lane_ctx<A>&) const noexcept {
    return softcap::apply_log2<A>(u, cap);
  }
};

// Every built-in, per-logit ones included.
struct builtin_variant : builtin_row_variant {
  static constexpr bool has_logits_transform = true;
  static constexpr bool heavy_transform = true;  // it may hold a soft cap or a sigmoid
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_key_range = true;

  std::int64_t window_left = -1;
  float cap = 0.f;
  const float* slopes = nullptr;
  const float* key_bias = nullptr;
  std::int32_t key_bias_len = 0;
  const float* sigmoid_bias = nullptr;

  builtin_variant() = default;
  HEED_FORCE_INLINE explicit builtin_variant(const logit_settings& p) noexcept
      : builtin_row_variant(p),
        window_left(p.window_left),
        cap(p.softcap),
        slopes(p.alibi_slopes),
        key_bias(p.key_bias),
        key_bias_len(static_cast<std::int32_t>(p.key_bias_len)),
        sigmoid_bias(p.sigmoid_bias) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    using B = xsimd::batch<float, A>;
    if (slopes) s = xsimd::fnma(B(slopes[c.q_head]), xsimd::to_float(c.q_pos - c.k_pos), s);
    if (key_bias)
      s = add_key_bias<A>(s, c, key_bias + std::int64_t(c.q_head) * key_bias_len, key_bias_len);
    if (cap > 0.f) s = simd::soft_cap<A>(s, cap);
    if (sigmoid) s = log_sigmoid<A>(s + B(sigmoid_bias ? sigmoid_bias[c.q_head] : 0.f));
    return s;
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    if (window_left < 0) return xsimd::batch_bool<float, A>(true);
    return xsimd::bool_cast((c.q_pos - c.k_pos) <= static_cast<std::int32_t>(window_left));
  }
  HEED_FORCE_INLINE void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                                   std::int64_t&) const noexcept {
    if (window_left >= 0) k_lo = std::max(k_lo, q_lo - window_left);
  }
};

// The one mapping from logit settings to the variant that computes them, for the kernels and for
// every score that recomputes probabilities: f(no_variant{}) when only the scale is set,
// f(builtin_row_variant) when only row-level settings are (sinks, SSMax, length scaling), else
// f(builtin_variant); with Dedicated (the dense kernels, which instantiate them), ALiBi alone and
// soft-capping alone get their own types. Returns what f returns.
template <bool Dedicated = false, class F>
HEED_FORCE_INLINE auto with_builtin_variant(const logit_settings& s, F&& f) noexcept {
  if (!s.any_variant()) return f(no_variant{});
  if (builtin_row_variant::covers(s)) return f(builtin_row_variant(s));
  if constexpr (Dedicated) {
    if (builtin_alibi_variant::covers(s)) return f(builtin_alibi_variant(s));
    if (builtin_softcap_variant::covers(s)) return f(builtin_softcap_variant(s));
  }
  return f(builtin_variant(s));
}

HEED_ISA_END
}  // namespace heed
