// CriticalKV and CriticalAdaKV (Feng et al. 2025, arXiv 2502.03805; kvpress CriticalKVPress and
// CriticalAdaKVPress) as wrappers: any attention score, re-weighted by how much each entry's value
// moves the layer's output, with a two-stage selection.
//
//   critical(inner, epsilon, first_stage_ratio, wo)             CriticalKV
//   critical_adaptive(inner, floor, epsilon, first_stage_ratio, wo)   CriticalAdaKV
//
// Defaults (kvpress): epsilon 1e-4, first_stage_ratio 0.5; CriticalAdaKV's safeguard (AdaKV's
// per-head floor) 0.2.
//
// Per KV head h with group G (query heads hG .. hG + G - 1), s_j the inner score of entry j:
//   n_j = (1/G) sum_g || v_j W_o^(hG+g) ||_1      the value projected through the output
//         projection's slice of query head hG+g (W_o^q: the d x hidden block of W_o^T that
//         multiplies head q's attention output), L1 over the hidden size (kvpress vwl1norm);
//         without an output projection (wo.weights null), W_o^q is the identity: n_j = ||v_j||_1.
//   Stage 1: the best k1 = floor(first_stage_ratio * n_keep) entries by s (the ranking of
//         select.hpp; NaN scores never) score FLT_MAX, with n_keep = min(length, the head's
//         budget: inner.head_budget of policy_input::budget; the length when that is 0).
//   Stage 2: every other entry scores (s_j + epsilon) * n_j.
// The selection is the inner policy's: the best n_keep are the stage-1 entries, then the best by
// the re-weighted score. The re-weighting is meant for non-negative attention scores (SnapKV,
// H2O, ...); a negative score times a larger norm ranks lower.
//
// CriticalAdaKV (kvpress CriticalAdaKVPress): head budgets from the inner scores (AdaKV: one
// top-k over the layer's heads with a per-head floor, the safeguard alpha), entries within a head
// from the critical scores. heed's AdaKV selection (head_adaptive) ranks the scores it is given
// across heads, so this wrapper hands it each head's inner scores re-assigned in critical order:
// the r-th best entry by critical score gets the r-th largest inner score of the head. Each head
// then gets the budget its inner scores earn, filled in critical order. One difference from
// kvpress: stage 1 takes first_stage_ratio of the nominal per-head budget (policy_input::budget),
// where kvpress takes it of the head's allocated budget (known only after all heads are scored).
//
// Cost per eviction and KV head: the inner score, O(n d) for the value norms without W_o, or
// O(n G d hidden) with it (the projection of every value; n_j depends on the value only, but a
// policy cannot store per-entry state in the cache), plus the stage-1 selection (O(n)) and, for
// CriticalAdaKV, two rankings (radix sorts, O(n)).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <xsimd/xsimd.hpp>

#include "heed/policy/output_projection.hpp"
#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"
#include "heed/policy/select.hpp"
#include "heed/policy/wrappers.hpp"
#include "heed/scoring/detail/score_kernels.hpp"

namespace heed {

inline constexpr float critical_default_epsilon = 1e-4f;
inline constexpr double critical_default_first_stage_ratio = 0.5;
inline constexpr double critical_default_safeguard = 0.2;

namespace detail {

inline status check_projection(const output_projection& wo, const policy_input& in) noexcept {
  if (wo.weights == nullptr) return status::ok;
  const std::int64_t d = in.cache->head_dim(),
                     stride = wo.row_stride ? wo.row_stride : in.q_heads * d;
  if (wo.hidden <= 0 || wo.row_stride < 0 || stride < in.q_heads * d)
    return status::invalid_argument;
  if (in.layer < 0 || in.layer >= in.n_layers) return status::invalid_argument;
  if (wo.weights[in.layer] == nullptr) return status::null_pointer;
  return status::ok;
}

// sum_c |x[c]|
template <class A>
HEED_FORCE_INLINE float l1_row(const float* x, std::int64_t n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  B acc(0.f);
  std::int64_t c = 0;
  for (; c + L <= n; c += L) acc += xsimd::abs(B::load_unaligned(x + c));
  float s = simd::hsum<A>(acc);
  for (; c < n; ++c) s += std::fabs(x[c]);
  return s;
}

// The entries 0 .. n-1 in ranking order, best first (select.hpp's rule: rank key, then the higher
// index), into out: a stable radix sort of the 32-bit rank keys (3 passes of 11 bits) over the
// entries taken from the highest index down. tmp: n entries of scratch.
inline void rank_order(const float* s, std::int64_t n, std::uint32_t* out,
                       std::uint32_t* tmp) noexcept {
  std::uint32_t *src = tmp, *dst = out;  // three passes from tmp: the result lands in out
  for (std::int64_t i = 0; i < n; ++i) src[i] = std::uint32_t(n - 1 - i);
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = 11 * pass;
    std::uint32_t count[2049] = {};
    auto digit = [&](std::uint32_t j) {
      return ((~select_detail::rank_key(s[j])) >> shift) & 2047u;
    };
    for (std::int64_t i = 0; i < n; ++i) ++count[digit(src[i]) + 1];
    for (int b = 0; b < 2048; ++b) count[b + 1] += count[b];
    for (std::int64_t i = 0; i < n; ++i) dst[count[digit(src[i])]++] = src[i];
    std::swap(src, dst);
  }
}

// n_j of KV head `head` into norms[0, length); row: d floats of scratch.
template <class A = xsimd::default_arch>
status critical_value_norms(const policy_input& in, int head, const output_projection& wo,
                            float* norms, float* row) noexcept {
  HEED_RETURN_IF_ERROR(check_projection(wo, in));
  const tensor_view v = in.values(head);
  const std::int64_t n = in.length(head), d = in.cache->head_dim();
  if (n == 0) return status::ok;
  if (v.data == nullptr) return status::null_pointer;  // a paged head the loop did not gather
  HEED_RETURN_IF_ERROR(validate_view(v, /*quantized_ok=*/true));
  const simd::row_shape rs(d, v.quant_group());
  const int g = in.group();
  const std::int64_t stride = wo.row_stride ? wo.row_stride : std::int64_t(in.q_heads) * d;
  with_typed(v, [&](auto base) {
    for (std::int64_t j = 0; j < n; ++j) {
      simd::row_to_float<A>(base + v.offset(j, 0), row, rs);
      double total = 0.0;
      if (wo.weights == nullptr) {
        total = double(l1_row<A>(row, d));
      } else {
        const float* w = wo.weights[in.layer];
        for (int q = 0; q < g; ++q) {
          const float* slice = w + (std::int64_t(head) * g + q) * d;
          double l1 = 0.0;
          for (std::int64_t i = 0; i < wo.hidden; ++i)
            l1 += std::fabs(double(dot_row<A>(row, slice + i * stride, d)));
          total += l1;
        }
        total /= double(g);
      }
      norms[j] = float(total);
    }
  });
  return status::ok;
}

}  // namespace detail

template <class Inner>
struct critical_policy : detail::wrapper_base<Inner> {
  using detail::wrapper_base<Inner>::inner;
  float epsilon = critical_default_epsilon;
  double first_stage_ratio = critical_default_first_stage_ratio;
  output_projection wo{};
  // CriticalAdaKV: the head's inner scores re-assigned in critical order (for head_adaptive).
  bool rank_remap = false;

  const char* name() const noexcept { return rank_remap ? "critical_adakv" : "critical_kv"; }
  score_needs needs() const noexcept {
    score_needs n = inner.needs();
    n.kv_rows = true;
    return n;
  }
  bool valid() const noexcept {
    return std::isfinite(epsilon) && epsilon >= 0.f && first_stage_ratio >= 0.0 &&
           first_stage_ratio <= 1.0;
  }
  // The inner workspace, then rows of the longest head: two of floats, two of int32 and (for the
  // remap) three of uint32; and one value row.
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    const std::size_t len = std::size_t(in.cache->max_length(in.layer));
    workspace_carver c(nullptr);
    carve(c, in, len);
    return c.bytes_needed();
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (!valid()) return status::invalid_argument;
    if (ws.size < score_workspace_size(in)) return status::workspace_too_small;
    const std::size_t len = std::size_t(in.cache->max_length(in.layer));
    workspace_carver c(workspace_carver::align_base(ws.data));
    const parts w = carve(c, in, len);
    float* raw = w.raw;
    std::int32_t* idx = w.idx;
    HEED_RETURN_IF_ERROR(inner.score(in, head, out, {w.inner, w.inner_bytes}));
    const std::int64_t n = in.length(head);
    if (n == 0) return status::ok;
    float* norms = w.norms;
    HEED_RETURN_IF_ERROR(detail::critical_value_norms(in, head, wo, norms, w.row));
    std::copy(out, out + n, raw);
    // Stage 2 everywhere, then stage 1 on top.
    for (std::int64_t j = 0; j < n; ++j) out[j] = (raw[j] + epsilon) * norms[j];
    const std::int64_t budget = in.budget > 0 ? inner.head_budget(in, head, in.budget) : n;
    const std::int64_t n_keep = std::min(n, std::max<std::int64_t>(0, budget));
    const auto k1 = static_cast<std::int64_t>(std::floor(first_stage_ratio * double(n_keep)));
    std::int64_t n_first = 0;
    HEED_RETURN_IF_ERROR(select_top_k(raw, n, k1, {}, idx, &n_first, w.scratch));
    for (std::int64_t i = 0; i < n_first; ++i)
      if (!std::isnan(raw[idx[i]])) out[idx[i]] = std::numeric_limits<float>::max();
    if (rank_remap) remap(raw, out, n, w.ka, w.kb, w.kt);
    return status::ok;
  }

 private:
  struct parts {
    void* inner;
    std::size_t inner_bytes;
    float *raw, *norms, *row;
    std::int32_t *idx, *scratch;
    std::uint32_t *ka, *kb, *kt;
  };
  parts carve(workspace_carver& c, const policy_input& in, std::size_t len) const noexcept {
    parts p;
    p.inner_bytes = inner.score_workspace_size(in);
    p.inner = c.take<unsigned char>(p.inner_bytes);
    p.raw = c.take<float>(len);
    p.norms = c.take<float>(len);
    p.idx = c.take<std::int32_t>(len);
    p.scratch = c.take<std::int32_t>(len);
    p.ka = c.take<std::uint32_t>(rank_remap ? len : 0);
    p.kb = c.take<std::uint32_t>(rank_remap ? len : 0);
    p.kt = c.take<std::uint32_t>(rank_remap ? len : 0);
    p.row = c.take<float>(std::size_t(in.cache->head_dim()));
    return p;
  }
  // out[entry of critical rank r] = the r-th best of raw (NaN last), both ranked by select.hpp's
  // rule (detail::rank_order); a, b, t: n entries each.
  static void remap(const float* raw, float* out, std::int64_t n, std::uint32_t* a,
                    std::uint32_t* b, std::uint32_t* t) noexcept {
    detail::rank_order(out, n, a, t);
    detail::rank_order(raw, n, b, t);
    for (std::int64_t r = 0; r < n; ++r) out[a[r]] = raw[b[r]];
  }
};

template <class Inner>
critical_policy<Inner> critical(Inner inner, float epsilon = critical_default_epsilon,
                                double first_stage_ratio = critical_default_first_stage_ratio,
                                output_projection wo = {}) {
  detail::check_policy<Inner>();
  return {{std::move(inner)}, epsilon, first_stage_ratio, wo, false};
}

template <class Inner>
reselect_policy<critical_policy<Inner>> critical_adaptive(
    Inner inner, double floor_fraction = critical_default_safeguard,
    float epsilon = critical_default_epsilon,
    double first_stage_ratio = critical_default_first_stage_ratio, output_projection wo = {}) {
  detail::check_policy<Inner>();
  return head_adaptive(
      critical_policy<Inner>{{std::move(inner)}, epsilon, first_stage_ratio, wo, true},
      floor_fraction);
}

}  // namespace heed
