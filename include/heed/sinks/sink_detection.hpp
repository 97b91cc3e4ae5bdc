// Sink detection for several heads at once (ACT, "hidden" sinks): a key is a sink of a head when
// its normalized column mean exceeds a threshold (default 0.1), at any position, not only 0.
//
// The input is what observation_window_scores (scoring/observation_window.hpp) writes to
// observation_window_outputs::colmean: [Hkv][Lk] floats, sum_i p_ij / (number of the window's rows
// that see key j), reduced over each KV head's group of query heads; any [heads][Lk] buffer of
// the same meaning (per query head, from the reference, ...) works too. This is detect_sinks of
// that header applied to every head, with one set of caller-provided output buffers.
//
// The indices are those of the score row: cache indices when the scores came from a kv_cache
// head (kv_cache::positions() maps them to original positions). NaN scores are never sinks.
#pragma once

#include <cstdint>

#include "heed/core/status.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/scoring/observation_window.hpp"

namespace heed {

// colmean[h * head_stride + j] for h < heads, j < lk (head_stride 0 means lk). For every head h,
// counts[h] receives the number of keys j with colmean > threshold, and their indices, ascending,
// go to indices[h * capacity + i] for i < min(counts[h], capacity). Every head is processed; when
// some head has more than capacity sinks, its first capacity are written, counts stay exact and
// the result is workspace_too_small (as detect_sinks). capacity 0 with indices null only counts.
inline status detect_sinks_per_head(const float* colmean, int heads, std::int64_t lk,
                                    std::int64_t head_stride, std::int64_t* counts,
                                    std::int64_t* indices, std::int64_t capacity,
                                    float threshold = default_sink_threshold) noexcept {
  if (colmean == nullptr || counts == nullptr) return status::null_pointer;
  if (heads <= 0 || lk < 0 || capacity < 0 || threshold != threshold)
    return status::invalid_argument;
  if (capacity > 0 && indices == nullptr) return status::null_pointer;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(head_stride, lk));
  status result = status::ok;
  for (int h = 0; h < heads; ++h) {
    const status st =
        detect_sinks(colmean + h * head_stride, lk, threshold,
                     capacity > 0 ? indices + h * capacity : nullptr, capacity, counts + h);
    if (st == status::workspace_too_small) {
      result = st;
    } else if (st != status::ok) {
      return st;
    }
  }
  return result;
}

}  // namespace heed
