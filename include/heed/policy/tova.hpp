// TOVA: the newest query's attention.
#pragma once

#include <cstdint>

#include "heed/policy/column_mass.hpp"
#include "heed/policy/policy.hpp"

namespace heed {

// TOVA: the newest query's attention (mean over the group's query heads); each step evicts the
// entries it attends to least.
struct tova_policy : policy_base<tova_policy> {
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "tova"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::last, reduce);
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

}  // namespace heed
