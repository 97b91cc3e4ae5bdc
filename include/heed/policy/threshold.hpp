// DMS-style threshold eviction on accumulated attention.
#pragma once

#include <cstdint>

#include "heed/policy/column_mass.hpp"
#include "heed/policy/policy.hpp"

namespace heed {

// DMS-style threshold eviction on accumulated attention: keep entries whose accumulated mass is
// at least tau (clamped to [min_keep, budget]) plus a recent window.
struct threshold_policy : policy_base<threshold_policy> {
  float tau = 0.01f;
  std::int64_t min_keep = 0;
  std::int64_t n_recent = 16;

  const char* name() const noexcept { return "threshold"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::sum, head_reduce::mean);
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s = detail::recent_selection(n_recent, select_kind::threshold);
    s.tau = tau;
    s.min_keep = min_keep;
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

}  // namespace heed
