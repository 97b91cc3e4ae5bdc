// Composes variants: chain<V1, V2, ...> has every hook any member has. Logit transforms apply in
// order (V1 first), masks are AND-ed, row finalizes run in order, key ranges narrow by each,
// query scales multiply. Members without a hook are skipped at compile time, so a chain costs
// what its members cost. A hook no member has is not declared either (each is enabled by its
// flag), so the chain meets the variant contract (variant_traits.hpp).
//
//   heed::chain<heed::alibi, heed::softcap, heed::learned_sinks> v{
//       heed::alibi(slopes), heed::softcap(30.f), heed::learned_sinks(sinks)};
#pragma once

#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "heed/attention/variant.hpp"

namespace heed {

template <class... Vs>
struct chain : variant_base {
  static constexpr bool has_logits_transform = (Vs::has_logits_transform || ...);
  static constexpr bool heavy_transform = (Vs::heavy_transform || ...);
  static constexpr bool has_logits_mask = (Vs::has_logits_mask || ...);
  static constexpr bool has_row_finalize = (Vs::has_row_finalize || ...);
  static constexpr bool has_key_range = (Vs::has_key_range || ...);
  static constexpr bool has_query_scale = (Vs::has_query_scale || ...);

  std::tuple<Vs...> parts;

  explicit chain(Vs... vs) noexcept : parts(std::move(vs)...) {}

  template <class A, bool On = has_logits_transform, std::enable_if_t<On, int> = 0>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const lane_ctx<A>& c) const noexcept {
    std::apply(
        [&](const auto&... v) {
          (
              [&](const auto& one) {
                if constexpr (std::decay_t<decltype(one)>::has_logits_transform)
                  s = one.transform_logits(s, c);
              }(v),
              ...);
        },
        parts);
    return s;
  }
  template <class A, bool On = has_logits_mask, std::enable_if_t<On, int> = 0>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    xsimd::batch_bool<float, A> k(true);
    std::apply(
        [&](const auto&... v) {
          (
              [&](const auto& one) {
                if constexpr (std::decay_t<decltype(one)>::has_logits_mask) k = k && one.keep(c);
              }(v),
              ...);
        },
        parts);
    return k;
  }
  template <bool On = has_row_finalize, std::enable_if_t<On, int> = 0>
  HEED_FORCE_INLINE void finalize_row(int q_head, std::int64_t q_pos, row_state& r) const noexcept {
    std::apply(
        [&](const auto&... v) {
          (
              [&](const auto& one) {
                if constexpr (std::decay_t<decltype(one)>::has_row_finalize)
                  one.finalize_row(q_head, q_pos, r);
              }(v),
              ...);
        },
        parts);
  }
  template <bool On = has_key_range, std::enable_if_t<On, int> = 0>
  HEED_FORCE_INLINE void key_range(std::int64_t q_lo, std::int64_t q_hi, std::int64_t& k_lo,
                                   std::int64_t& k_hi) const noexcept {
    std::apply(
        [&](const auto&... v) {
          (
              [&](const auto& one) {
                if constexpr (std::decay_t<decltype(one)>::has_key_range)
                  one.key_range(q_lo, q_hi, k_lo, k_hi);
              }(v),
              ...);
        },
        parts);
  }
  template <bool On = has_query_scale, std::enable_if_t<On, int> = 0>
  HEED_FORCE_INLINE float query_scale(int q_head, std::int64_t q_pos,
                                      std::int64_t n) const noexcept {
    float f = 1.f;
    std::apply(
        [&](const auto&... v) {
          (
              [&](const auto& one) {
                if constexpr (std::decay_t<decltype(one)>::has_query_scale)
                  f *= one.query_scale(q_head, q_pos, n);
              }(v),
              ...);
        },
        parts);
    return f;
  }
};

}  // namespace heed
