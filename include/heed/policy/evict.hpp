// One eviction of one layer: score every over-budget head with a policy, select keep-sets,
// compact the cache; in a tiered cache (kv_cache_config::tiered), also demote the lowest-scored
// kept entries of the high tier to the low one.
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
  std::vector<unsigned char> kv;   // one head's K and V copied out (score_needs::kv_rows)
  std::vector<float> cand_scores;  // demotion: the kept high-tier entries' scores
  std::vector<std::int32_t> cand, stay;
  std::vector<std::int32_t> demote;    // demotion: [kv_heads][max_len] entries to demote
  std::vector<std::int64_t> n_demote;  // [kv_heads]
};

namespace detail {
// The most bytes gather_head copies for a head of at most len entries.
inline std::size_t gather_bytes(const kv_cache& cache, std::int64_t len) noexcept {
  return 2 * std::size_t(len) *
         std::max(std::size_t(cache.head_dim()) * sizeof(float), cache.row_bytes());
}

// Points in.keys(head) / in.values(head) at contiguous copies when the policy reads them and the
// head spans several pages of a paged cache.
inline status gather_head(const kv_cache& cache, policy_input& in, int head,
                          eviction_scratch& s) noexcept {
  in.gathered_head = -1;
  const std::int64_t len = cache.length(in.layer, head);
  if (cache.low_length(in.layer, head) > 0) {
    // Two tiers of two row types: one f32 copy in entry order.
    const std::size_t half = std::size_t(len) * std::size_t(cache.head_dim());
    if (!grow_vector(s.kv, 2 * half * sizeof(float))) return status::out_of_memory;
    float* kf = reinterpret_cast<float*>(s.kv.data());
    HEED_RETURN_IF_ERROR(cache.gather_float(in.layer, head, 0, kf, half));
    HEED_RETURN_IF_ERROR(cache.gather_float(in.layer, head, 1, kf + half, half));
    in.gathered_keys = make_view(kf, len, 1, cache.head_dim());
    in.gathered_values = make_view(kf + half, len, 1, cache.head_dim());
    in.gathered_head = head;
    return status::ok;
  }
  if (!cache.paged() || cache.page_count(in.layer, head) <= 1) return status::ok;
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

// Demotion in a tiered cache: of the entries keep[0..n_keep) (ascending), those of the high tier
// beyond the best `high_target` by score (protected entries first, select_top_k's rule) are to be
// demoted: written to out (ascending), their count to *n_out. Changes nothing; s.cand,
// s.cand_scores, s.stay and s.select hold at least n_keep entries (select_scratch_size).
// Demoting before the keep() does not move any index.
inline status plan_demotion(const kv_cache& cache, int layer, int head, const float* sc,
                            const std::int32_t* keep, std::int64_t n_keep, std::int64_t high_target,
                            const protect_spec& protect, eviction_scratch& s, std::int32_t* out,
                            std::int64_t* n_out) noexcept {
  *n_out = 0;
  const std::uint8_t* tier = cache.tiers(layer, head);
  std::int64_t m = 0;
  for (std::int64_t i = 0; i < n_keep; ++i)
    if (tier[keep[i]] == 0) {
      s.cand[std::size_t(m)] = keep[i];
      s.cand_scores[std::size_t(m++)] = sc[keep[i]];
    }
  if (m <= high_target) return status::ok;
  std::int64_t n_stay = 0;
  HEED_RETURN_IF_ERROR(select_top_k(s.cand_scores.data(), m, high_target, protect, s.stay.data(),
                                    &n_stay, s.select.data()));
  std::int64_t n_demote = 0, j = 0;
  for (std::int64_t r = 0; r < m; ++r) {
    if (j < n_stay && s.stay[std::size_t(j)] == r) {
      ++j;
      continue;
    }
    out[n_demote++] = s.cand[std::size_t(r)];
  }
  *n_out = n_demote;
  return status::ok;
}

// evict_layer once the policy passed its contract. reserve_only: only the allocations of such an
// eviction of the cache as it is now (the low tier's rows for the most entries it may demote), so
// that the eviction cannot fail for lack of memory later, when only the score channels, the
// queries or the outputs the policy reads have changed (the eviction loop's step).
template <class Policy>
status evict_layer_impl(kv_cache& cache, Policy& policy, const policy_input& in_,
                        const std::int64_t* target, eviction_scratch& s,
                        const std::int64_t* high_target, std::int64_t append_after,
                        bool reserve_only = false) noexcept {
  if (in_.cache != &cache) return status::invalid_argument;
  policy_input in = in_;  // may point at gathered copies of paged heads
  if (!cache.valid(in.layer, 0) || target == nullptr) return status::invalid_argument;
  const int heads = cache.kv_heads();
  if (append_after < 0) return status::invalid_argument;
  if (!detail::grow_vector(s.score_ptrs, heads) || !detail::grow_vector(s.keep_ptrs, heads) ||
      !detail::grow_vector(s.lens, heads) || !detail::grow_vector(s.n_keep, heads) ||
      !detail::grow_vector(s.n_demote, heads))
    return status::out_of_memory;
  if (high_target && !cache.tiered()) return status::invalid_argument;
  std::int64_t max_len = 0, total_len = 0, total_target = 0;
  bool over = false, high_over = false;
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
    if (high_target) {
      if (high_target[h] < 0) return status::invalid_argument;
      high_over = high_over || len - cache.low_length(in.layer, h) > high_target[h];
    }
  }
  // Heads to score: over their target, or over their high target.
  auto high_over_at = [&](int h) {
    return high_target && s.lens[h] - cache.low_length(in.layer, h) > high_target[h];
  };
  const selection_spec sel = policy.selection(in.budget);
  const bool global = sel.kind == select_kind::global_top_k;
  if ((global ? total_len <= total_target : !over) && !high_over) return status::ok;
  const bool global_cut = global && total_len > total_target;

  const std::size_t stride = std::size_t(max_len);
  const std::size_t ws_bytes = policy.score_workspace_size(in);
  const std::int64_t sel_size =
      global ? select_global_scratch_size(s.lens.data(), heads) : select_scratch_size(max_len);
  // All or nothing: every allocation (scratch, the low tier's rows, the room of a following
  // append) and every check comes before the first change to the cache, so a failure leaves it as
  // it was. Scoring and selection only read the cache; demote() and keep() come last.
  if (!detail::grow_vector(s.scores, stride * heads) ||
      !detail::grow_vector(s.keep, stride * heads) ||
      !detail::grow_vector(s.select, std::size_t(sel_size)) ||
      !detail::grow_vector(s.ws, ws_bytes + workspace_alignment))
    return status::out_of_memory;
  if (high_target &&
      (!detail::grow_vector(s.demote, stride * heads) || !detail::grow_vector(s.cand, stride) ||
       !detail::grow_vector(s.cand_scores, stride) || !detail::grow_vector(s.stay, stride) ||
       !detail::grow_vector(s.select, std::size_t(select_scratch_size(max_len)))))
    return status::out_of_memory;
  const workspace ws{s.ws.data(), s.ws.size()};
  const bool gather = policy.needs().kv_rows;
  if (reserve_only) {
    if (gather && !grow_vector(s.kv, gather_bytes(cache, max_len))) return status::out_of_memory;
    for (int h = 0; high_target && h < heads; ++h) {
      const std::int64_t high = s.lens[h] - cache.low_length(in.layer, h);
      if (high > high_target[h])
        HEED_RETURN_IF_ERROR(cache.reserve_low(in.layer, h, high - high_target[h]));
    }
    return status::ok;
  }

  for (int h = 0; h < heads; ++h) {
    const std::int64_t len = s.lens[h];
    s.score_ptrs[h] = s.scores.data() + h * stride;
    s.keep_ptrs[h] = s.keep.data() + h * stride;
    if (len == 0 || (!global_cut && len <= target[h] && !high_over_at(h))) continue;
    if (gather) HEED_RETURN_IF_ERROR(detail::gather_head(cache, in, h, s));
    HEED_RETURN_IF_ERROR(policy.score(in, h, s.scores.data() + h * stride, ws));
  }

  // 1. Keep-sets: n_keep[h] = -1 leaves head h alone.
  // A head that keeps everything: the identity keep-set (demotion reads it).
  auto keep_all = [&](int h) {
    for (std::int64_t i = 0; i < s.lens[h]; ++i) s.keep_ptrs[h][i] = std::int32_t(i);
    s.n_keep[h] = s.lens[h];
  };
  if (global_cut) {
    HEED_RETURN_IF_ERROR(select_global_top_k(s.score_ptrs.data(), s.lens.data(), heads,
                                             total_target, sel.floor_fraction, sel.protect,
                                             s.keep_ptrs.data(), s.n_keep.data(), s.select.data()));
    HEED_DASSERT(select_detail::sum(s.n_keep.data(), heads) ==
                 std::min(total_target, total_len));  // AdaKV keeps exactly the total budget
  } else {
    for (int h = 0; h < heads; ++h) {
      const std::int64_t len = s.lens[h];
      s.n_keep[h] = -1;
      if (len <= target[h] || global) {
        if (high_over_at(h)) keep_all(h);
        continue;
      }
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
          HEED_RETURN_IF_ERROR(select_coverage(sc, len, sel.gamma,
                                               std::min(sel.min_keep, target[h]), target[h],
                                               sel.protect, keep, &n_keep, s.select.data()));
          break;
        default:
          return status::invalid_argument;
      }
      HEED_DASSERT(n_keep >= 0 && n_keep <= target[h] && n_keep < len);  // the selection's promise
      s.n_keep[h] = n_keep;
    }
  }

  // 2. Demotion lists (tiered), checked; the low tier's rows and the append's room reserved.
  for (int h = 0; h < heads; ++h) {
    s.n_demote[h] = 0;
    const std::int64_t n_keep = s.n_keep[h];
    if (high_target && n_keep >= 0 && s.lens[h] > 0) {
      std::int32_t* idx = s.demote.data() + h * stride;
      HEED_RETURN_IF_ERROR(detail::plan_demotion(cache, in.layer, h, s.score_ptrs[h],
                                                 s.keep_ptrs[h], n_keep, high_target[h],
                                                 sel.protect, s, idx, &s.n_demote[h]));
      HEED_RETURN_IF_ERROR(cache.check_demote(in.layer, h, idx, s.n_demote[h]));
      HEED_RETURN_IF_ERROR(cache.reserve_low(in.layer, h, s.n_demote[h]));
    }
    if (append_after > 0)
      HEED_RETURN_IF_ERROR(
          cache.reserve_append(in.layer, h, append_after, n_keep >= 0 ? n_keep : s.lens[h]));
  }

  // 3. The changes, which cannot fail now: demotion first (it reads the keep-set's indices), then
  // the keep.
  for (int h = 0; h < heads; ++h) {
    if (s.n_keep[h] < 0) continue;
    if (s.n_demote[h] > 0) {
      const status st = cache.demote(in.layer, h, s.demote.data() + h * stride, s.n_demote[h]);
      HEED_DASSERT(st == status::ok);
      (void)st;
    }
    if (s.n_keep[h] < s.lens[h]) {
      const status st = cache.keep(in.layer, h, s.keep_ptrs[h], s.n_keep[h]);
      HEED_DASSERT(st == status::ok);
      (void)st;
    }
  }
  return status::ok;
}
}  // namespace detail

// Brings every KV head h of in.layer down to at most target[h] entries (heads already within
// their target are left alone, except under global_top_k, which redistributes the layer's total
// sum(target) across all heads). in.budget is passed to the policy as the nominal budget.
// high_target (a tiered cache, or null): each head then also keeps at most high_target[h] entries
// in its high tier, demoting the lowest-scored of the kept ones (the selection's protection keeps
// sinks and recent entries high); demoted entries stay demoted. append_after: when the eviction
// changes the cache, room is also reserved for appending that many entries to every head after it
// (kv_cache::reserve_append), so that the append cannot fail for lack of memory. All or nothing:
// a failure (status::out_of_memory included) leaves the cache unchanged. The policy's contract is
// checked at compile time (policy_traits.hpp).
template <class Policy>
status evict_layer(kv_cache& cache, Policy& policy, const policy_input& in,
                   const std::int64_t* target, eviction_scratch& s,
                   const std::int64_t* high_target = nullptr,
                   std::int64_t append_after = 0) noexcept {
  if constexpr (!detail::check_policy<Policy>()) {
    (void)cache, (void)policy, (void)in, (void)target, (void)s, (void)high_target,
        (void)append_after;
    return status::invalid_argument;  // not compiled: a contract static_assert failed
  } else {
    return detail::evict_layer_impl(cache, policy, in, target, s, high_target, append_after);
  }
}

}  // namespace heed
