// Sigmoid attention ("When Attention Sink Emerges"): p_ij = sigmoid(s_ij + b[h]) with no
// normalization across the row, o_i = sum_j p_ij v_j. Sinks do not form because the keys do not
// compete for a unit of mass.
//
// It runs on the flash kernel unchanged: the transform turns each logit into log sigmoid(s + b),
// so exp(logit - m) * exp(m) = sigmoid(s + b), and the row finalize replaces the softmax
// normalizer by 1 (m = 0, d = 1). The kernel then reports LSE 0 and entropy 0 for every row, and
// the decode probability tap reports the sigmoid probabilities themselves.
#pragma once

#include "heed/attention/variant.hpp"
#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN

// log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|)), accurate for every x.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> log_sigmoid(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
  return xsimd::min(x, B(0.f)) - xsimd::log1p(xsimd::exp(-xsimd::abs(x)));
}

// The row's normalizer becomes 1: the output is the accumulated sum itself.
HEED_FORCE_INLINE void unnormalized_row(row_state& r) noexcept {
  r.m = 0.f;
  r.d = 1.f;
  r.t = 0.f;
}

struct sigmoid_attention : variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool heavy_transform = true;
  static constexpr bool has_row_finalize = true;
  const float* bias = nullptr;  // [Hq], or null for bias 0

  sigmoid_attention() = default;
  explicit sigmoid_attention(const float* b) noexcept : bias(b) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    return log_sigmoid<A>(s + xsimd::batch<float, A>(bias ? bias[c.q_head] : 0.f));
  }
  HEED_FORCE_INLINE void finalize_row(int, std::int64_t, row_state& r) const noexcept {
    unnormalized_row(r);
  }
};

HEED_ISA_END
}  // namespace heed
