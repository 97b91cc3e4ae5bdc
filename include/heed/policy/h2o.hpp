// H2O (heavy hitters) and A2SF (decayed accumulation): keep the entries with the largest
// accumulated attention, plus a window of recent entries.
//
// The scores are the decode kernel's column mass, folded into score channel 0 by the eviction
// loop (column_accumulator): H2O sums p_j over steps, A2SF decays by lambda each step
// (lambda = 1 is exactly H2O). Query heads reduce to their KV head by mean (or max).
#pragma once

#include <cstdint>
#include <cstring>

#include "heed/policy/policy.hpp"

namespace heed {

struct h2o_policy : policy_base<h2o_policy> {
  double recent_fraction = 0.5;  // share of the budget kept as the recent window (H2O: half)
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "h2o"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.channels = 1;
    n.column_mass = true;
    n.accumulate.mode = accumulate_mode::sum;
    n.accumulate.reduce = reduce;
    return n;
  }
  selection_spec selection(std::int64_t budget) const noexcept {
    selection_spec s;
    s.protect.n_recent = std::int64_t(double(budget) * recent_fraction);
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    std::memcpy(out, in.channel(head, 0), sizeof(float) * std::size_t(in.length(head)));
    return status::ok;
  }
};

struct a2sf_policy : policy_base<a2sf_policy> {
  float lambda = 0.95f;        // decay per step
  std::int64_t n_recent = 16;  // recent window always kept
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "a2sf"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.channels = 1;
    n.column_mass = true;
    n.accumulate.mode = accumulate_mode::decay;
    n.accumulate.lambda = lambda;
    n.accumulate.reduce = reduce;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_recent = n_recent;
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    std::memcpy(out, in.channel(head, 0), sizeof(float) * std::size_t(in.length(head)));
    return status::ok;
  }
};

// TOVA: the newest query's attention (mean over the group's query heads); each step evicts the
// entries it attends to least.
struct tova_policy : policy_base<tova_policy> {
  head_reduce reduce = head_reduce::mean;

  const char* name() const noexcept { return "tova"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.channels = 1;
    n.column_mass = true;
    n.accumulate.mode = accumulate_mode::last;
    n.accumulate.reduce = reduce;
    return n;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    std::memcpy(out, in.channel(head, 0), sizeof(float) * std::size_t(in.length(head)));
    return status::ok;
  }
};

// Normalized column mean (ZipCache saliency, the ACT sink detector): accumulated attention
// divided by the number of queries that saw the entry, step - position (every query after an
// entry attends to it). Unlike H2O it does not favour old entries for their age.
struct column_mean_policy : policy_base<column_mean_policy> {
  std::int64_t n_recent = 16;

  const char* name() const noexcept { return "column_mean"; }
  score_needs needs() const noexcept {
    score_needs n;
    n.channels = 1;
    n.column_mass = true;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_recent = n_recent;
    return s;
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
    score_needs n;
    n.channels = 1;
    n.column_mass = true;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.kind = select_kind::threshold;
    s.tau = tau;
    s.min_keep = min_keep;
    s.protect.n_recent = n_recent;
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    std::memcpy(out, in.channel(head, 0), sizeof(float) * std::size_t(in.length(head)));
    return status::ok;
  }
};

}  // namespace heed
