// Q-Filters (Godey et al. 2025, arXiv 2503.02812): an attention-free score from one direction per
// (layer, KV head), calibrated once from the model's queries.
//
// Calibration, per query head h over n (post-RoPE) queries q_i:
//   G   = sum_i q_i q_i^T                       (d x d, uncentered: the SVD of Q = U S V^T has
//   v_1 = top eigenvector of G                   v_1 as its first right singular vector)
//   s   = +1 if more queries have q_i . v_1 > 0 than < 0, -1 if fewer; on a tie the sign of
//         sum_i q_i . v_1 (so the mean query projects positively), +1 if that is 0 too
//   f_kv = (1 / G) sum over the group's G query heads of s v_1   (averaged, not renormalized)
// The original code (make_filters.py) takes s from the majority sign of u_1, the first left
// singular vector; u_1 = Q v_1 / sigma_1, so that is the same test. It stores -f and kvpress's
// QFilterPress scores -(stored . k): the net score is the one below.
//
// Score, per KV head and key (higher = keep):
//   score_j = f_kv . k_j
// Queries concentrate around s v_1, so q . k ~ (q . s v_1)(s v_1 . k) with q . s v_1 > 0 for most
// queries: keys far along the filter direction draw the most attention and are kept; keys far on
// the negative side draw the least and go first.
//
// q_filters_calibrate reads f32 queries [n, Hq, d] and writes filters [Hkv, d]; it allocates
// nothing (q_filters_calibration_workspace_size(d): G and two rows, in double). O(n d^2) for G
// per query head, plus d^2 per power iteration (detail::top_eigenvector).
// q_filters_scores reads K [seq, kv_heads, d] of any cache type with any strides; scores land at
// out[h * out_head_stride + j] (0 = the sequence length). O(Lk d) per head, no workspace.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"

namespace heed {

// Power iteration's limits: it stops when two successive directions agree to 1e-14 (1 - |cos|)
// or after this many products with G.
inline constexpr int q_filters_max_iterations = 1000;

// Bytes of workspace for q_filters_calibrate on rows of head_dim values (0 if head_dim < 1).
inline std::size_t q_filters_calibration_workspace_size(std::int64_t head_dim) noexcept {
  if (head_dim < 1 || head_dim > (1 << 16)) return 0;
  workspace_carver c(nullptr);
  c.take<double>(std::size_t(head_dim * head_dim));  // G
  c.take<double>(std::size_t(head_dim));             // the direction
  c.take<double>(std::size_t(head_dim));             // G times it
  return c.bytes_needed();
}

namespace detail {
// The unit top eigenvector of the symmetric positive semi-definite g (d x d) into v, by power
// iteration from `start` (the queries' sum; the column of g with the largest diagonal when that
// is ~0). Only the top direction is needed: d^2 per iteration, against d^3 per sweep of a full
// eigen-decomposition (detail/sym_eigen.hpp), and the self-calibrating policy runs it at every
// eviction. (Eigen is a dependency of heed's headers, but its eigen solvers allocate, and score()
// may not.) Non-finite input leaves NaN in v.
inline void top_eigenvector(const double* g, std::int64_t d, double* v, double* w) noexcept {
  double n = 0.0;
  for (std::int64_t r = 0; r < d; ++r) n += v[r] * v[r];
  double trace = 0.0;
  std::int64_t best = 0;
  for (std::int64_t r = 0; r < d; ++r) {
    trace += g[r * d + r];
    if (g[r * d + r] > g[best * d + best]) best = r;
  }
  if (!(n > 1e-24 * trace)) {  // no usable start: the strongest axis's column
    for (std::int64_t r = 0; r < d; ++r) v[r] = g[r * d + best];
    n = 0.0;
    for (std::int64_t r = 0; r < d; ++r) n += v[r] * v[r];
    if (!(n > 0.0)) {  // G = 0: any direction; the first axis
      for (std::int64_t r = 0; r < d; ++r) v[r] = r == 0 ? 1.0 : 0.0;
      return;
    }
  }
  n = std::sqrt(n);
  for (std::int64_t r = 0; r < d; ++r) v[r] /= n;
  for (int it = 0; it < q_filters_max_iterations; ++it) {
    double wn = 0.0;
    for (std::int64_t r = 0; r < d; ++r) {
      double x = 0.0;
      for (std::int64_t c = 0; c < d; ++c) x += g[r * d + c] * v[c];
      w[r] = x;
      wn += x * x;
    }
    wn = std::sqrt(wn);
    if (!(wn > 0.0)) return;  // v is in G's null space (or NaN): keep it
    double cosv = 0.0;
    for (std::int64_t r = 0; r < d; ++r) {
      w[r] /= wn;
      cosv += w[r] * v[r];
      v[r] = w[r];
    }
    if (1.0 - std::fabs(cosv) < 1e-14) return;
  }
}
}  // namespace detail

// q: [n, Hq, d] f32 (n >= 1); filters: [kv_heads][d] (Hq a multiple of kv_heads).
template <class Arch = xsimd::default_arch>
status q_filters_calibrate(const tensor_view& q, int kv_heads, float* filters,
                           workspace ws) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(q));
  if (q.type != dtype::f32) return status::unsupported_dtype;
  if (filters == nullptr) return status::null_pointer;
  if (kv_heads <= 0 || q.heads % kv_heads != 0) return status::shape_mismatch;
  const std::int64_t d = q.dim;
  if (ws.size < q_filters_calibration_workspace_size(d)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  workspace_carver c(workspace_carver::align_base(ws.data));
  double* g = c.take<double>(std::size_t(d * d));
  double* v = c.take<double>(std::size_t(d));
  double* w = c.take<double>(std::size_t(d));
  const std::int64_t group = q.heads / kv_heads;
  for (std::int64_t i = 0; i < std::int64_t(kv_heads) * d; ++i) filters[i] = 0.f;
  for (std::int64_t h = 0; h < q.heads; ++h) {
    for (std::int64_t i = 0; i < d * d; ++i) g[i] = 0.0;
    for (std::int64_t r = 0; r < d; ++r) v[r] = 0.0;
    for (std::int64_t i = 0; i < q.seq; ++i) {
      const float* x = q.row<const float>(i, h);
      for (std::int64_t r = 0; r < d; ++r) {
        const double xr = x[r];
        v[r] += xr;
        for (std::int64_t cc = r; cc < d; ++cc) g[r * d + cc] += xr * double(x[cc]);
      }
    }
    for (std::int64_t r = 0; r < d; ++r)
      for (std::int64_t cc = 0; cc < r; ++cc) g[r * d + cc] = g[cc * d + r];
    detail::top_eigenvector(g, d, v, w);
    // The sign: most queries (then their sum) on the positive side.
    std::int64_t pos = 0, neg = 0;
    double sum = 0.0;
    for (std::int64_t i = 0; i < q.seq; ++i) {
      const float* x = q.row<const float>(i, h);
      double p = 0.0;
      for (std::int64_t r = 0; r < d; ++r) p += double(x[r]) * v[r];
      pos += p > 0;
      neg += p < 0;
      sum += p;
    }
    const double s = pos != neg ? (pos > neg ? 1.0 : -1.0) : (sum < 0 ? -1.0 : 1.0);
    float* f = filters + (h / group) * d;
    for (std::int64_t r = 0; r < d; ++r) f[r] += float(s * v[r] / double(group));
  }
  return status::ok;
}

// score_j = filters[h] . k_j for every KV head h of k (filters: [k.heads][k.dim]).
template <class Arch = xsimd::default_arch>
status q_filters_scores(const tensor_view& k, const float* filters, float* out,
                        std::int64_t out_head_stride = 0) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  if (out == nullptr || filters == nullptr) return status::null_pointer;
  if (k.seq > detail::max_score_len) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, k.seq));
  detail::with_typed(k, [&](auto base) {
    for (std::int64_t h = 0; h < k.heads; ++h) {
      const float* f = filters + h * k.dim;
      float* o = out + h * out_head_stride;
      for (std::int64_t j = 0; j < k.seq; ++j)
        o[j] = detail::dot_row<Arch>(f, base + k.offset(j, h), k.dim);
    }
  });
  return status::ok;
}

}  // namespace heed
