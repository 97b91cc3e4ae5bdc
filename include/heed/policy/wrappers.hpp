// Wrappers that take any policy and change how its scores become keep-sets, or mix two policies.
//
//   protect(inner, n_sink, n_recent)  always keep sinks and a recent window (within the budget)
//   head_adaptive(inner, floor)       AdaKV: one top-k across the heads of a layer, per-head floor
//   with_threshold, with_coverage     DMS-style threshold or coverage selection on inner's scores
//   composed(a, b, wa, wb)            scores wa * rank(a) + wb * rank(b), ranks scaled to [0, 1]
// Issue 22's wrappers have their own headers: chunked (chunkkv.hpp), critical and
// critical_adaptive (critical_kv.hpp), simlayer (simlayer_kv.hpp).
//
// Periodic eviction and per-layer budgets (PyramidKV) are eviction_config settings (slack, every,
// layer_budgets; see budgets.hpp), since they decide when and how much, not what.
//
// The factories check the inner policies' contracts at compile time (policy_traits.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"

namespace heed {

namespace detail {
// Protection of two specs together: the larger sink and recent counts.
inline protect_spec merge_protect(const protect_spec& a, const protect_spec& b) noexcept {
  return {std::max(a.n_sink, b.n_sink), std::max(a.n_recent, b.n_recent)};
}
}  // namespace detail

// The inner policy with its selection changed: more protection (protect), and optionally another
// selection kind with its parameters (head_adaptive, with_threshold, with_coverage). Everything
// else is the inner policy's.
template <class Inner>
struct reselect_policy : detail::wrapper_base<Inner> {
  selection_spec spec{};  // protection merged with inner's; kind used when replace_kind
  bool replace_kind = false;

  selection_spec selection(std::int64_t budget) const noexcept {
    const selection_spec in = this->inner.selection(budget);
    selection_spec s = replace_kind ? spec : in;
    s.protect = detail::merge_protect(in.protect, spec.protect);
    return s;
  }
};
template <class Inner>
reselect_policy<Inner> protect(Inner inner, std::int64_t n_sink, std::int64_t n_recent) {
  detail::check_policy<Inner>();
  selection_spec s;
  s.protect = {n_sink, n_recent};
  return {{std::move(inner)}, s, false};
}
template <class Inner>
reselect_policy<Inner> head_adaptive(Inner inner, double floor_fraction = 0.2) {
  detail::check_policy<Inner>();
  selection_spec s;
  s.kind = select_kind::global_top_k;
  s.floor_fraction = floor_fraction;
  return {{std::move(inner)}, s, true};
}
template <class Inner>
reselect_policy<Inner> with_threshold(Inner inner, float tau, std::int64_t min_keep = 0) {
  detail::check_policy<Inner>();
  selection_spec s;
  s.kind = select_kind::threshold;
  s.tau = tau;
  s.min_keep = min_keep;
  return {{std::move(inner)}, s, true};
}
template <class Inner>
reselect_policy<Inner> with_coverage(Inner inner, double gamma, std::int64_t min_keep = 0) {
  detail::check_policy<Inner>();
  selection_spec s;
  s.kind = select_kind::coverage;
  s.gamma = gamma;
  s.min_keep = min_keep;
  return {{std::move(inner)}, s, true};
}

// Two policies' scores mixed by rank: each entry gets wa * ra + wb * rb where r is its rank
// among the head's entries under that policy, scaled to [0, 1] (1 = best). Ranks make scores of
// different units comparable. At most one of the two may need the decode column mass (they would
// share score channel 0); needs() then reports the other's extra inputs too.
template <class A, class B>
struct composed_policy {
  A a;
  B b;
  float wa = 1.f, wb = 1.f;

  const char* name() const noexcept { return "composed"; }
  score_needs needs() const noexcept {
    score_needs na = a.needs(), nb = b.needs(), n = na.column_mass ? na : nb;
    n.channels = std::max(na.channels, nb.channels);
    n.query_window = std::max(na.query_window, nb.query_window);
    n.last_output = na.last_output || nb.last_output;
    n.last_probs = na.last_probs || nb.last_probs;
    n.kv_rows = na.kv_rows || nb.kv_rows;
    return n;
  }
  std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept {
    return std::max(a.head_budget(in, head, target), b.head_budget(in, head, target));
  }
  bool valid() const noexcept { return !(a.needs().column_mass && b.needs().column_mass); }
  // A token enters when both gates let it in.
  status admit(const admission_input& in, int head, bool& admitted) noexcept {
    bool in_a = true, in_b = true;
    if (detail::policy_gates(a)) HEED_RETURN_IF_ERROR(detail::policy_admit(a, in, head, in_a));
    if (in_a && detail::policy_gates(b))
      HEED_RETURN_IF_ERROR(detail::policy_admit(b, in, head, in_b));
    admitted = in_a && in_b;
    return status::ok;
  }
  bool gates() const noexcept { return detail::policy_gates(a) || detail::policy_gates(b); }
  selection_spec selection(std::int64_t budget) const noexcept {
    selection_spec s = a.selection(budget);
    s.protect = detail::merge_protect(s.protect, b.selection(budget).protect);
    return s;
  }
  // Two score rows and an index row of the longest head, plus the inner policies' workspaces.
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    const std::size_t len = std::size_t(in.cache->max_length(in.layer));
    return align_up(len * 4) * 3 + align_up(a.score_workspace_size(in)) +
           align_up(b.score_workspace_size(in)) + workspace_alignment;
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (!valid()) return status::invalid_argument;
    if (ws.size < score_workspace_size(in)) return status::workspace_too_small;
    const std::int64_t n = in.length(head);
    const std::size_t len = std::size_t(in.cache->max_length(in.layer));
    workspace_carver carve(workspace_carver::align_base(ws.data));
    float* sb = carve.take<float>(len);
    std::int32_t* idx = carve.take<std::int32_t>(len);
    float* ra = carve.take<float>(len);
    const std::size_t wa_bytes = a.score_workspace_size(in), wb_bytes = b.score_workspace_size(in);
    void* wsa = carve.take<unsigned char>(wa_bytes);
    void* wsb = carve.take<unsigned char>(wb_bytes);
    HEED_RETURN_IF_ERROR(a.score(in, head, out, {wsa, wa_bytes}));
    HEED_RETURN_IF_ERROR(b.score(in, head, sb, {wsb, wb_bytes}));
    rank(out, n, idx, ra);
    rank(sb, n, idx, out);  // out now holds b's ranks
    for (std::int64_t j = 0; j < n; ++j) out[j] = wa * ra[j] + wb * out[j];
    return status::ok;
  }

 private:
  // r[j] = rank of entry j in [0, 1], 1 for the best under ranks_above.
  static void rank(const float* s, std::int64_t n, std::int32_t* idx, float* r) noexcept {
    for (std::int64_t j = 0; j < n; ++j) idx[j] = std::int32_t(j);
    std::sort(idx, idx + n, [s](std::int32_t x, std::int32_t y) {
      return ranks_above(s[y], y, s[x], x);  // ascending: worst first
    });
    const float scale = n > 1 ? 1.f / float(n - 1) : 0.f;
    for (std::int64_t i = 0; i < n; ++i) r[idx[i]] = float(i) * scale;
  }
};
template <class A, class B>
composed_policy<A, B> composed(A a, B b, float wa = 1.f, float wb = 1.f) {
  detail::check_policy<A>();
  detail::check_policy<B>();
  return {std::move(a), std::move(b), wa, wb};
}

}  // namespace heed
