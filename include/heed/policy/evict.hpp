// One eviction of one layer: score every over-budget head with a policy, select keep-sets,
// compact the cache.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/core/detail/grow_vector.hpp"
#include "heed/core/status.hpp"
#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"
#include "heed/policy/select.hpp"

namespace heed {

// Buffers reused across evictions: they grow to the largest cache seen, then stop allocating.
struct eviction_scratch {
  std::vector<float> scores;       // [kv_heads][max_len]
  std::vector<std::int32_t> keep;  // [kv_heads][max_len]
  std::vector<std::int32_t> select;
  std::vector<unsigned char> ws;
  std::vector<const float*> score_ptrs;
  std::vector<std::int32_t*> keep_ptrs;
  std::vector<std::int64_t> lens, n_keep, targets;
  std::vector<unsigned char> kv;  // one paged head's K and V copied out (score_needs::kv_rows)
};

namespace detail {
// Points in.keys(head) / in.values(head) at contiguous copies when the policy reads them and the
// head spans several pages of a paged cache.
inline status gather_head(const kv_cache& cache, policy_input& in, int head,
                          eviction_scratch& s) noexcept {
  in.gathered_head = -1;
  if (!cache.paged() || cache.page_count(in.layer, head) <= 1) return status::ok;
  const std::int64_t len = cache.length(in.layer, head);
  const std::size_t half = std::size_t(len) * cache.row_bytes();
  if (!grow_vector(s.kv, 2 * half)) return status::out_of_memory;
  HEED_RETURN_IF_ERROR(cache.gather(in.layer, head, 0, s.kv.data(), half));
  HEED_RETURN_IF_ERROR(cache.gather(in.layer, head, 1, s.kv.data() + half, half));
  // The head's own views (type, group, strides), pointed at the copies.
  in.gathered_keys = cache.keys(in.layer, head);
  in.gathered_keys.data = s.kv.data();
  in.gathered_values = cache.values(in.layer, head);
  in.gathered_values.data = s.kv.data() + half;
  in.gathered_head = head;
  return status::ok;
}
}  // namespace detail

namespace detail {
// evict_layer once the policy passed its contract.
template <class Policy>
status evict_layer_impl(kv_cache& cache, Policy& policy, const policy_input& in_,
                        const std::int64_t* target, eviction_scratch& s) noexcept {
  if (in_.cache != &cache) return status::invalid_argument;
  policy_input in = in_;  // may point at gathered copies of paged heads
  if (!cache.valid(in.layer, 0) || target == nullptr) return status::invalid_argument;
  const int heads = cache.kv_heads();
  if (!detail::grow_vector(s.score_ptrs, heads) || !detail::grow_vector(s.keep_ptrs, heads) ||
      !detail::grow_vector(s.lens, heads) || !detail::grow_vector(s.n_keep, heads))
    return status::out_of_memory;
  std::int64_t max_len = 0, total_len = 0, total_target = 0;
  bool over = false;
  if (!detail::grow_vector(s.targets, heads)) return status::out_of_memory;
  for (int h = 0; h < heads; ++h) {
    if (target[h] < 0) return status::invalid_argument;
    s.targets[h] = std::max<std::int64_t>(0, policy.head_budget(in, h, target[h]));
  }
  target = s.targets.data();
  for (int h = 0; h < heads; ++h) {
    const std::int64_t len = cache.length(in.layer, h);
    s.lens[h] = len;
    max_len = std::max(max_len, len);
    total_len += len;
    total_target += target[h];
    over = over || len > target[h];
  }
  const selection_spec sel = policy.selection(in.budget);
  const bool global = sel.kind == select_kind::global_top_k;
  if (global ? total_len <= total_target : !over) return status::ok;

  const std::size_t stride = std::size_t(max_len);
  const std::size_t ws_bytes = policy.score_workspace_size(in);
  const std::int64_t sel_size =
      global ? select_global_scratch_size(s.lens.data(), heads) : select_scratch_size(max_len);
  if (!detail::grow_vector(s.scores, stride * heads) ||
      !detail::grow_vector(s.keep, stride * heads) ||
      !detail::grow_vector(s.select, std::size_t(sel_size)) ||
      !detail::grow_vector(s.ws, ws_bytes + workspace_alignment))
    return status::out_of_memory;
  const workspace ws{s.ws.data(), s.ws.size()};
  const bool gather = policy.needs().kv_rows;

  for (int h = 0; h < heads; ++h) {
    const std::int64_t len = s.lens[h];
    s.score_ptrs[h] = s.scores.data() + h * stride;
    s.keep_ptrs[h] = s.keep.data() + h * stride;
    if (len == 0 || (!global && len <= target[h])) continue;
    if (gather) HEED_RETURN_IF_ERROR(detail::gather_head(cache, in, h, s));
    HEED_RETURN_IF_ERROR(policy.score(in, h, s.scores.data() + h * stride, ws));
  }

  if (global) {
    HEED_RETURN_IF_ERROR(select_global_top_k(s.score_ptrs.data(), s.lens.data(), heads,
                                             total_target, sel.floor_fraction, sel.protect,
                                             s.keep_ptrs.data(), s.n_keep.data(), s.select.data()));
    HEED_DASSERT(select_detail::sum(s.n_keep.data(), heads) ==
                 std::min(total_target, total_len));  // AdaKV keeps exactly the total budget
    for (int h = 0; h < heads; ++h)
      if (s.n_keep[h] < s.lens[h])
        HEED_RETURN_IF_ERROR(cache.keep(in.layer, h, s.keep_ptrs[h], s.n_keep[h]));
    return status::ok;
  }

  for (int h = 0; h < heads; ++h) {
    const std::int64_t len = s.lens[h];
    if (len <= target[h]) continue;
    const float* sc = s.score_ptrs[h];
    std::int32_t* keep = s.keep_ptrs[h];
    std::int64_t n_keep = 0;
    switch (sel.kind) {
      case select_kind::top_k:
        HEED_RETURN_IF_ERROR(
            select_top_k(sc, len, target[h], sel.protect, keep, &n_keep, s.select.data()));
        break;
      case select_kind::threshold:
        HEED_RETURN_IF_ERROR(select_threshold(sc, len, sel.tau, std::min(sel.min_keep, target[h]),
                                              target[h], sel.protect, keep, &n_keep,
                                              s.select.data()));
        break;
      case select_kind::coverage:
        HEED_RETURN_IF_ERROR(select_coverage(sc, len, sel.gamma, std::min(sel.min_keep, target[h]),
                                             target[h], sel.protect, keep, &n_keep,
                                             s.select.data()));
        break;
      default:
        return status::invalid_argument;
    }
    HEED_DASSERT(n_keep >= 0 && n_keep <= target[h] && n_keep < len);  // the selection's promise
    HEED_RETURN_IF_ERROR(cache.keep(in.layer, h, keep, n_keep));
  }
  return status::ok;
}
}  // namespace detail

// Brings every KV head h of in.layer down to at most target[h] entries (heads already within
// their target are left alone, except under global_top_k, which redistributes the layer's total
// sum(target) across all heads). in.budget is passed to the policy as the nominal budget. The
// policy's contract is checked at compile time (policy_traits.hpp).
template <class Policy>
status evict_layer(kv_cache& cache, Policy& policy, const policy_input& in,
                   const std::int64_t* target, eviction_scratch& s) noexcept {
  if constexpr (!detail::check_policy<Policy>()) {
    (void)cache, (void)policy, (void)in, (void)target, (void)s;
    return status::invalid_argument;  // not compiled: a contract static_assert failed
  } else {
    return detail::evict_layer_impl(cache, policy, in, target, s);
  }
}

}  // namespace heed
