// Leverage policies (heed/scoring/leverage.hpp):
//
//   leverage_policy   keep the keys of highest statistical leverage (kvpress LeverageScorePress;
//                     attention-free)
//   compactor_policy  Compactor (Chari & Van Durme 2025): blending * z(leverage) + z(attention
//                     mass), the first 8 and the last 4 entries protected
//
// z(x) = (x - mean) / max(std, 1e-6) over the head's entries, std with Bessel's correction (as
// torch's std()). kvpress z-scores over the whole (batch, heads, tokens) tensor; heed per head,
// since each head keeps its own top-k (the ranking within a head changes only through the mix).
// Compactor's attention term is the non-causal attention of every prefill query, in chunks of
// 256, times ||v||; heed's eviction loop has the causal equivalent: the attention mass each
// entry has received (the decode column mass of score channel 0, summed over steps and averaged
// over the group, as H2O's). `blending` < 0 takes kvpress's default, the compression ratio of
// this eviction, 1 - budget / length.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "heed/policy/h2o.hpp"
#include "heed/policy/policy.hpp"
#include "heed/scoring/leverage.hpp"

namespace heed {

namespace detail {
// Mean and (Bessel) standard deviation of x[0, n); std clamped to at least 1e-6.
inline void mean_and_std(const float* x, std::int64_t n, double& mean, double& sd) noexcept {
  double s = 0.0;
  for (std::int64_t j = 0; j < n; ++j) s += x[j];
  mean = n > 0 ? s / double(n) : 0.0;
  double v = 0.0;
  for (std::int64_t j = 0; j < n; ++j) v += (x[j] - mean) * (x[j] - mean);
  sd = n > 1 ? std::sqrt(v / double(n - 1)) : 0.0;
  if (!(sd >= 1e-6)) sd = std::isnan(sd) ? sd : 1e-6;
}
}  // namespace detail

struct leverage_policy : rows_policy_base<leverage_policy> {
  leverage_options options{};
  // n_sink (rows_policy_base) 0: kvpress's LeverageScorePress protects nothing

  const char* name() const noexcept { return "leverage"; }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return leverage_workspace_size(in.cache->head_dim(), in.cache->max_length(in.layer), options);
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    return leverage_scores(in.keys(head), options, out, 0, ws);
  }
};

struct compactor_policy : policy_base<compactor_policy> {
  leverage_options options{};
  double blending = -1.0;     // weight of z(leverage); < 0: 1 - budget / length (kvpress)
  std::int64_t n_sink = 8;    // Compactor's sink_size_start
  std::int64_t n_recent = 4;  // Compactor's sink_size_end

  const char* name() const noexcept { return "compactor"; }
  score_needs needs() const noexcept {
    score_needs n = detail::column_mass_needs(accumulate_mode::sum, head_reduce::mean);
    n.kv_rows = true;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    s.protect.n_recent = n_recent;
    return s;
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return leverage_workspace_size(in.cache->head_dim(), in.cache->max_length(in.layer), options);
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (!std::isfinite(blending)) return status::invalid_argument;
    const std::int64_t n = in.length(head);
    HEED_RETURN_IF_ERROR(leverage_scores(in.keys(head), options, out, 0, ws));
    const double lambda =
        blending >= 0
            ? blending
            : std::max(0.0, 1.0 - double(in.budget) / double(std::max<std::int64_t>(n, 1)));
    double lm, ls, am, as;
    const float* mass = in.channel(head, 0);
    detail::mean_and_std(out, n, lm, ls);
    detail::mean_and_std(mass, n, am, as);
    for (std::int64_t j = 0; j < n; ++j)
      out[j] = float(lambda * (out[j] - lm) / ls + (mass[j] - am) / as);
    return status::ok;
  }
};

}  // namespace heed
