// The variant contract, checked by the compiler where a variant enters the library.
//
// Each flag of variant_base (variant.hpp) promises a member; the two must agree both ways:
//
//   - a flag set without its member (or with a member of another signature) is refused:
//       "heed variant: has_logits_mask is set but there is no keep(const lane_ctx<A>&) const
//        member returning batch_bool<float, A>"
//   - a member present while its flag is false is refused too, since the kernel would silently
//     never call it (typically a misspelled flag, e.g. has_logit_mask, which leaves
//     variant_base's has_logits_mask = false in place):
//       "heed variant: defines keep() but has_logits_mask is false: misspelled flag?"
//   - hooks must be noexcept (the kernels are).
//
// Template hooks (transform_logits, transform_logits_log2, keep) are probed with the
// architecture the kernel is instantiated for. variant_contract<V, A> holds the results;
// check_variant<V, A>() states them as static_asserts and returns whether all hold, so an entry
// point can skip instantiating its kernel for a broken variant (the static_assert message is then
// the only error the user sees).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <xsimd/xsimd.hpp>

#include "heed/attention/variant.hpp"
#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// One probe per hook: `callable` when the call with the documented arguments on a const variant
// is well-formed, `returns` when its result converts to the documented type, `nothrow` when it is
// noexcept.
template <class V, class A, class = void>
struct probe_transform_logits : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class V, class A>
struct probe_transform_logits<
    V, A,
    std::void_t<decltype(std::declval<const V&>().transform_logits(
        std::declval<xsimd::batch<float, A>>(), std::declval<const lane_ctx<A>&>()))>>
    : std::true_type {
  using result = decltype(std::declval<const V&>().transform_logits(
      std::declval<xsimd::batch<float, A>>(), std::declval<const lane_ctx<A>&>()));
  static constexpr bool returns = std::is_convertible<result, xsimd::batch<float, A>>::value;
  static constexpr bool nothrow = noexcept(std::declval<const V&>().transform_logits(
      std::declval<xsimd::batch<float, A>>(), std::declval<const lane_ctx<A>&>()));
};

template <class V, class A, class = void>
struct probe_transform_logits_log2 : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class V, class A>
struct probe_transform_logits_log2<
    V, A,
    std::void_t<decltype(std::declval<const V&>().transform_logits_log2(
        std::declval<xsimd::batch<float, A>>(), std::declval<const lane_ctx<A>&>()))>>
    : std::true_type {
  using result = decltype(std::declval<const V&>().transform_logits_log2(
      std::declval<xsimd::batch<float, A>>(), std::declval<const lane_ctx<A>&>()));
  static constexpr bool returns = std::is_convertible<result, xsimd::batch<float, A>>::value;
  static constexpr bool nothrow = noexcept(std::declval<const V&>().transform_logits_log2(
      std::declval<xsimd::batch<float, A>>(), std::declval<const lane_ctx<A>&>()));
};

template <class V, class A, class = void>
struct probe_keep : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class V, class A>
struct probe_keep<
    V, A, std::void_t<decltype(std::declval<const V&>().keep(std::declval<const lane_ctx<A>&>()))>>
    : std::true_type {
  using result = decltype(std::declval<const V&>().keep(std::declval<const lane_ctx<A>&>()));
  static constexpr bool returns = std::is_convertible<result, xsimd::batch_bool<float, A>>::value;
  static constexpr bool nothrow =
      noexcept(std::declval<const V&>().keep(std::declval<const lane_ctx<A>&>()));
};

template <class V, class = void>
struct probe_finalize_row : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class V>
struct probe_finalize_row<V, std::void_t<decltype(std::declval<const V&>().finalize_row(
                                 0, std::int64_t{0}, std::declval<row_state&>()))>>
    : std::true_type {
  static constexpr bool returns = true;  // the result, if any, is ignored
  static constexpr bool nothrow = noexcept(
      std::declval<const V&>().finalize_row(0, std::int64_t{0}, std::declval<row_state&>()));
};

template <class V, class = void>
struct probe_key_range : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class V>
struct probe_key_range<V, std::void_t<decltype(std::declval<const V&>().key_range(
                              std::int64_t{0}, std::int64_t{0}, std::declval<std::int64_t&>(),
                              std::declval<std::int64_t&>()))>> : std::true_type {
  static constexpr bool returns = true;  // the result, if any, is ignored
  static constexpr bool nothrow = noexcept(std::declval<const V&>().key_range(
      std::int64_t{0}, std::int64_t{0}, std::declval<std::int64_t&>(),
      std::declval<std::int64_t&>()));
};

template <class V, class = void>
struct probe_query_scale : std::false_type {
  static constexpr bool returns = false, nothrow = false;
};
template <class V>
struct probe_query_scale<V, std::void_t<decltype(std::declval<const V&>().query_scale(
                                0, std::int64_t{0}, std::int64_t{0}))>> : std::true_type {
  static constexpr bool returns = std::is_convertible<decltype(std::declval<const V&>().query_scale(
                                                          0, std::int64_t{0}, std::int64_t{0})),
                                                      float>::value;
  static constexpr bool nothrow =
      noexcept(std::declval<const V&>().query_scale(0, std::int64_t{0}, std::int64_t{0}));
};

// A flag and the probe of its member: `present` = the flag is set and the member has the
// documented signature; `stray` = the member exists but the flag is false.
template <bool Flag, class Probe>
struct hook_contract {
  static constexpr bool present = !Flag || (Probe::value && Probe::returns);
  static constexpr bool nothrow = !Flag || !Probe::value || Probe::nothrow;
  static constexpr bool stray = !Flag && Probe::value;
  static constexpr bool ok = present && nothrow && !stray;
};

template <class V, class A>
struct variant_contract {
  static constexpr bool derives = std::is_base_of<variant_base, V>::value;
  // A type that does not derive from variant_base may not have the flags: probe no_variant
  // instead, so that only the first message fires.
  using W = std::conditional_t<derives, V, no_variant>;

  using transform = hook_contract<W::has_logits_transform, probe_transform_logits<W, A>>;
  using log2_transform = hook_contract<W::has_log2_transform, probe_transform_logits_log2<W, A>>;
  using mask = hook_contract<W::has_logits_mask, probe_keep<W, A>>;
  using row_finalize = hook_contract<W::has_row_finalize, probe_finalize_row<W>>;
  using key_range = hook_contract<W::has_key_range, probe_key_range<W>>;
  using query_scale = hook_contract<W::has_query_scale, probe_query_scale<W>>;
  // has_log2_transform and heavy_transform qualify has_logits_transform.
  static constexpr bool log2_needs_transform = !W::has_log2_transform || W::has_logits_transform;
  static constexpr bool heavy_needs_transform = !W::heavy_transform || W::has_logits_transform;

  static constexpr bool ok = derives && transform::ok && log2_transform::ok && mask::ok &&
                             row_finalize::ok && key_range::ok && query_scale::ok &&
                             log2_needs_transform && heavy_needs_transform;
};

// States the contract of variant V for architecture A (the one the kernel runs) as
// static_asserts; true when it holds.
template <class V, class A = xsimd::default_arch>
constexpr bool check_variant() noexcept {
  using C = variant_contract<V, A>;
  static_assert(C::derives, "heed variant: a variant must derive from heed::variant_base");

  static_assert(C::transform::present,
                "heed variant: has_logits_transform is set but there is no "
                "transform_logits(batch<float, A>, const lane_ctx<A>&) const member returning "
                "batch<float, A>");
  static_assert(C::transform::nothrow, "heed variant: transform_logits() must be noexcept");
  static_assert(!C::transform::stray,
                "heed variant: defines transform_logits() but has_logits_transform is false: "
                "misspelled flag?");

  static_assert(C::log2_needs_transform,
                "heed variant: has_log2_transform is set but has_logits_transform is not "
                "(transform_logits is still required)");
  static_assert(C::log2_transform::present,
                "heed variant: has_log2_transform is set but there is no "
                "transform_logits_log2(batch<float, A>, const lane_ctx<A>&) const member "
                "returning batch<float, A>");
  static_assert(C::log2_transform::nothrow,
                "heed variant: transform_logits_log2() must be noexcept");
  static_assert(!C::log2_transform::stray,
                "heed variant: defines transform_logits_log2() but has_log2_transform is false: "
                "misspelled flag?");
  static_assert(C::heavy_needs_transform,
                "heed variant: heavy_transform is set but has_logits_transform is not");

  static_assert(C::mask::present,
                "heed variant: has_logits_mask is set but there is no keep(const lane_ctx<A>&) "
                "const member returning batch_bool<float, A>");
  static_assert(C::mask::nothrow, "heed variant: keep() must be noexcept");
  static_assert(!C::mask::stray,
                "heed variant: defines keep() but has_logits_mask is false: misspelled flag?");

  static_assert(C::row_finalize::present,
                "heed variant: has_row_finalize is set but there is no "
                "finalize_row(int, std::int64_t, row_state&) const member");
  static_assert(C::row_finalize::nothrow, "heed variant: finalize_row() must be noexcept");
  static_assert(!C::row_finalize::stray,
                "heed variant: defines finalize_row() but has_row_finalize is false: "
                "misspelled flag?");

  static_assert(C::key_range::present,
                "heed variant: has_key_range is set but there is no key_range(std::int64_t, "
                "std::int64_t, std::int64_t&, std::int64_t&) const member");
  static_assert(C::key_range::nothrow, "heed variant: key_range() must be noexcept");
  static_assert(!C::key_range::stray,
                "heed variant: defines key_range() but has_key_range is false: misspelled flag?");

  static_assert(C::query_scale::present,
                "heed variant: has_query_scale is set but there is no query_scale(int, "
                "std::int64_t, std::int64_t) const member returning float");
  static_assert(C::query_scale::nothrow, "heed variant: query_scale() must be noexcept");
  static_assert(!C::query_scale::stray,
                "heed variant: defines query_scale() but has_query_scale is false: misspelled "
                "flag?");
  return C::ok;
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
