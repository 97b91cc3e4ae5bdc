// Q-Filters policy: keep the keys with the largest projection on their head's filter direction
// (heed/scoring/q_filters.hpp). Attention-free at use time: it reads the keys and the filters.
//
// The filters are calibrated offline with q_filters_calibrate (per layer, from the model's
// queries on some text: heed-eval does it on its calibration text) and handed over as
// [layers][kv_heads][head_dim] floats. Without them (the registry's "q_filters", the C API) the
// policy calibrates at each eviction from the last `window` queries of the layer the eviction
// loop keeps for it (score_needs::query_window), the same rule on fewer queries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "heed/policy/policy.hpp"
#include "heed/scoring/q_filters.hpp"

namespace heed {

struct q_filters_policy : policy_base<q_filters_policy> {
  // [layers][kv_heads][head_dim]: filters from q_filters_calibrate; empty: calibrate from the
  // recent queries at each eviction.
  std::vector<float> filters;
  std::int64_t window = 64;  // queries kept for the calibration without filters (1 .. 65536)
  std::int64_t n_sink = 0;   // kvpress's QFilterPress protects nothing

  const char* name() const noexcept { return "q_filters"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.kv_rows = true;
    n.query_window = filters.empty() ? window : 0;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    return s;
  }
  // Self-calibration: the calibration's scratch plus one filter.
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    if (!filters.empty()) return 0;
    const std::int64_t d = in.cache->head_dim();
    return q_filters_calibration_workspace_size(d) + align_up(sizeof(float) * std::size_t(d)) +
           workspace_alignment;
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    const std::int64_t d = in.cache->head_dim();
    if (!filters.empty()) {
      if (std::int64_t(filters.size()) != std::int64_t(in.n_layers) * in.kv_heads() * d)
        return status::shape_mismatch;
      const float* f = filters.data() + (std::int64_t(in.layer) * in.kv_heads() + head) * d;
      return q_filters_scores(in.keys(head), f, out, 0);
    }
    if (window < 1 || window > (1 << 16)) return status::invalid_argument;
    if (in.queries.seq == 0) {  // no query seen yet: nothing to calibrate from, keep the newest
      for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
      return status::ok;
    }
    if (ws.size < score_workspace_size(in)) return status::workspace_too_small;
    if (ws.data == nullptr) return status::null_pointer;
    workspace_carver c(workspace_carver::align_base(ws.data));
    float* f = c.take<float>(std::size_t(d));
    const std::size_t cal = q_filters_calibration_workspace_size(d);
    void* cal_ws = c.take<unsigned char>(cal);
    tensor_view q = in.queries;  // the group of KV head `head`: [n, G, d]
    const std::int64_t g = in.group();
    q.data = static_cast<const float*>(q.data) + std::int64_t(head) * g * q.head_stride;
    q.heads = int(g);
    HEED_RETURN_IF_ERROR(q_filters_calibrate(q, 1, f, {cal_ws, cal}));
    return q_filters_scores(in.keys(head), f, out, 0);
  }
};

}  // namespace heed
