// The policy contract (policy.hpp), checked by the compiler where a policy enters the library:
// any_policy, evict_layer and the wrappers.
//
//   const char* name() const noexcept;                                    required
//   status score(const policy_input&, int, float*, workspace) noexcept;  required
//   score_needs needs() const noexcept;                                   policy_base has it
//   selection_spec selection(std::int64_t) const noexcept;                policy_base has it
//   std::size_t score_workspace_size(const policy_input&) const noexcept; policy_base has it
//   std::int64_t head_budget(const policy_input&, int, std::int64_t) const noexcept;  likewise
//   status admit(const admission_input&, int, bool&) noexcept;  optional (policy_base has it)
//
// The write gate (admit) is optional: a policy without one, or with policy_base's, admits every
// token, and the eviction loop does not call it (policy_gates<P>: a compile-time false, zero
// cost). Types that forward to a held policy (any_policy, the wrappers) say at run time whether
// the held one gates with bool gates() const noexcept.
//
// For each member the user sees one of three messages:
//   "heed policy: there is no score() member: ..."          (no member of that name)
//   "heed policy: score() has the wrong signature: it must be status score(const
//    policy_input&, int head, float* out, workspace ws) noexcept"
//                                       (a member of that name the library cannot call so)
//   "heed policy: score() must be noexcept"
//
// policy_contract<P> holds the results; check_policy<P>() states them as static_asserts and
// returns whether all hold, so an entry point can skip instantiating code for a broken policy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "heed/core/status.hpp"
#include "heed/core/workspace.hpp"
#include "heed/policy/policy.hpp"

namespace heed {
namespace detail {

// Probes: `named` when P has a (non-overloaded) member of that name, whatever its signature;
// `value` (callable) when the documented call is well-formed; `returns` when its result has the
// documented type; `nothrow` when the call is noexcept.
template <class P, class = void>
struct named_name : std::false_type {};
template <class P>
struct named_name<P, std::void_t<decltype(&P::name)>> : std::true_type {};
template <class P, class = void>
struct probe_name : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_name<P, std::void_t<decltype(std::declval<const P&>().name())>> : std::true_type {
  static constexpr bool returns =
      std::is_same<decltype(std::declval<const P&>().name()), const char*>::value;
  static constexpr bool nothrow = noexcept(std::declval<const P&>().name());
};

template <class P, class = void>
struct named_score : std::false_type {};
template <class P>
struct named_score<P, std::void_t<decltype(&P::score)>> : std::true_type {};
template <class P, class = void>
struct probe_score : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_score<P, std::void_t<decltype(std::declval<P&>().score(
                          std::declval<const policy_input&>(), 0, std::declval<float*>(),
                          std::declval<workspace>()))>> : std::true_type {
  static constexpr bool returns =
      std::is_same<decltype(std::declval<P&>().score(std::declval<const policy_input&>(), 0,
                                                     std::declval<float*>(),
                                                     std::declval<workspace>())),
                   status>::value;
  static constexpr bool nothrow = noexcept(std::declval<P&>().score(
      std::declval<const policy_input&>(), 0, std::declval<float*>(), std::declval<workspace>()));
};

template <class P, class = void>
struct named_needs : std::false_type {};
template <class P>
struct named_needs<P, std::void_t<decltype(&P::needs)>> : std::true_type {};
template <class P, class = void>
struct probe_needs : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_needs<P, std::void_t<decltype(std::declval<const P&>().needs())>> : std::true_type {
  static constexpr bool returns =
      std::is_same<decltype(std::declval<const P&>().needs()), score_needs>::value;
  static constexpr bool nothrow = noexcept(std::declval<const P&>().needs());
};

template <class P, class = void>
struct named_selection : std::false_type {};
template <class P>
struct named_selection<P, std::void_t<decltype(&P::selection)>> : std::true_type {};
template <class P, class = void>
struct probe_selection : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_selection<P,
                       std::void_t<decltype(std::declval<const P&>().selection(std::int64_t{0}))>>
    : std::true_type {
  static constexpr bool returns =
      std::is_same<decltype(std::declval<const P&>().selection(std::int64_t{0})),
                   selection_spec>::value;
  static constexpr bool nothrow = noexcept(std::declval<const P&>().selection(std::int64_t{0}));
};

template <class P, class = void>
struct named_score_workspace_size : std::false_type {};
template <class P>
struct named_score_workspace_size<P, std::void_t<decltype(&P::score_workspace_size)>>
    : std::true_type {};
template <class P, class = void>
struct probe_score_workspace_size : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_score_workspace_size<
    P, std::void_t<decltype(std::declval<const P&>().score_workspace_size(
           std::declval<const policy_input&>()))>> : std::true_type {
  static constexpr bool returns =
      std::is_convertible<decltype(std::declval<const P&>().score_workspace_size(
                              std::declval<const policy_input&>())),
                          std::size_t>::value;
  static constexpr bool nothrow =
      noexcept(std::declval<const P&>().score_workspace_size(std::declval<const policy_input&>()));
};

template <class P, class = void>
struct named_head_budget : std::false_type {};
template <class P>
struct named_head_budget<P, std::void_t<decltype(&P::head_budget)>> : std::true_type {};
template <class P, class = void>
struct probe_head_budget : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_head_budget<P, std::void_t<decltype(std::declval<const P&>().head_budget(
                                std::declval<const policy_input&>(), 0, std::int64_t{0}))>>
    : std::true_type {
  static constexpr bool returns =
      std::is_convertible<decltype(std::declval<const P&>().head_budget(
                              std::declval<const policy_input&>(), 0, std::int64_t{0})),
                          std::int64_t>::value;
  static constexpr bool nothrow = noexcept(std::declval<const P&>().head_budget(
      std::declval<const policy_input&>(), 0, std::int64_t{0}));
};

template <class P, class = void>
struct named_admit : std::false_type {};
template <class P>
struct named_admit<P, std::void_t<decltype(&P::admit)>> : std::true_type {};
template <class P, class = void>
struct probe_admit : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class P>
struct probe_admit<P, std::void_t<decltype(std::declval<P&>().admit(
                          std::declval<const admission_input&>(), 0, std::declval<bool&>()))>>
    : std::true_type {
  static constexpr bool returns =
      std::is_same<decltype(std::declval<P&>().admit(std::declval<const admission_input&>(), 0,
                                                     std::declval<bool&>())),
                   status>::value;
  static constexpr bool nothrow = noexcept(
      std::declval<P&>().admit(std::declval<const admission_input&>(), 0, std::declval<bool&>()));
};

// Whether a member pointer is policy_base's admit (of any policy_base<X>: a policy derived from
// another policy inherits its base's).
template <class M>
struct is_base_admit : std::false_type {};
template <class X>
struct is_base_admit<status (policy_base<X>::*)(const admission_input&, int, bool&) noexcept>
    : std::true_type {};

// P declares its own admit() (not policy_base's default).
template <class P, class = void>
struct own_admit : std::false_type {};
template <class P>
struct own_admit<P, std::void_t<decltype(&P::admit)>>
    : std::integral_constant<bool, !is_base_admit<decltype(&P::admit)>::value> {};

// P forwards to a held policy and says at run time whether that one gates.
template <class P, class = void>
struct has_gates : std::false_type {};
template <class P>
struct has_gates<P, std::void_t<decltype(std::declval<const P&>().gates())>> : std::true_type {};

// Whether a loop over P may have to call admit(): false is known at compile time.
template <class P>
constexpr bool may_gate = has_gates<P>::value || own_admit<P>::value;

// Whether policy p gates the tokens entering the cache (the loop asks once, at init).
template <class P>
bool policy_gates(const P& p) noexcept {
  if constexpr (has_gates<P>::value) {
    return p.gates();
  } else {
    (void)p;
    return own_admit<P>::value;
  }
}

// p's admit(), or admit-everything for a policy without one (a wrapper's forwarding).
template <class P>
status policy_admit(P& p, const admission_input& in, int head, bool& admitted) noexcept {
  if constexpr (probe_admit<P>::value) {
    return p.admit(in, head, admitted);
  } else {
    (void)p, (void)in, (void)head;
    admitted = true;
    return status::ok;
  }
}

// The base of a policy wrapper: the wrapped policy `inner`, and every member of the contract
// forwarded to it (its write gate included). A wrapper derives from it and declares only what it
// changes (a member of the wrapper hides the forwarding one).
template <class Inner>
struct wrapper_base {
  Inner inner;

  const char* name() const noexcept { return inner.name(); }
  score_needs needs() const noexcept { return inner.needs(); }
  selection_spec selection(std::int64_t budget) const noexcept { return inner.selection(budget); }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return inner.score_workspace_size(in);
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    return inner.score(in, head, out, ws);
  }
  std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept {
    return inner.head_budget(in, head, target);
  }
  status admit(const admission_input& in, int head, bool& admitted) noexcept {
    return policy_admit(inner, in, head, admitted);
  }
  bool gates() const noexcept { return policy_gates(inner); }
};

// One member: `missing` (nothing of that name), `wrong` (a member of that name that cannot be
// called as documented, or returns another type), `throws` (right, but not noexcept).
template <bool Named, class Probe>
struct policy_member {
  static constexpr bool missing = !Named && !Probe::value;
  static constexpr bool wrong = !missing && !(Probe::value && Probe::returns);
  static constexpr bool throws = !missing && !wrong && !Probe::nothrow;
  static constexpr bool ok = !missing && !wrong && !throws;
};

template <class Policy>
struct policy_contract {
  using P = std::decay_t<Policy>;
  using name = policy_member<named_name<P>::value, probe_name<P>>;
  using score = policy_member<named_score<P>::value, probe_score<P>>;
  using needs = policy_member<named_needs<P>::value, probe_needs<P>>;
  using selection = policy_member<named_selection<P>::value, probe_selection<P>>;
  using score_workspace_size =
      policy_member<named_score_workspace_size<P>::value, probe_score_workspace_size<P>>;
  using head_budget = policy_member<named_head_budget<P>::value, probe_head_budget<P>>;
  using admit = policy_member<named_admit<P>::value, probe_admit<P>>;  // optional
  static constexpr bool ok = name::ok && score::ok && needs::ok && selection::ok &&
                             score_workspace_size::ok && head_budget::ok &&
                             (admit::missing || admit::ok);
};

// States the contract of policy P as static_asserts; true when it holds.
template <class P>
constexpr bool check_policy() noexcept {
  using C = policy_contract<P>;
  static_assert(!C::name::missing,
                "heed policy: there is no name() member: const char* name() const noexcept is "
                "required");
  static_assert(!C::name::wrong,
                "heed policy: name() has the wrong signature: it must be const char* name() "
                "const noexcept");
  static_assert(!C::name::throws, "heed policy: name() must be noexcept");

  static_assert(!C::score::missing,
                "heed policy: there is no score() member: status score(const policy_input&, int "
                "head, float* out, workspace ws) noexcept is required");
  static_assert(!C::score::wrong,
                "heed policy: score() has the wrong signature: it must be status score(const "
                "policy_input&, int head, float* out, workspace ws) noexcept");
  static_assert(!C::score::throws, "heed policy: score() must be noexcept");

  static_assert(!C::needs::missing,
                "heed policy: there is no needs() member: derive from heed::policy_base<P> for "
                "the default, or declare score_needs needs() const noexcept");
  static_assert(!C::needs::wrong,
                "heed policy: needs() has the wrong signature: it must be score_needs needs() "
                "const noexcept");
  static_assert(!C::needs::throws, "heed policy: needs() must be noexcept");

  static_assert(!C::selection::missing,
                "heed policy: there is no selection() member: derive from heed::policy_base<P> "
                "for the default, or declare selection_spec selection(std::int64_t budget) const "
                "noexcept");
  static_assert(!C::selection::wrong,
                "heed policy: selection() has the wrong signature: it must be selection_spec "
                "selection(std::int64_t budget) const noexcept");
  static_assert(!C::selection::throws, "heed policy: selection() must be noexcept");

  static_assert(!C::score_workspace_size::missing,
                "heed policy: there is no score_workspace_size() member: derive from "
                "heed::policy_base<P> for the default, or declare std::size_t "
                "score_workspace_size(const policy_input&) const noexcept");
  static_assert(!C::score_workspace_size::wrong,
                "heed policy: score_workspace_size() has the wrong signature: it must be "
                "std::size_t score_workspace_size(const policy_input&) const noexcept");
  static_assert(!C::score_workspace_size::throws,
                "heed policy: score_workspace_size() must be noexcept");

  static_assert(!C::head_budget::missing,
                "heed policy: there is no head_budget() member: derive from heed::policy_base<P> "
                "for the default, or declare std::int64_t head_budget(const policy_input&, int "
                "head, std::int64_t target) const noexcept");
  static_assert(!C::head_budget::wrong,
                "heed policy: head_budget() has the wrong signature: it must be std::int64_t "
                "head_budget(const policy_input&, int head, std::int64_t target) const noexcept");
  static_assert(!C::head_budget::throws, "heed policy: head_budget() must be noexcept");

  // admit() is optional: no message when it is missing.
  static_assert(!C::admit::wrong,
                "heed policy: admit() has the wrong signature: it must be status admit(const "
                "admission_input&, int head, bool& admitted) noexcept");
  static_assert(!C::admit::throws, "heed policy: admit() must be noexcept");
  return C::ok;
}

}  // namespace detail
}  // namespace heed
