// CAOTE as a wrapper: re-score any policy by how much evicting each entry would change the
// latest attention output. The inner scores become probabilities (softmax per head) and
// c_j = p_j / (1 - p_j) * ||o - v_j||, with o the mean latest output of the head's query group
// (scoring/caote.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"
#include "heed/scoring/caote.hpp"

namespace heed {

template <class Inner>
struct caote_policy : detail::wrapper_base<Inner> {
  using detail::wrapper_base<Inner>::inner;

  const char* name() const noexcept { return "caote"; }
  score_needs needs() const noexcept {
    score_needs n = inner.needs();
    n.last_output = true;
    n.kv_rows = true;
    return n;
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    const std::int64_t len = in.cache->max_length(in.layer);
    return align_up(inner.score_workspace_size(in)) +
           align_up(caote_rescore_workspace_size(len, in.cache->head_dim())) +
           2 * workspace_alignment;
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (ws.size < score_workspace_size(in)) return status::workspace_too_small;
    const std::size_t a = inner.score_workspace_size(in);
    workspace_carver carve(workspace_carver::align_base(ws.data));
    void* wi = carve.take<unsigned char>(a);
    const std::size_t b =
        caote_rescore_workspace_size(in.cache->max_length(in.layer), in.cache->head_dim());
    void* wc = carve.take<unsigned char>(b);
    HEED_RETURN_IF_ERROR(inner.score(in, head, out, {wi, a}));
    if (in.last_output.seq == 0) return status::ok;  // nothing attended yet
    tensor_view o = in.last_output;
    const std::int64_t g = in.group();
    o.data = static_cast<const float*>(o.data) + std::int64_t(head) * g * o.head_stride;
    o.heads = g;
    return caote_rescore_scores(out, 0, o, in.values(head), out, 0, {wc, b});
  }
};
template <class Inner>
caote_policy<Inner> caote(Inner inner) {
  detail::check_policy<Inner>();
  return {{std::move(inner)}};
}

}  // namespace heed
