// Decode-time column mass: the kernel's probability tap folded into per-key score channels.
//
// Each decode step, every query head h of a KV head reports its final probabilities p_hj over the
// keys. The accumulator reduces them over the group of query heads (mean or max) into r_j and
// updates one score channel A of the KV head:
//   sum   (H2O):   A_j <- A_j + r_j
//   decay (A2SF):  A_j <- lambda * A_j + r_j       (lambda = 1 is H2O exactly)
//   last  (TOVA):  A_j <- r_j
// The kernel reports all query heads of one KV head and one key range from one thread, in head
// order, so the reduction needs a scratch row per KV head but no locks.
#pragma once

#include <cstdint>

#include "heed/config.hpp"
#include "heed/core/status.hpp"
#include "heed/scoring/score_common.hpp"

namespace heed {

enum class accumulate_mode : int {
  sum = 0,    // H2O: accumulated attention
  decay = 1,  // A2SF: decayed accumulation
  last = 2,   // TOVA: the newest query's attention
};

struct column_accumulate_spec {
  accumulate_mode mode = accumulate_mode::sum;
  float lambda = 1.f;  // decay factor (mode decay)
  head_reduce reduce = head_reduce::mean;

  status validate() const noexcept {
    if (mode != accumulate_mode::sum && mode != accumulate_mode::decay &&
        mode != accumulate_mode::last)
      return status::invalid_argument;
    if (!valid_head_reduce(reduce)) return status::invalid_argument;
    if (!(lambda >= 0.f && lambda <= 1.f)) return status::invalid_argument;
    return status::ok;
  }
};

// One KV head's accumulator for one decode call over its keys. Use as the user data of a
// prob_tap_fn (tap()) or as an observer (on_probs()); q_head is the index within the group.
struct column_accumulator {
  static constexpr bool wants_probs = true;

  float* channel = nullptr;  // [len] the score channel A
  float* scratch = nullptr;  // [len] the reduced row r
  int group = 1;             // query heads per KV head
  column_accumulate_spec spec{};

  bool probs_active() const noexcept { return channel != nullptr; }

  void on_probs(int q_head, std::int64_t key_begin, const float* HEED_RESTRICT p,
                std::int64_t n) noexcept {
    float* HEED_RESTRICT r = scratch + key_begin;
    const float w = spec.reduce == head_reduce::mean ? 1.f / float(group) : 1.f;
    if (q_head == 0) {
      for (std::int64_t j = 0; j < n; ++j) r[j] = p[j] * w;
    } else if (spec.reduce == head_reduce::mean) {
      for (std::int64_t j = 0; j < n; ++j) r[j] += p[j] * w;
    } else {
      for (std::int64_t j = 0; j < n; ++j) r[j] = r[j] < p[j] ? p[j] : r[j];
    }
    if (q_head != group - 1) return;
    float* HEED_RESTRICT a = channel + key_begin;
    switch (spec.mode) {
      case accumulate_mode::sum:
        for (std::int64_t j = 0; j < n; ++j) a[j] += r[j];
        break;
      case accumulate_mode::decay: {
        const float l = spec.lambda;
        for (std::int64_t j = 0; j < n; ++j) a[j] = l * a[j] + r[j];
        break;
      }
      case accumulate_mode::last:
        for (std::int64_t j = 0; j < n; ++j) a[j] = r[j];
        break;
    }
  }

  // Adapter for heed::prob_tap_fn (the compiled kernel's C-style tap).
  static void tap(void* self, int q_head, std::int64_t key_begin, const float* p,
                  std::int64_t n) noexcept {
    static_cast<column_accumulator*>(self)->on_probs(q_head, key_begin, p, n);
  }
};

}  // namespace heed
