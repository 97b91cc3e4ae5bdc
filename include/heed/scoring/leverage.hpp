// Statistical leverage of each key (Compactor, Chari & Van Durme 2025, arXiv 2507.08143; kvpress
// LeverageScorePress): how far a key sticks out of the subspace the other keys of its head span.
// Attention-free.
//
// Per KV head, over its L keys (x_j = k_j - mean_j k_j when centered, else k_j):
//   G        = sum_j x_j x_j^T = V diag(lambda) V^T           (d x d; lambda descending)
//   score_j  = sum over the top r eigenpairs with lambda_t > 0 of (x_j . v_t)^2 / (lambda_t +
//   ridge)
// With ridge 0 and r = rank(X) this is the squared row norm of U_r in the thin SVD X = U S V^T
// (lambda_t = s_t^2, U_{jt} = x_j . v_t / s_t): the leverage, in [0, 1], summing to r. Higher =
// keep: keys that no other key explains are kept, keys inside the common span go first.
//
// Defaults (leverage_options): centered (kvpress centers the keys over the sequence); rank 0 =
// every eigenpair (kvpress has no separate rank: its rank is min(sketch, d, L)); ridge 1e-2,
// kvpress's Cholesky jitter, which its first attempt always adds (G + 1e-2 I), so its scores are
// ridge leverages. kvpress sketches the keys first (X Phi, Phi a fresh d x 48 Gaussian / sqrt(48))
// to save work on wide heads; heed computes the exact Gram matrix instead (deterministic; for
// d <= 48 a full-rank sketch spans the same space), and kvpress's pre-RoPE keys are not in a
// cache: heed scores the cached keys as they are. Eigenpairs come from a Jacobi solver on the
// workspace (detail/sym_eigen.hpp). Eigenvalues at or below 1e-12 of the largest count as 0.
//
// K is a [seq, kv_heads, d] view of f32 / f16 / bf16 / q8 / q4 with any strides. Scores land at
// out[h * out_head_stride + j] (0 = the sequence length). Cost per head: L d^2 / 2 (the Gram
// matrix, in double) + O(d^3) (the eigenpairs) + L d r (the projections). Scratch:
// leverage_workspace_size(d, options); nothing is allocated.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/scoring/detail/sym_eigen.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {

struct leverage_options {
  std::int64_t rank = 0;  // top eigenpairs used; 0 = all (the head dim)
  bool center = true;     // subtract the mean key first
  double ridge = 1e-2;    // added to every eigenvalue (kvpress's Cholesky jitter); >= 0

  status validate() const noexcept {
    if (rank < 0 || !(ridge >= 0.0) || !std::isfinite(ridge)) return status::invalid_argument;
    return status::ok;
  }
};

// Eigenvalues at or below this fraction of the largest are the numerical zeros of G.
inline constexpr double leverage_zero_eigenvalue = 1e-12;

// Bytes of workspace for leverage_scores on rows of head_dim values (0 if head_dim < 1).
inline std::size_t leverage_workspace_size(std::int64_t head_dim) noexcept {
  if (head_dim < 1 || head_dim > (1 << 16)) return 0;
  const std::size_t d = std::size_t(head_dim);
  workspace_carver c(nullptr);
  c.take<double>(d * d);    // G (its eigenvalues end on the diagonal)
  c.take<double>(d * d);    // eigenvectors
  c.take<double>(d);        // mean key
  c.take<double>(d);        // one centered row
  c.take<std::int32_t>(d);  // eigenvalue order
  c.take<float>(d * d);     // W: the used eigenvectors, scaled by 1 / sqrt(lambda + ridge)
  c.take<float>(d);         // one centered row in f32
  return c.bytes_needed();
}

template <class Arch = xsimd::default_arch>
status leverage_scores(const tensor_view& k, const leverage_options& opt, float* out,
                       std::int64_t out_head_stride, workspace ws) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  HEED_RETURN_IF_ERROR(opt.validate());
  if (out == nullptr) return status::null_pointer;
  if (k.seq > detail::max_score_len) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, k.seq));
  const std::int64_t d = k.dim;
  if (ws.size < leverage_workspace_size(d)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  workspace_carver c(workspace_carver::align_base(ws.data));
  double* g = c.take<double>(std::size_t(d * d));
  double* vec = c.take<double>(std::size_t(d * d));
  double* mean = c.take<double>(std::size_t(d));
  double* x = c.take<double>(std::size_t(d));
  std::int32_t* order = c.take<std::int32_t>(std::size_t(d));
  float* w = c.take<float>(std::size_t(d * d));
  float* xf = c.take<float>(std::size_t(d));
  const std::int64_t r_max = opt.rank > 0 ? std::min(opt.rank, d) : d;
  const simd::row_shape rs(d, k.quant_group());
  detail::with_typed(k, [&](auto base) {
    for (std::int64_t h = 0; h < k.heads; ++h) {
      std::fill(mean, mean + d, 0.0);
      if (opt.center) {
        for (std::int64_t j = 0; j < k.seq; ++j) {
          const auto row = base + k.offset(j, h);
          for (std::int64_t col = 0; col < d; ++col) mean[col] += simd::load_col(row, col, rs);
        }
        for (std::int64_t col = 0; col < d; ++col) mean[col] /= double(k.seq);
      }
      // G = sum_j x_j x_j^T, upper triangle, then mirrored.
      std::fill(g, g + d * d, 0.0);
      for (std::int64_t j = 0; j < k.seq; ++j) {
        const auto row = base + k.offset(j, h);
        for (std::int64_t col = 0; col < d; ++col)
          x[col] = double(simd::load_col(row, col, rs)) - mean[col];
        for (std::int64_t r = 0; r < d; ++r) {
          const double xr = x[r];
          double* gr = g + r * d;
          for (std::int64_t col = r; col < d; ++col) gr[col] += xr * x[col];
        }
      }
      double total = 0.0;  // NaN or inf when any key is not finite
      for (std::int64_t r = 0; r < d; ++r) {
        for (std::int64_t col = 0; col < r; ++col) g[r * d + col] = g[col * d + r];
        for (std::int64_t col = r; col < d; ++col) total += g[r * d + col];
      }
      float* o = out + h * out_head_stride;
      if (!std::isfinite(total)) {
        std::fill(o, o + k.seq, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      detail::sym_eigen_jacobi(g, vec, d);
      detail::eigen_order(g, d, order);
      // The used directions, each scaled so that (w_t . x)^2 is its term of the score.
      const double top = g[std::int64_t(order[0]) * d + order[0]];
      std::int64_t used = 0;
      for (std::int64_t t = 0; t < r_max; ++t) {
        const std::int64_t e = order[t];
        const double lambda = g[e * d + e];
        if (!(lambda > leverage_zero_eigenvalue * top)) break;  // descending: the rest too
        const double scale = 1.0 / std::sqrt(lambda + opt.ridge);
        for (std::int64_t col = 0; col < d; ++col)
          w[used * d + col] = float(vec[col * d + e] * scale);
        ++used;
      }
      if (used == 0) {  // all keys equal (centered) or zero
        std::fill(o, o + k.seq, 0.f);
        continue;
      }
      for (std::int64_t j = 0; j < k.seq; ++j) {
        const auto row = base + k.offset(j, h);
        for (std::int64_t col = 0; col < d; ++col)
          xf[col] = float(double(simd::load_col(row, col, rs)) - mean[col]);
        float s = 0.f;
        for (std::int64_t t = 0; t < used; ++t) {
          const float p = detail::dot_row<Arch>(w + t * d, xf, d);
          s += p * p;
        }
        o[j] = s;
      }
    }
  });
  return status::ok;
}

}  // namespace heed
