// Per-head logit threshold (Top-theta attention): keys whose scaled logit s = scale q.k (after any
// earlier transform) is below theta[h] are dropped from the row, replacing a per-row top-k by a
// calibrated per-head threshold (sparse/top_theta.hpp computes theta from calibration rows). A
// row whose every logit is below theta is empty (O = 0, LSE = -inf). In the tiled kernels every
// logit is still computed; the saving Top-theta reports comes from skipping the dropped V rows in
// decode, which this variant does not do.
#pragma once

#include <xsimd/xsimd.hpp>

#include "heed/attention/variant.hpp"
#include "heed/simd/math.hpp"

namespace heed {

struct logit_threshold : variant_base {
  static constexpr bool has_logits_transform = true;
  const float* theta = nullptr;  // [Hq], natural-log units like the logits

  explicit logit_threshold(const float* t) noexcept : theta(t) {}

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    using B = xsimd::batch<float, A>;
    return xsimd::select(s >= B(theta[c.q_head]), s, B(-std::numeric_limits<float>::infinity()));
  }
};

}  // namespace heed
