// A2SF: the column mass decayed by lambda each step (lambda = 1 is exactly H2O), a recent window
// kept.
#pragma once

#include <cstdint>

#include "heed/policy/column_mass.hpp"
#include "heed/policy/policy.hpp"

namespace heed {

struct a2sf_policy : policy_base<a2sf_policy> {
  float lambda = 0.95f;        // decay per step
  std::int64_t n_recent = 16;  // recent window always kept
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "a2sf"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::decay, reduce, lambda);
  }
  selection_spec selection(std::int64_t) const noexcept {
    return detail::recent_selection(n_recent);
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

}  // namespace heed
