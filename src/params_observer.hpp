// What the compiled kernels select from dense_params: the observer that writes entropy and feeds
// the decode prob tap, and whether the built-in variant is needed (private to src/).
#pragma once

#include <cstdint>

#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variants/builtin.hpp"
#include "heed/core/status.hpp"
#include "heed/scoring/observer.hpp"

namespace heed {
namespace detail {

struct params_observer {
  static constexpr bool wants_row_stats = true;
  static constexpr bool wants_probs = true;
  const dense_params* p;
  void on_row(int, std::int64_t, float, float) noexcept {}
  bool probs_active() const noexcept { return p->prob_tap != nullptr; }
  // Entropy only when asked for (a decode tap alone, as H2O's, needs no entropy sum).
  bool row_stats_active() const noexcept { return p->entropy != nullptr; }
  void on_probs(int h, std::int64_t k0, const float* probs, std::int64_t n) noexcept {
    p->prob_tap(p->prob_tap_user, h, k0, probs, n);
  }
};

HEED_FORCE_INLINE bool needs_builtin(const dense_params& p) noexcept {
  return p.window_left >= 0 || p.softcap > 0.f || p.alibi_slopes != nullptr ||
         p.sink_logits != nullptr || p.ssmax != nullptr || p.length_scale_base > 0 ||
         p.key_bias != nullptr || p.sigmoid;
}
HEED_FORCE_INLINE bool needs_observer(const dense_params& p) noexcept {
  return p.entropy != nullptr || (p.prob_tap != nullptr && p.q_len() == 1);
}

// Calls f(variant, observer) with the variant and observer the parameters need. With Dedicated
// (the dense kernels), ALiBi alone and soft-capping alone get their own instantiations when no
// observer is on; everything else per-logit goes through the catch-all builtin_variant.
template <bool Dedicated = false, class F>
status with_params_hooks(const dense_params& p, F&& f) noexcept {
  if (needs_observer(p)) {
    params_observer obs{&p};
    if (!needs_builtin(p)) return f(no_variant{}, obs);
    if (builtin_row_variant::covers(p)) return f(builtin_row_variant(p), obs);
    return f(builtin_variant(p), obs);
  }
  null_observer obs;
  if (!needs_builtin(p)) return f(no_variant{}, obs);
  if (builtin_row_variant::covers(p)) return f(builtin_row_variant(p), obs);
  if constexpr (Dedicated) {
    if (builtin_alibi_variant::covers(p)) return f(builtin_alibi_variant(p), obs);
    if (builtin_softcap_variant::covers(p)) return f(builtin_softcap_variant(p), obs);
  }
  return f(builtin_variant(p), obs);
}

}  // namespace detail
}  // namespace heed
