// Additive per-head per-key logit bias: s -> s + bias[h * len + k_pos] for keys k_pos < len.
//
// ZeroTuning: a bias of log(gamma) on key 0 scales that key's probability by gamma before the
// row renormalizes (len = 1). The same hook steers any fixed key set (give 0 elsewhere), or masks
// keys softly. The compiled library exposes it as dense_params::key_bias / key_bias_len.
#pragma once

#include <cstdint>

#include "heed/attention/variant.hpp"
#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN

// s + row[k_pos] in the lanes whose key is below len. Positions compare as floats (exact below
// 2^24, the longest table this takes) and the table is read lane by lane: integer selects and
// gathers do not compile with xsimd 8.1's AVX-512 at -O0, and the lanes that touch a short table
// (ZeroTuning) are rare enough that a vector gather would not pay.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> add_key_bias(xsimd::batch<float, A> s,
                                                      const lane_ctx<A>& c, const float* row,
                                                      std::int32_t len) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::size_t L = B::size;
  const auto in = xsimd::to_float(c.k_pos) < B(float(len));
  if (!xsimd::any(in)) return s;
  alignas(64) std::int32_t pos[L];
  alignas(64) float add[L];
  c.k_pos.store_aligned(pos);
  for (std::size_t l = 0; l < L; ++l) add[l] = pos[l] >= 0 && pos[l] < len ? row[pos[l]] : 0.f;
  return s + B::load_aligned(add);
}

struct key_bias : variant_base {
  static constexpr bool has_logits_transform = true;
  const float* bias = nullptr;  // [Hq][len]
  std::int32_t len = 0;

  key_bias(const float* b, std::int32_t n) noexcept : bias(b), len(n) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    return add_key_bias<A>(s, c, bias + std::int64_t(c.q_head) * len, len);
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

HEED_ISA_END
}  // namespace heed
