// Policies that score without attention probabilities: KNorm, KeyDiff, Expected Attention, LagKV.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/policy/policy.hpp"
#include "heed/scoring/expected_attention.hpp"
#include "heed/scoring/key_diff.hpp"
#include "heed/scoring/key_norm.hpp"
#include "heed/scoring/lagkv.hpp"

namespace heed {

namespace detail {
// The query heads of KV head h's group, as a [n, G, d] view.
inline tensor_view group_queries(const policy_input& in, int head) noexcept {
  tensor_view q = in.queries;
  const std::int64_t g = in.group();
  q.data = static_cast<const float*>(q.data) + std::int64_t(head) * g * q.head_stride;
  q.heads = g;
  return q;
}
}  // namespace detail

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

// KeyDiff: keep the keys least similar to the head's mean key direction (score -cos(k_j, anchor),
// heed/scoring/key_diff.hpp). Attention-free: reads the keys only.
struct key_diff_policy : policy_base<key_diff_policy> {
  std::int64_t n_sink = 0;
  const char* name() const noexcept { return "key_diff"; }
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
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return key_diff_workspace_size(in.cache->head_dim());
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    return key_diff_scores(in.keys(head), out, 0, ws);
  }
};

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
