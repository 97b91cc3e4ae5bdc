// KeyDiff: keep the keys least similar to the head's mean key direction.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/policy/policy.hpp"
#include "heed/scoring/key_diff.hpp"

namespace heed {

// KeyDiff: keep the keys least similar to the head's mean key direction (score -cos(k_j, anchor),
// heed/scoring/key_diff.hpp). Attention-free: reads the keys only.
struct key_diff_policy : rows_policy_base<key_diff_policy> {
  const char* name() const noexcept { return "key_diff"; }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return key_diff_workspace_size(in.cache->head_dim());
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    return key_diff_scores(in.keys(head), out, 0, ws);
  }
};

}  // namespace heed
