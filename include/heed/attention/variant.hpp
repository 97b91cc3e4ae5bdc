// Compile-time variants: hooks on the logits and on the end of each row.
//
// A variant derives from variant_base, flips the flags it needs and provides the matching
// members. Lanes of a batch are (query, key) pairs whose positions are given in lane_ctx, so the
// same hook works whether the kernel puts queries (prefill) or keys (decode) in the lanes.
//
//   has_logits_transform: template <class A> xsimd::batch<float, A>
//                           transform_logits(xsimd::batch<float, A> s, const lane_ctx<A>&) const;
//                         s is the scaled logit q.k * scale in natural units.
//   has_log2_transform:   (optional, with has_logits_transform) template <class A>
//                           xsimd::batch<float, A> transform_logits_log2(batch u, const
//                           lane_ctx<A>&)
//                         the same transform on u = s * log2(e), the units the kernels keep
//                         logits in; saves the two unit conversions per logit. transform_logits
//                         is still required (analysis paths use it).
//   heavy_transform:      (optional, with has_logits_transform) the transform is long (many
//                         constants, e.g. a tanh or a log-sigmoid): prefill then applies it in
//                         a separate pass over the stored score tile, so its constants do not
//                         take the registers of the Q K^T loop (short transforms such as ALiBi
//                         run inside that loop, which saves the pass).
//   has_logits_mask:      template <class A> xsimd::batch_bool<float, A>
//                           keep(const lane_ctx<A>&) const;     AND-ed with the causal mask.
//   has_row_finalize:     void finalize_row(int q_head, std::int64_t q_pos, row_state&) const;
//                         may fold extra terms into (m, d, t); see fold_virtual_logit().
//   has_key_range:        void key_range(std::int64_t q_lo, std::int64_t q_hi,
//                           std::int64_t& k_lo, std::int64_t& k_hi) const;
//                         narrows the keys that queries with positions in [q_lo, q_hi] can see,
//                         so whole tiles are skipped (the mask must agree with it).
//   has_query_scale:      float query_scale(int q_head, std::int64_t q_pos, std::int64_t n) const;
//                         multiplies the row's logits (applied to the query once per row, so
//                         it is free in the inner loop); n = keys the causal limit lets the row
//                         see (q_pos + 1, at most kv_len; kv_len when not causal).
//
// Every hook is const and noexcept. A flag and its member must agree: variant_traits.hpp checks
// it at compile time where the variant enters the library (a flag without its member, or a
// member without its flag, e.g. under a misspelled flag name, fails with a message naming both).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN

template <class A>
struct lane_ctx {
  int q_head;
  int kv_head;
  xsimd::batch<std::int32_t, A> q_pos;  // position of each lane's query among the keys
  xsimd::batch<std::int32_t, A> k_pos;  // position of each lane's key
};

// Running softmax state of one row, natural-log units: m = max logit, d = sum exp(s - m),
// t = sum exp(s - m) * s. LSE = m + log d; entropy = LSE - t / d.
struct row_state {
  float m;
  float d;
  float t;
};

// Adds a virtual key with logit s and a zero value to the row (a learned attention sink).
// A logit of -inf adds nothing.
HEED_FORCE_INLINE void fold_virtual_logit(row_state& r, float s) noexcept {
  if (s == -std::numeric_limits<float>::infinity()) return;
  if (!(r.m >= s)) {  // also taken when m is -inf
    const float a = std::isinf(r.m) ? 0.f : std::exp(r.m - s);
    r.d = r.d * a + 1.f;
    r.t = r.t * a + s;
    r.m = s;
  } else {
    const float e = std::exp(s - r.m);
    r.d += e;
    r.t += e * s;
  }
}

struct variant_base {
  static constexpr bool has_logits_transform = false;
  static constexpr bool has_log2_transform = false;
  static constexpr bool heavy_transform = false;
  static constexpr bool has_logits_mask = false;
  static constexpr bool has_row_finalize = false;
  static constexpr bool has_key_range = false;
  static constexpr bool has_query_scale = false;
};

// The plain kernel: no hooks.
struct no_variant : variant_base {};

namespace detail {
// The variant's logits transform on u = s * log2(e) (what the kernels' inner loops hold).
template <class V, class A>
HEED_FORCE_INLINE xsimd::batch<float, A> transform_log2(const V& var, xsimd::batch<float, A> u,
                                                        const lane_ctx<A>& c) noexcept {
  using B = xsimd::batch<float, A>;
  if constexpr (V::has_log2_transform) {
    return var.transform_logits_log2(u, c);
  } else {
    constexpr float ln2 = 0.693147180559945309f, log2e = 1.44269504088896341f;
    return var.transform_logits(u * B(ln2), c) * B(log2e);
  }
}
}  // namespace detail

HEED_ISA_END
}  // namespace heed
