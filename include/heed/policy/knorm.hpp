// KNorm: keep the keys of lowest L2 norm.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/policy/policy.hpp"
#include "heed/scoring/key_norm.hpp"

namespace heed {

// KNorm: keys with a low L2 norm draw attention; keep the lowest norms (score -||k||).
struct knorm_policy : policy_base<knorm_policy> {
  std::int64_t n_sink = 0;
  const char* name() const noexcept { return "knorm"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.kv_rows = true;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return key_norm_scores(in.keys(head), out, 0);
  }
};

}  // namespace heed
