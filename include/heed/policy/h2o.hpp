// Policies on the decode kernel's column mass, which the eviction loop folds into score channel 0
// (column_accumulator): H2O sums p_j over steps, A2SF decays by lambda each step (lambda = 1 is
// exactly H2O), TOVA keeps the newest query's p_j; query heads reduce to their KV head by mean
// (or max). Threshold (DMS-style) and the normalized column mean read the same H2O mass.
#pragma once

#include <cstdint>
#include <cstring>

#include "heed/policy/policy.hpp"

namespace heed {

namespace detail {
// What every column-mass policy asks of the loop: channel 0 accumulated in `mode`.
inline score_needs column_mass_needs(accumulate_mode mode, head_reduce reduce,
                                     float lambda = 1.f) noexcept {
  score_needs n;
  n.channels = 1;
  n.column_mass = true;
  n.accumulate.mode = mode;
  n.accumulate.lambda = lambda;
  n.accumulate.reduce = reduce;
  return n;
}
inline selection_spec recent_selection(std::int64_t n_recent,
                                       select_kind kind = select_kind::top_k) noexcept {
  selection_spec s;
  s.kind = kind;
  s.protect.n_recent = n_recent;
  return s;
}
// The accumulated channel itself is the score.
inline status copy_channel(const policy_input& in, int head, float* out) noexcept {
  std::memcpy(out, in.channel(head, 0), sizeof(float) * std::size_t(in.length(head)));
  return status::ok;
}
}  // namespace detail

struct h2o_policy : policy_base<h2o_policy> {
  double recent_fraction = 0.5;  // share of the budget kept as the recent window (H2O: half)
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "h2o"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::sum, reduce);
  }
  selection_spec selection(std::int64_t budget) const noexcept {
    return detail::recent_selection(std::int64_t(double(budget) * recent_fraction));
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

struct a2sf_policy : policy_base<a2sf_policy> {
  float lambda = 0.95f;        // decay per step
  std::int64_t n_recent = 16;  // recent window always kept
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "a2sf"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::decay, reduce, lambda);
  }
  selection_spec selection(std::int64_t) const noexcept {
    return detail::recent_selection(n_recent);
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

// TOVA: the newest query's attention (mean over the group's query heads); each step evicts the
// entries it attends to least.
struct tova_policy : policy_base<tova_policy> {
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "tova"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::last, reduce);
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

// Normalized column mean (ZipCache saliency, the ACT sink detector): accumulated attention
// divided by the number of queries that saw the entry, step - position (every query after an
// entry attends to it). Unlike H2O it does not favour old entries for their age.
struct column_mean_policy : policy_base<column_mean_policy> {
  std::int64_t n_recent = 16;

  const char* name() const noexcept { return "column_mean"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::sum, head_reduce::mean);
  }
  selection_spec selection(std::int64_t) const noexcept {
    return detail::recent_selection(n_recent);
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    const float* mass = in.channel(head, 0);
    const std::int64_t* pos = in.positions(head);
    for (std::int64_t j = 0; j < in.length(head); ++j) {
      const std::int64_t seen = in.step - pos[j];
      out[j] = seen > 0 ? mass[j] / float(seen) : mass[j];
    }
    return status::ok;
  }
};

// DMS-style threshold eviction on accumulated attention: keep entries whose accumulated mass is
// at least tau (clamped to [min_keep, budget]) plus a recent window.
struct threshold_policy : policy_base<threshold_policy> {
  float tau = 0.01f;
  std::int64_t min_keep = 0;
  std::int64_t n_recent = 16;

  const char* name() const noexcept { return "threshold"; }
  score_needs needs() const noexcept {
    return detail::column_mass_needs(accumulate_mode::sum, head_reduce::mean);
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s = detail::recent_selection(n_recent, select_kind::threshold);
    s.tau = tau;
    s.min_keep = min_keep;
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    return detail::copy_channel(in, head, out);
  }
};

}  // namespace heed
