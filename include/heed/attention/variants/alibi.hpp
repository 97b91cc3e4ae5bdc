// ALiBi: s -> s - slope[h] * (q_pos - k_pos), one slope per query head.
#pragma once

#include <cmath>

#include "heed/attention/variant.hpp"
#include "heed/config.hpp"
#include "heed/simd/math.hpp"

namespace heed {
HEED_ISA_BEGIN

struct alibi : variant_base {
  static constexpr bool has_logits_transform = true;
  const float* slopes = nullptr;  // [Hq]

  explicit alibi(const float* s) noexcept : slopes(s) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    const auto dist = xsimd::to_float(c.q_pos - c.k_pos);
    return xsimd::fnma(xsimd::batch<float, A>(slopes[c.q_head]), dist, s);
  }
  static constexpr bool has_log2_transform = true;
  template <class A>
  xsimd::batch<float, A> transform_logits_log2(xsimd::batch<float, A> u,
                                               const lane_ctx<A>& c) const noexcept {
    return apply_log2<A>(u, c, slopes[c.q_head]);
  }
  // s - slope * (q_pos - k_pos) in log2 units.
  template <class A>
  HEED_FORCE_INLINE static xsimd::batch<float, A> apply_log2(xsimd::batch<float, A> u,
                                                             const lane_ctx<A>& c,
                                                             float slope) noexcept {
    const auto dist = xsimd::to_float(c.q_pos - c.k_pos);
    return xsimd::fnma(xsimd::batch<float, A>(slope * simd::log2e), dist, u);
  }
};

// The standard ALiBi slopes for n heads: 2^(-8 i / n) for i = 1..n (n a power of two; otherwise
// the interleaved closest-power-of-two scheme of the paper).
inline void alibi_default_slopes(int n, float* out) noexcept {
  int p = 1;
  while (p * 2 <= n) p *= 2;
  for (int i = 0; i < p; ++i) out[i] = std::pow(2.f, -8.f * float(i + 1) / float(p));
  for (int i = p, j = 0; i < n; ++i, j += 2) out[i] = std::pow(2.f, -4.f * float(j + 1) / float(p));
}

HEED_ISA_END
}  // namespace heed
