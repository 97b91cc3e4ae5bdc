// LagKV: lag-relative spread of keys and values.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/policy/policy.hpp"
#include "heed/scoring/lagkv.hpp"

namespace heed {

// LagKV: each lag-sized partition is normalized by the next one's per-channel range; tokens that
// stand out (high spread) are kept. Sinks and the newest partition score +inf.
struct lagkv_policy : policy_base<lagkv_policy> {
  lagkv_options options{};

  const char* name() const noexcept { return "lagkv"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.kv_rows = true;
    return n;
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return lagkv_workspace_size(in.cache->head_dim(), options);
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    return lagkv_scores(in.keys(head), in.values(head), options, out, 0, ws);
  }
};

}  // namespace heed
