// What the policies on the decode kernel's column mass share: the eviction loop folds the
// probabilities into score channel 0 (column_accumulator) in the policy's accumulate mode, query
// heads reduced to their KV head by mean (or max); the policies read that channel.
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

}  // namespace heed
