// The normalized column mean (ZipCache saliency, the ACT sink detector).
#pragma once

#include <cstdint>

#include "heed/policy/column_mass.hpp"
#include "heed/policy/policy.hpp"

namespace heed {

// Normalized column mean (ZipCache saliency, the ACT sink detector): accumulated attention
// divided by the number of queries that saw the entry, step - position (every query after an
// entry attends to it). Unlike H2O it does not favour old entries for their age.
struct column_mean_policy : policy_base<column_mean_policy> {
  std::int64_t n_recent = 16;

  const char* name() const noexcept { return "column_mean"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::sum, head_reduce::mean);
  }
  selection_spec selection(std::int64_t) const noexcept {
    return detail::recent_selection(n_recent);
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    const float* mass = in.channel(head, 0);
    const std::int64_t* pos = in.positions(head);
    for (std::int64_t j = 0; j < in.length(head); ++j) {
      const std::int64_t seen = in.step - pos[j];
      out[j] = seen > 0 ? mass[j] / float(seen) : mass[j];
    }
    return status::ok;
  }
};

}  // namespace heed
