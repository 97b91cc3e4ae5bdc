// Expected Attention: the expected softmax weight under a Gaussian of the recent queries.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/policy/group_queries.hpp"
#include "heed/policy/policy.hpp"
#include "heed/scoring/expected_attention.hpp"

namespace heed {

// Expected Attention (kvpress): the future queries are modelled as N(mu, Sigma) of the last
// `window` queries; an entry's score is its expected softmax weight times ||v||. Sinks kept.
struct expected_attention_policy : policy_base<expected_attention_policy> {
  std::int64_t window = 64;
  std::int64_t n_sink = 4;
  expected_attention_options options{};

  const char* name() const noexcept { return "expected_attention"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.query_window = window;
    n.kv_rows = true;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    return s;
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return expected_attention_workspace_size(in.cache->max_length(in.layer), in.cache->head_dim(),
                                             options);
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (in.queries.seq == 0) {  // no query seen yet: nothing to expect, keep the newest
      for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
      return status::ok;
    }
    return expected_attention_scores(detail::group_queries(in, head), in.keys(head),
                                     in.values(head), options, out, 0, ws);
  }
};

}  // namespace heed
