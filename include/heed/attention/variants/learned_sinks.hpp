// Learned per-head attention sinks (gpt-oss style): a virtual key with logit sink[h] and a zero
// value joins every row's softmax. It only adds exp(sink - m) to the denominator, so it is folded
// into (m, d) once per row instead of into the logits.
#pragma once

#include "heed/attention/variant.hpp"

namespace heed {

struct learned_sinks : variant_base {
  static constexpr bool has_row_finalize = true;
  const float* sink_logits = nullptr;  // [Hq]

  explicit learned_sinks(const float* s) noexcept : sink_logits(s) {}

  HEED_FORCE_INLINE void finalize_row(int q_head, std::int64_t, row_state& r) const noexcept {
    fold_virtual_logit(r, sink_logits[q_head]);
  }
};

}  // namespace heed
