// Observers: what the kernel reports as it goes, without materializing the attention matrix.
//
// An observer is any type with these static flags (missing ones default to false) and, for each
// flag it sets, the matching members:
//
//   wants_row_stats: void on_row(int q_head, std::int64_t row, float lse, float entropy) noexcept;
//     Called once per (query head, query row) at the end of the row, natural-log units. The
//     kernel then keeps t = sum exp(s - m) s beside d, rescaled with it, so entropy costs one
//     FMA per logit.
//   wants_probs: bool probs_active() const noexcept;
//                void on_probs(int q_head, std::int64_t key_begin, const float* p,
//                              std::int64_t n) noexcept;
//     Decode only (one query row): the final softmax probabilities of query head q_head over
//     keys [key_begin, key_begin + n), after the split-KV merge. Different key ranges of one head
//     and different heads may be reported from different threads at once, but all query heads of
//     one KV head and one key range come from the same call sequence on one thread, in head order.
//
// Observers are off by default (null_observer) and the kernel compiles their code out. Flags and
// members must agree: scoring/observer_traits.hpp checks it at compile time where an observer
// enters the library (a flag without its member, or a member without its flag, fails to compile
// with a message naming both).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN

struct null_observer {
  static constexpr bool wants_row_stats = false;
  static constexpr bool wants_probs = false;
};

namespace detail {
template <class T, class = void>
struct wants_row_stats_t : std::false_type {};
template <class T>
struct wants_row_stats_t<T, std::void_t<decltype(T::wants_row_stats)>>
    : std::integral_constant<bool, T::wants_row_stats> {};
// An observer with row statistics may switch them off at run time with
// `bool row_stats_active() const` (the decode kernel then skips the entropy sum).
template <class T, class = void>
struct has_row_stats_switch : std::false_type {};
template <class T>
struct has_row_stats_switch<T, std::void_t<decltype(std::declval<const T&>().row_stats_active())>>
    : std::true_type {};
template <class T, class = void>
struct wants_probs_t : std::false_type {};
template <class T>
struct wants_probs_t<T, std::void_t<decltype(T::wants_probs)>>
    : std::integral_constant<bool, T::wants_probs> {};
}  // namespace detail

template <class Obs>
struct observer_traits {
  static constexpr bool row_stats = detail::wants_row_stats_t<Obs>::value;
  static constexpr bool probs = detail::wants_probs_t<Obs>::value;
};

namespace detail {
template <class Obs>
bool row_stats_active(const Obs& o) noexcept {
  if constexpr (!observer_traits<Obs>::row_stats) {
    return false;
  } else if constexpr (has_row_stats_switch<Obs>::value) {
    return o.row_stats_active();
  } else {
    return true;
  }
}
}  // namespace detail

// Writes LSE and entropy per row into [Hq, Lq] buffers (either may be null).
struct row_stats_observer {
  static constexpr bool wants_row_stats = true;
  float* lse = nullptr;
  float* entropy = nullptr;
  std::int64_t head_stride = 0;  // elements between heads (usually Lq)

  void on_row(int q_head, std::int64_t row, float l, float h) noexcept {
    if (lse) lse[q_head * head_stride + row] = l;
    if (entropy) entropy[q_head * head_stride + row] = h;
  }
};

// Combines two observers: both see every event. Only the members of the flags it sets are
// declared (observer_traits.hpp refuses a member whose flag is off).
template <class A, class B>
struct observer_pair {
  static constexpr bool wants_row_stats =
      observer_traits<A>::row_stats || observer_traits<B>::row_stats;
  static constexpr bool wants_probs = observer_traits<A>::probs || observer_traits<B>::probs;
  A& a;
  B& b;

  template <bool On = wants_row_stats, std::enable_if_t<On, int> = 0>
  void on_row(int h, std::int64_t row, float l, float e) noexcept {
    if constexpr (observer_traits<A>::row_stats) a.on_row(h, row, l, e);
    if constexpr (observer_traits<B>::row_stats) b.on_row(h, row, l, e);
  }
  template <bool On = wants_probs, std::enable_if_t<On, int> = 0>
  bool probs_active() const noexcept {
    bool on = false;
    if constexpr (observer_traits<A>::probs) on = on || a.probs_active();
    if constexpr (observer_traits<B>::probs) on = on || b.probs_active();
    return on;
  }
  template <bool On = wants_probs, std::enable_if_t<On, int> = 0>
  void on_probs(int h, std::int64_t k0, const float* p, std::int64_t n) noexcept {
    if constexpr (observer_traits<A>::probs) {
      if (a.probs_active()) a.on_probs(h, k0, p, n);
    }
    if constexpr (observer_traits<B>::probs) {
      if (b.probs_active()) b.on_probs(h, k0, p, n);
    }
  }
};

HEED_ISA_END
}  // namespace heed
