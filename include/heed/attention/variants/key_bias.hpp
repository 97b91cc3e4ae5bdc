// Additive per-head per-key logit bias: s -> s + bias[h * len + k_pos] for keys k_pos < len.
//
// ZeroTuning: a bias of log(gamma) on key 0 scales that key's probability by gamma before the
// row renormalizes (len = 1). The same hook steers any fixed key set (give 0 elsewhere), or masks
// keys softly. The compiled library exposes it as dense_params::key_bias / key_bias_len.
#pragma once

#include <cstdint>

#include "heed/attention/variant.hpp"

namespace heed {

struct key_bias : variant_base {
  static constexpr bool has_logits_transform = true;
  const float* bias = nullptr;  // [Hq][len]
  std::int32_t len = 0;

  key_bias(const float* b, std::int32_t n) noexcept : bias(b), len(n) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    const auto in = c.k_pos < I(len);
    const I idx = xsimd::select(in, c.k_pos, I(0));
    return s + xsimd::select(xsimd::bool_cast(in),
                             B::gather(bias + std::int64_t(c.q_head) * len, idx), B(0.f));
  }
};

// ZeroTuning on one key (key 0 by default): s -> s + bias[h] for that key only.
struct zero_tuning : variant_base {
  static constexpr bool has_logits_transform = true;
  const float* bias = nullptr;  // [Hq], log(gamma) per head
  std::int32_t key = 0;

  explicit zero_tuning(const float* b, std::int32_t k = 0) noexcept : bias(b), key(k) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    return s + xsimd::select(xsimd::bool_cast(c.k_pos == I(key)), B(bias[c.q_head]), B(0.f));
  }
};

}  // namespace heed
