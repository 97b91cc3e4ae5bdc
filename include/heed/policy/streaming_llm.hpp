// StreamingLLM: keep the first n_sink entries (attention sinks) and the most recent ones.
#pragma once

#include <cstdint>

#include "heed/policy/policy.hpp"

namespace heed {

struct streaming_llm_policy : policy_base<streaming_llm_policy> {
  std::int64_t n_sink = 4;

  const char* name() const noexcept { return "streaming_llm"; }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    return s;
  }
  // Newer entries score higher: top-k keeps the sinks (protected) and the most recent.
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    const std::int64_t n = in.length(head);
    for (std::int64_t j = 0; j < n; ++j) out[j] = float(j);
    return status::ok;
  }
};

}  // namespace heed
