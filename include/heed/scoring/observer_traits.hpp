// The observer contract, checked by the compiler where an observer enters the library.
//
// Each flag of an observer (observer.hpp; a missing flag is false) promises members, and the two
// must agree both ways:
//
//   wants_row_stats  void on_row(int, std::int64_t, float, float) noexcept
//                    (optional: bool row_stats_active() const noexcept)
//   wants_probs      bool probs_active() const noexcept and
//                    void on_probs(int, std::int64_t, const float*, std::int64_t) noexcept
//
// A flag set without its member fails with, e.g.,
//   "heed observer: wants_probs is set but there is no on_probs(int, std::int64_t, const float*,
//    std::int64_t) member"
// and a member whose flag is false (or missing, or misspelled) with
//   "heed observer: defines on_probs() but wants_probs is false or missing: misspelled flag?"
// since the kernel would silently never call it.
//
// observer_contract<Obs> holds the results; check_observer<Obs>() states them as static_asserts
// and returns whether all hold, so an entry point can skip instantiating its kernel for a broken
// observer.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "heed/config.hpp"
#include "heed/scoring/observer.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// One probe per member: `callable` when the call with the documented arguments is well-formed
// (on_row / on_probs on a mutable observer, the switches on a const one), `returns` when the
// result has the documented type, `nothrow` when it is noexcept.
template <class O, class = void>
struct probe_on_row : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class O>
struct probe_on_row<O,
                    std::void_t<decltype(std::declval<O&>().on_row(0, std::int64_t{0}, 0.f, 0.f))>>
    : std::true_type {
  static constexpr bool returns = true;  // the result, if any, is ignored
  static constexpr bool nothrow = noexcept(std::declval<O&>().on_row(0, std::int64_t{0}, 0.f, 0.f));
};

template <class O, class = void>
struct probe_on_probs : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class O>
struct probe_on_probs<O, std::void_t<decltype(std::declval<O&>().on_probs(
                             0, std::int64_t{0}, std::declval<const float*>(), std::int64_t{0}))>>
    : std::true_type {
  static constexpr bool returns = true;  // the result, if any, is ignored
  static constexpr bool nothrow = noexcept(std::declval<O&>().on_probs(
      0, std::int64_t{0}, std::declval<const float*>(), std::int64_t{0}));
};

template <class O, class = void>
struct probe_probs_active : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class O>
struct probe_probs_active<O, std::void_t<decltype(std::declval<const O&>().probs_active())>>
    : std::true_type {
  static constexpr bool returns =
      std::is_convertible<decltype(std::declval<const O&>().probs_active()), bool>::value;
  static constexpr bool nothrow = noexcept(std::declval<const O&>().probs_active());
};

template <class O, class = void>
struct probe_row_stats_active : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class O>
struct probe_row_stats_active<O, std::void_t<decltype(std::declval<const O&>().row_stats_active())>>
    : std::true_type {
  static constexpr bool returns =
      std::is_convertible<decltype(std::declval<const O&>().row_stats_active()), bool>::value;
  static constexpr bool nothrow = noexcept(std::declval<const O&>().row_stats_active());
};

// A required member under a flag: `present` = the flag is off or the member has the documented
// signature; `stray` = the member exists while the flag is off.
template <bool Flag, class Probe>
struct observer_member {
  static constexpr bool present = !Flag || (Probe::value && Probe::returns);
  static constexpr bool nothrow = !Flag || !Probe::value || Probe::nothrow;
  static constexpr bool stray = !Flag && Probe::value;
  static constexpr bool ok = present && nothrow && !stray;
};

template <class Obs>
struct observer_contract {
  using O = std::remove_cv_t<Obs>;
  static constexpr bool row_stats = observer_traits<O>::row_stats;
  static constexpr bool probs = observer_traits<O>::probs;

  using on_row = observer_member<row_stats, probe_on_row<O>>;
  using on_probs = observer_member<probs, probe_on_probs<O>>;
  using probs_active = observer_member<probs, probe_probs_active<O>>;
  // Optional with wants_row_stats: only its signature and a stray one are checked.
  using row_stats_active = probe_row_stats_active<O>;
  static constexpr bool switch_ok = !row_stats_active::value || !row_stats ||
                                    (row_stats_active::returns && row_stats_active::nothrow);
  static constexpr bool switch_stray = row_stats_active::value && !row_stats;

  static constexpr bool ok =
      on_row::ok && on_probs::ok && probs_active::ok && switch_ok && !switch_stray;
};

// States the contract of observer Obs as static_asserts; true when it holds.
template <class Obs>
constexpr bool check_observer() noexcept {
  using C = observer_contract<Obs>;
  static_assert(C::on_row::present,
                "heed observer: wants_row_stats is set but there is no on_row(int, std::int64_t, "
                "float, float) member");
  static_assert(C::on_row::nothrow, "heed observer: on_row() must be noexcept");
  static_assert(!C::on_row::stray,
                "heed observer: defines on_row() but wants_row_stats is false or missing: "
                "misspelled flag?");
  static_assert(C::switch_ok,
                "heed observer: row_stats_active() must be bool row_stats_active() const noexcept");
  static_assert(!C::switch_stray,
                "heed observer: defines row_stats_active() but wants_row_stats is false or "
                "missing: misspelled flag?");

  static_assert(C::probs_active::present,
                "heed observer: wants_probs is set but there is no probs_active() const member "
                "returning bool");
  static_assert(C::probs_active::nothrow, "heed observer: probs_active() must be noexcept");
  static_assert(!C::probs_active::stray,
                "heed observer: defines probs_active() but wants_probs is false or missing: "
                "misspelled flag?");
  static_assert(C::on_probs::present,
                "heed observer: wants_probs is set but there is no on_probs(int, std::int64_t, "
                "const float*, std::int64_t) member");
  static_assert(C::on_probs::nothrow, "heed observer: on_probs() must be noexcept");
  static_assert(!C::on_probs::stray,
                "heed observer: defines on_probs() but wants_probs is false or missing: "
                "misspelled flag?");
  return C::ok;
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
