// H2O: the column mass summed over steps (column_mass.hpp), half the budget kept as the recent
// window. This header also brings the other column-mass policies (A2SF, TOVA, the normalized
// column mean, threshold), each in its own header.
#pragma once

#include <cstdint>

#include "heed/policy/a2sf.hpp"
#include "heed/policy/column_mass.hpp"
#include "heed/policy/column_mean.hpp"
#include "heed/policy/policy.hpp"
#include "heed/policy/threshold.hpp"
#include "heed/policy/tova.hpp"

namespace heed {

struct h2o_policy : policy_base<h2o_policy> {
  double recent_fraction = 0.5;  // share of the budget kept as the recent window (H2O: half)
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "h2o"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::sum, reduce);
  }
  selection_spec selection(std::int64_t budget) const noexcept {
    return detail::recent_selection(std::int64_t(double(budget) * recent_fraction));
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

}  // namespace heed
