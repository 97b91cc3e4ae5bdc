// What the compiled kernels select from dense_params: the observer that writes entropy and feeds
// the decode prob tap, and whether the built-in variant is needed (private to src/).
#pragma once

#include <cstdint>

#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variants/builtin.hpp"
#include "heed/config.hpp"
#include "heed/core/status.hpp"
#include "heed/scoring/observer.hpp"

namespace heed {
HEED_ISA_BEGIN
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

HEED_FORCE_INLINE bool needs_observer(const dense_params& p) noexcept {
  return p.entropy != nullptr || (p.prob_tap != nullptr && p.q_len() == 1);
}

// Calls f(variant, observer) with the variant the logit settings need (with_builtin_variant; with
// Dedicated, ALiBi alone and soft-capping alone get their own instantiations when no observer is
// on) and the observer the outputs need.
template <bool Dedicated = false, class F>
status with_params_hooks(const dense_params& p, F&& f) noexcept {
  if (needs_observer(p)) {
    params_observer obs{&p};
    return with_builtin_variant(p, [&](const auto& v) { return f(v, obs); });
  }
  null_observer obs;
  return with_builtin_variant<Dedicated>(p, [&](const auto& v) { return f(v, obs); });
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
