// Row scaling by the number of keys a row sees, n (q_pos + 1 under the causal limit, kv_len when
// not causal), applied once per row to the query:
//   scalable_softmax (SSMax, "Scalable-Softmax Is Superior for Attention"): s -> s * a[h] * log n,
//     so the largest probability does not fade as the context grows;
//   entropy_invariant_scale (log-n scaling): s -> s * max(floor, log n / log base), which keeps
//     the attention entropy roughly constant past the training length `base`.
// Both are free in the inner loop (has_query_scale). The compiled library exposes them as
// dense_params::ssmax and dense_params::length_scale_base / length_scale_floor.
#pragma once

#include <algorithm>
#include <cmath>

#include "heed/attention/variant.hpp"

namespace heed {

struct scalable_softmax : variant_base {
  static constexpr bool has_query_scale = true;
  const float* a = nullptr;  // [Hq] learned per-head scale

  explicit scalable_softmax(const float* per_head) noexcept : a(per_head) {}

  HEED_FORCE_INLINE float query_scale(int q_head, std::int64_t, std::int64_t n) const noexcept {
    return a[q_head] * std::log(float(n));
  }
};

struct entropy_invariant_scale : variant_base {
  static constexpr bool has_query_scale = true;
  float inv_log_base = 0.f;
  float floor = 1.f;

  // base = the training length (>= 2); floor = the smallest factor (1: never sharpen less).
  entropy_invariant_scale(std::int64_t base, float lower_bound = 1.f) noexcept
      : inv_log_base(1.f / std::log(float(std::max<std::int64_t>(base, 2)))), floor(lower_bound) {}

  HEED_FORCE_INLINE float query_scale(int, std::int64_t, std::int64_t n) const noexcept {
    return std::max(floor, std::log(float(n)) * inv_log_base);
  }
};

}  // namespace heed
