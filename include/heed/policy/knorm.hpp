// KNorm: keep the keys of lowest L2 norm.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/policy/policy.hpp"
#include "heed/scoring/key_norm.hpp"

namespace heed {

// KNorm: keys with a low L2 norm draw attention; keep the lowest norms (score -||k||).
struct knorm_policy : rows_policy_base<knorm_policy> {
  const char* name() const noexcept { return "knorm"; }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return key_norm_scores(in.keys(head), out, 0);
  }
};

}  // namespace heed
