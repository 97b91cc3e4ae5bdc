// SnapKV and its relatives, scored from an observation window of the last `window` queries.
//
//   snapkv_policy      per head: mean attention of the window's queries (recomputed over the
//                      current keys), 1-D pooled (max or avg, kernel 7), reduced over the query
//                      group; the window's own keys are kept (kvpress pads them with max + 1).
//   PyramidKV          snapkv_policy with per-layer budgets: eviction_config.layer_budgets from
//                      pyramid_budgets() (budgets.hpp).
//   AdaKV              head_adaptive(snapkv_policy{}) (wrappers.hpp): one top-k over the layer's
//                      heads with a per-head floor.
//   sage_kv_policy     SAGE-KV's one-shot selection after prefill: the last query's attention
//                      (window 1, no pooling), token-level top-k per head; call
//                      eviction_loop::evict_to() once after the prompt.
//
// The window rows are the newest cache entries when they are still cached (always, when the
// budget is at least the window: they are protected); the window is recomputed over the keys as
// they are now, so an eviction that removed some of them is accounted for.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "heed/policy/group_queries.hpp"
#include "heed/policy/policy.hpp"
#include "heed/scoring/observation_window.hpp"

namespace heed {

struct snapkv_policy : policy_base<snapkv_policy> {
  std::int64_t window = 32;
  pool_kind pool = pool_kind::max;
  int pool_kernel = 7;
  head_reduce reduce = head_reduce::mean;
  std::int64_t n_sink = 0;
  // The logits are the model's (policy_input::logits, from the eviction loop); a nonzero scale
  // here overrides theirs (for use outside the loop).
  float scale = 0.f;

  const char* name() const noexcept { return "snapkv"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.query_window = window;
    n.kv_rows = true;
    return n;
  }
  selection_spec selection(std::int64_t budget) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    s.protect.n_recent = std::min(window, budget);
    return s;
  }
  observation_window_options options() const noexcept {
    observation_window_options o;
    o.pool = pool;
    o.pool_kernel = pool_kernel;
    o.reduce = reduce;
    return o;
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return observation_window_workspace_size(in.cache->max_length(in.layer), options());
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    const std::int64_t len = in.length(head);
    const std::int64_t w = std::min(in.queries.seq, len);
    if (w == 0) {  // no query yet: keep the newest
      for (std::int64_t j = 0; j < len; ++j) out[j] = float(j);
      return status::ok;
    }
    tensor_view q = detail::group_queries(in, head);
    q.data = static_cast<const float*>(q.data) + (q.seq - w) * q.seq_stride;  // the last w
    q.seq = w;
    observation_window_outputs o;
    o.window = out;
    o.window_head_stride = len;
    observation_window_options opt = options();
    opt.logits = in.logits.heads_from(std::int64_t(head) * in.group());
    if (scale != 0.f) opt.logits.scale = scale;
    return observation_window_scores(q, in.keys(head), nullptr, 0, opt, o, ws);
  }
};

struct sage_kv_policy : snapkv_policy {
  sage_kv_policy() noexcept {
    window = 1;
    pool = pool_kind::none;
    pool_kernel = 1;
    n_sink = 4;
  }
  const char* name() const noexcept { return "sage_kv"; }
};

}  // namespace heed
