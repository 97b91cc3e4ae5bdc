// Admission (a write gate): decide when a token arrives, per KV head, whether it enters the cache
// at all, instead of (or before) evicting entries later. Asked for in kvpress issue #257
// ("decoding compression compatible with append-only KV cache architectures": keep/skip each
// new token without touching existing entries, as a paged serving cache needs); WG-KV (arXiv
// 2512.17452) learns such a gate.
//
//   auto p = heed::admitted(heed::streaming_llm_policy{}, spec);   // any policy, plus the gate
//
// admission_policy<Inner> is Inner (its scores, selection, needs, budgets) plus a gate of fixed
// rules; a token enters KV head h unless one of the rules that are on refuses it:
//   key norm      ||k|| > max_key_norm: keys of large norm draw little attention (KNorm, "A
//                 Simple and Effective L2 Norm-Based Strategy", arXiv 2406.11430), so the gate
//                 refuses them up front, where KNorm would evict them later
//   near-duplicate  cos(k, k_j) >= max_cosine for one of the last `window` entries j of the head
//                 (entries of the high tier in a tiered cache): the key adds little the cache
//                 does not already have
//   full          refuse_when_full and the head already holds `budget` entries: the cache is
//                 append-only, the budget is never exceeded and no eviction pass ever runs (the
//                 first `budget` admitted tokens stay)
// The first n_sink positions always enter (attention sinks). The defaults turn every rule off:
// max_key_norm and max_cosine +inf (cosines never reach it), refuse_when_full false.
//
// A user rule is a policy with its own admit() (policy.hpp), or a C callback
// (heed_callback_policy::admit, heed/c/heed_policy.h). Policies without one cost nothing: the
// eviction loop does not call the default gate (policy_traits.hpp, policy_gates).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>

#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"
#include "heed/scoring/detail/score_kernels.hpp"

namespace heed {

struct admission_spec {
  float max_key_norm = std::numeric_limits<float>::infinity();  // refuse ||k|| above this
  float max_cosine = std::numeric_limits<float>::infinity();    // refuse cos >= this (<= 1: on)
  std::int64_t window = 16;       // recent entries of the head a new key is compared with
  std::int64_t n_sink = 4;        // the first positions always enter
  bool refuse_when_full = false;  // refuse while the head holds the budget: never evict

  status validate() const noexcept {
    if (!(max_key_norm >= 0.f) || std::isnan(max_cosine)) return status::invalid_argument;
    if (window < 1 || window > (1 << 16) || n_sink < 0) return status::invalid_argument;
    return status::ok;
  }
};

namespace detail {
// Norm of row (0, head) of a [1, heads, d] view and, if cache rows are compared, the largest
// cosine with the last `window` entries of (layer, head) ((-inf) when it has none). Non-finite
// input: the norm is NaN (refused by no rule: NaN compares false; the caller decides).
inline void key_norm_and_max_cosine(const kv_cache& c, int layer, int head, const tensor_view& k,
                                    std::int64_t window, bool cosines, double& norm,
                                    double& max_cos) noexcept {
  const std::int64_t d = k.dim;
  const simd::row_shape rs(d, k.quant_group());
  norm = 0.0;
  max_cos = -std::numeric_limits<double>::infinity();
  with_typed(k, [&](auto kb) {
    const auto row = kb + k.offset(0, head);
    for (std::int64_t col = 0; col < d; ++col) {
      const double x = simd::load_col(row, col, rs);
      norm += x * x;
    }
    norm = std::sqrt(norm);
    if (!cosines) return;
    // The newest entries first: the high tier's rows (tiered), else the pages from the last.
    auto compare = [&](const tensor_view& rows, std::int64_t first, std::int64_t last) {
      const simd::row_shape cs(d, rows.quant_group());
      with_typed(rows, [&](auto cb) {
        for (std::int64_t j = last; j >= first; --j) {
          const auto cr = cb + rows.offset(j, 0);
          double dot = 0.0, cn = 0.0;
          for (std::int64_t col = 0; col < d; ++col) {
            const double y = simd::load_col(cr, col, cs);
            dot += double(simd::load_col(row, col, rs)) * y;
            cn += y * y;
          }
          const double denom = norm * std::sqrt(cn);
          const double cosv = denom > 0 ? dot / denom : 0.0;
          if (cosv > max_cos) max_cos = cosv;
        }
      });
    };
    std::int64_t left = window;
    if (c.tiered()) {
      const tensor_view hi = c.tier_keys(layer, head, 0);
      if (hi.seq > 0 && hi.data) compare(hi, std::max<std::int64_t>(0, hi.seq - left), hi.seq - 1);
      return;
    }
    for (int pi = c.page_count(layer, head) - 1; pi >= 0 && left > 0; --pi) {
      const tensor_view pg = c.page_keys(layer, head, pi);
      if (pg.seq == 0 || pg.data == nullptr) continue;
      const std::int64_t take = std::min(left, pg.seq);
      compare(pg, pg.seq - take, pg.seq - 1);
      left -= take;
    }
  });
}
}  // namespace detail

template <class Inner>
struct admission_policy : detail::wrapper_base<Inner> {
  using detail::wrapper_base<Inner>::inner;
  admission_spec spec{};

  bool gates() const noexcept { return true; }

  status admit(const admission_input& in, int head, bool& admitted) noexcept {
    HEED_RETURN_IF_ERROR(spec.validate());
    if (in.cache == nullptr) return status::null_pointer;
    if (in.keys.seq != 1 || head < 0 || head >= in.keys.heads) return status::shape_mismatch;
    // The inner policy's own gate first (a wrapper around a gating policy keeps its rule).
    HEED_RETURN_IF_ERROR(detail::policy_admit(inner, in, head, admitted));
    if (!admitted) return status::ok;
    if (in.position(head) < spec.n_sink) return status::ok;  // sinks always enter
    const std::int64_t len = in.length(head);
    if (spec.refuse_when_full && in.budget > 0 && len >= in.budget) {
      admitted = false;
      return status::ok;
    }
    const bool norm_rule = spec.max_key_norm < std::numeric_limits<float>::infinity();
    const bool cos_rule = spec.max_cosine <= 1.f && len > 0;
    if (!norm_rule && !cos_rule) return status::ok;
    double norm = 0.0, max_cos = 0.0;
    detail::key_norm_and_max_cosine(*in.cache, in.layer, head, in.keys, spec.window, cos_rule, norm,
                                    max_cos);
    if (norm_rule && norm > double(spec.max_key_norm)) admitted = false;
    if (cos_rule && max_cos >= double(spec.max_cosine)) admitted = false;
    return status::ok;
  }
};

// inner with the gate of `spec` (checked when the gate runs: a bad spec makes step() fail with
// status::invalid_argument; validate() it first to know).
template <class Inner>
admission_policy<Inner> admitted(Inner inner, const admission_spec& spec) {
  detail::check_policy<Inner>();
  return {{std::move(inner)}, spec};
}

}  // namespace heed
