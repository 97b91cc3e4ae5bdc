// Statistical leverage of each key (Compactor, Chari & Van Durme 2025, arXiv 2507.08143; kvpress
// LeverageScorePress): how far a key sticks out of the subspace the other keys of its head span.
// Attention-free.
//
// Per KV head, over its L keys: x_j = k_j - mean_j k_j (centered) or k_j; with a sketch of k < d
// columns, x_j is replaced by y_j = Phi^T x_j (Phi: d x k); m = k or d is the working dimension.
//   G        = sum_j x_j x_j^T = V diag(lambda) V^T           (m x m; lambda descending)
//   score_j  = sum over the top r eigenpairs with lambda_t > 0 of (x_j . v_t)^2 / (lambda_t +
//              ridge)
// With ridge 0, no sketch and r = rank(X) this is the squared row norm of U_r in the thin SVD
// X = U S V^T (lambda_t = s_t^2, U_jt = x_j . v_t / s_t): the leverage, in [0, 1], summing to r.
// Higher = keep: keys that no other key explains are kept, keys inside the common span go first.
// Full rank (r = 0) is x_j^T (G + ridge I)^-1 x_j, computed through the Cholesky factor of
// G + ridge I; rank r < m through the eigenpairs (Jacobi, detail/sym_eigen.hpp).
//
// Defaults (leverage_options), kvpress's: centered; rank 0 = every eigenpair (kvpress has no
// separate rank: its rank is min(sketch, d, L)); ridge 1e-2, kvpress's Cholesky jitter, which its
// first attempt always adds (G + 1e-2 I), so its scores are ridge leverages; sketch 48 columns
// (`sketch_dimension`). kvpress draws a fresh Gaussian Phi / sqrt(48) at every call; heed's Phi is
// fixed, +-1 / sqrt(k) from a hash of (row, column) (a Rademacher sketch: a Johnson-Lindenstrauss
// map like the Gaussian one, and deterministic). When k >= d a sketch cannot save work and spans
// what the keys span, so heed computes the exact leverage (this model's head dim of 8 included).
// kvpress's pre-RoPE keys are not in a cache: heed scores the cached keys as they are.
//
// K is a [seq, kv_heads, d] view of f32 / f16 / bf16 / q8 / q4 with any strides. Scores land at
// out[h * out_head_stride + j] (0 = the sequence length). Cost per head, as f32 GEMMs in blocks of
// 64 keys summed in double: exact, 2 L d^2 (the Gram matrix and the projections) + O(d^3);
// sketched, L d k (the sketch, kept in the workspace) + 2 L k^2 + O(k^3). Scratch:
// leverage_workspace_size(d, L, options); nothing is allocated.
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
#include "heed/linear/detail/small_gemm.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/scoring/detail/sym_eigen.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {

struct leverage_options {
  std::int64_t rank = 0;     // top eigenpairs used; 0 = all
  std::int64_t sketch = 48;  // sketch columns k (kvpress's sketch_dimension); 0 or >= d: exact
  bool center = true;        // subtract the mean key first
  double ridge = 1e-2;       // added to every eigenvalue (kvpress's Cholesky jitter); >= 0

  status validate() const noexcept {
    if (rank < 0 || sketch < 0 || sketch > (1 << 16) || !(ridge >= 0.0) || !std::isfinite(ridge))
      return status::invalid_argument;
    return status::ok;
  }
  // The sketch's columns for head dim d, 0 when the leverage is exact.
  std::int64_t sketch_columns(std::int64_t d) const noexcept {
    return sketch > 0 && sketch < d ? sketch : 0;
  }
};

// Eigenvalues at or below this fraction of the largest are the numerical zeros of G.
inline constexpr double leverage_zero_eigenvalue = 1e-12;
// Keys per block of the Gram matrix and projection products (float blocks, double sums).
inline constexpr std::int64_t leverage_block = 64;

// Bytes of workspace for leverage_scores on heads of up to seq keys of head_dim values (0 if
// head_dim < 1 or seq < 0).
inline std::size_t leverage_workspace_size(std::int64_t head_dim, std::int64_t seq,
                                           const leverage_options& opt = {}) noexcept {
  if (head_dim < 1 || head_dim > (1 << 16) || seq < 0 || opt.validate() != status::ok) return 0;
  const std::size_t d = std::size_t(head_dim), b = std::size_t(leverage_block);
  const std::size_t k = std::size_t(opt.sketch_columns(head_dim)), m = k > 0 ? k : d;
  workspace_carver c(nullptr);
  c.take<double>(m * m);                // G (its eigenvalues end on the diagonal)
  c.take<double>(m * m);                // eigenvectors, or the Cholesky factor
  c.take<double>(d);                    // mean key
  c.take<std::int32_t>(m);              // eigenvalue order
  c.take<float>(m * m);                 // one block's Gram matrix; then W^T [m, used]
  c.take<float>(b * d);                 // a block of centered keys [b, d]
  c.take<float>(b * m);                 // a block transposed [m, b]; then its projections [b, used]
  c.take<float>(d);                     // the mean key in f32
  c.take<float>(d * k);                 // the sketch Phi [d, k]
  c.take<float>(std::size_t(seq) * k);  // the sketched keys Y [seq, k]
  return c.bytes_needed();
}

// Entry (row, col) of the sketch of k columns: +-1 / sqrt(k), the sign a hash of (row, col).
inline float leverage_sketch_entry(std::int64_t row, std::int64_t col, std::int64_t k) noexcept {
  std::uint64_t z = (std::uint64_t(row) << 32) ^ std::uint64_t(col) ^ 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;  // splitmix64's finalizer
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return float((z & 1) ? 1.0 : -1.0) / std::sqrt(float(k));
}

namespace detail {
// Rows j0 .. j0 + n of head h of k, centered by mean, into x [n, d].
template <class A, class P>
void leverage_block_rows(P base, const tensor_view& k, std::int64_t h, std::int64_t j0,
                         std::int64_t n, const float* mean, float* x) noexcept {
  const std::int64_t d = k.dim;
  const simd::row_shape rs(d, k.quant_group());
  for (std::int64_t i = 0; i < n; ++i) {
    float* xi = x + i * d;
    simd::row_to_float<A>(base + k.offset(j0 + i, h), xi, rs);
    for (std::int64_t c = 0; c < d; ++c) xi[c] -= mean[c];
  }
}

// C = A B (M x N, K deep, row-major with leading dimensions) by small_gemm, with wider register
// tiles for the narrow N of a sketch (48 columns = 3 vectors of 16 floats; small_gemm's tiles on
// 32-register ISAs are 4 vectors wide and would fall back to 1-vector tiles).
template <class A>
void leverage_gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda,
                   const float* b, std::int64_t ldb, float* c, std::int64_t ldc) noexcept {
  using C = gemm_cfg<A>;
  constexpr std::int64_t L = C::L;
  std::int64_t j = 0;
  if constexpr (C::V >= 4) {
    for (; j + 4 * L <= N; j += 4 * L)
      gemm_columns<A, 4>(M, K, a, lda, b + j, ldb, c + j, ldc, false);
    if (j + 3 * L <= N) {
      gemm_columns<A, 3>(M, K, a, lda, b + j, ldb, c + j, ldc, false);
      j += 3 * L;
    }
  }
  if (j < N) small_gemm<A>(M, N - j, K, a, lda, b + j, ldb, c + j, ldc, false);
}

// Lower Cholesky factor of g (d x d, in place, upper part zeroed); false if a pivot is not
// above tol (not positive definite enough: the eigen path takes over).
inline bool cholesky_lower(double* g, std::int64_t d, double tol) noexcept {
  for (std::int64_t j = 0; j < d; ++j) {
    double s = g[j * d + j];
    for (std::int64_t t = 0; t < j; ++t) s -= g[j * d + t] * g[j * d + t];
    if (!(s > tol)) return false;
    const double l = std::sqrt(s);
    g[j * d + j] = l;
    for (std::int64_t i = j + 1; i < d; ++i) {
      double x = g[i * d + j];
      for (std::int64_t t = 0; t < j; ++t) x -= g[i * d + t] * g[j * d + t];
      g[i * d + j] = x / l;
    }
    for (std::int64_t i = 0; i < j; ++i) g[i * d + j] = 0.0;
  }
  return true;
}

// inv_t = (L^-1)^T of a lower-triangular l (d x d): row c of inv_t is column c of L^-1, found by
// forward substitution (L y = e_c); both operands of the inner product are contiguous.
inline void invert_lower_transposed(const double* l, std::int64_t d, double* inv_t) noexcept {
  for (std::int64_t i = 0; i < d * d; ++i) inv_t[i] = 0.0;
  for (std::int64_t c = 0; c < d; ++c) {
    double* y = inv_t + c * d;
    for (std::int64_t r = c; r < d; ++r) {
      double s = r == c ? 1.0 : 0.0;
      for (std::int64_t t = c; t < r; ++t) s -= l[r * d + t] * y[t];
      y[r] = s / l[r * d + r];
    }
  }
}
}  // namespace detail

template <class Arch = xsimd::default_arch>
status leverage_scores(const tensor_view& k, const leverage_options& opt, float* out,
                       std::int64_t out_head_stride, workspace ws) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  HEED_RETURN_IF_ERROR(opt.validate());
  if (out == nullptr) return status::null_pointer;
  if (k.seq > detail::max_score_len) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, k.seq));
  const std::int64_t d = k.dim, nb = leverage_block, ks = opt.sketch_columns(d);
  const std::int64_t m = ks > 0 ? ks : d;  // the working dimension
  if (ws.size < leverage_workspace_size(d, k.seq, opt)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  workspace_carver c(workspace_carver::align_base(ws.data));
  double* g = c.take<double>(std::size_t(m * m));
  double* vec = c.take<double>(std::size_t(m * m));
  double* mean = c.take<double>(std::size_t(d));
  std::int32_t* order = c.take<std::int32_t>(std::size_t(m));
  float* gf = c.take<float>(std::size_t(m * m));
  float* xb = c.take<float>(std::size_t(nb * d));
  float* xt = c.take<float>(std::size_t(nb * m));
  float* meanf = c.take<float>(std::size_t(d));
  float* phi = c.take<float>(std::size_t(d * ks));
  float* y = c.take<float>(std::size_t(k.seq * ks));
  for (std::int64_t r = 0; r < d; ++r)
    for (std::int64_t t = 0; t < ks; ++t) phi[r * ks + t] = leverage_sketch_entry(r, t, ks);
  const bool full = opt.rank == 0 || opt.rank >= m;
  const std::int64_t r_max = full ? m : opt.rank;
  detail::with_typed(k, [&](auto base) {
    // Rows j0 .. j0 + n of head h in the working space: the centered keys (exact), or their
    // sketch (kept in y by the Gram pass).
    for (std::int64_t h = 0; h < k.heads; ++h) {
      float* o = out + h * out_head_stride;
      std::fill(mean, mean + d, 0.0);
      std::fill(meanf, meanf + d, 0.f);
      if (ks > 0) {
        // Sketched: Y = K Phi block by block (kept in y), then centered by its column means
        // (Phi^T (k - mean) = Phi^T k - Phi^T mean: no separate pass for the mean key).
        for (std::int64_t j0 = 0; j0 < k.seq; j0 += nb) {
          const std::int64_t n = std::min(nb, k.seq - j0);
          detail::leverage_block_rows<Arch>(base, k, h, j0, n, meanf, xb);
          detail::leverage_gemm<Arch>(n, ks, d, xb, d, phi, ks, y + j0 * ks, ks);
          if (!opt.center) continue;
          std::fill(xt, xt + ks, 0.f);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t t = 0; t < ks; ++t) xt[t] += y[(j0 + i) * ks + t];
          for (std::int64_t t = 0; t < ks; ++t) mean[t] += xt[t];
        }
        if (opt.center) {
          for (std::int64_t t = 0; t < ks; ++t) xt[t] = float(mean[t] / double(k.seq));
          for (std::int64_t j = 0; j < k.seq; ++j)
            for (std::int64_t t = 0; t < ks; ++t) y[j * ks + t] -= xt[t];
        }
      } else if (opt.center) {
        // The mean key (block sums in f32, their total in double).
        for (std::int64_t j0 = 0; j0 < k.seq; j0 += nb) {
          const std::int64_t n = std::min(nb, k.seq - j0);
          detail::leverage_block_rows<Arch>(base, k, h, j0, n, meanf, xb);
          std::fill(xt, xt + d, 0.f);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t col = 0; col < d; ++col) xt[col] += xb[i * d + col];
          for (std::int64_t col = 0; col < d; ++col) mean[col] += xt[col];
        }
        for (std::int64_t col = 0; col < d; ++col) {
          mean[col] /= double(k.seq);
          meanf[col] = float(mean[col]);
        }
      }
      // Rows j0 .. j0 + n in the working space: the sketched keys, or the centered keys.
      auto block = [&](std::int64_t j0, std::int64_t n) -> const float* {
        if (ks > 0) return y + j0 * ks;
        detail::leverage_block_rows<Arch>(base, k, h, j0, n, meanf, xb);
        return xb;
      };
      // G = sum_j x_j x_j^T: X_b^T X_b per block in f32, summed in double.
      std::fill(g, g + m * m, 0.0);
      for (std::int64_t j0 = 0; j0 < k.seq; j0 += nb) {
        const std::int64_t n = std::min(nb, k.seq - j0);
        const float* x = block(j0, n);
        for (std::int64_t i = 0; i < n; ++i)
          for (std::int64_t col = 0; col < m; ++col) xt[col * n + i] = x[i * m + col];
        detail::leverage_gemm<Arch>(m, m, n, xt, n, x, m, gf, m);
        for (std::int64_t i = 0; i < m * m; ++i) g[i] += gf[i];
      }
      double total = 0.0;  // NaN or inf when any key is not finite
      for (std::int64_t i = 0; i < m * m; ++i) total += g[i];
      if (!std::isfinite(total)) {
        std::fill(o, o + k.seq, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      double top = 0.0;
      for (std::int64_t i = 0; i < m; ++i) top = std::max(top, g[i * m + i]);
      // W^T [m, used] with score_j = ||x_j W^T||^2. Full rank: W = L^-1 for G + ridge I = L L^T
      // (Cholesky), when it is clearly positive definite; else (or rank r) W = the top
      // eigenvectors scaled by 1 / sqrt(lambda + ridge).
      std::int64_t used = 0;
      bool chol = false;
      if (full && top > 0) {
        for (std::int64_t i = 0; i < m * m; ++i) vec[i] = g[i];
        for (std::int64_t i = 0; i < m; ++i) vec[i * m + i] += opt.ridge;
        chol = detail::cholesky_lower(vec, m, 1e-9 * (top + opt.ridge));
        if (chol) {
          detail::invert_lower_transposed(vec, m, g);  // g = L^-T = W^T
          for (std::int64_t i = 0; i < m * m; ++i) gf[i] = float(g[i]);
          used = m;
        }
      }
      if (!chol && top > 0) {
        detail::sym_eigen_jacobi(g, vec, m);
        detail::eigen_order(g, m, order);
        const double lmax = g[std::int64_t(order[0]) * m + order[0]];
        for (std::int64_t t = 0; t < r_max; ++t) {
          const std::int64_t e = order[t];
          const double lambda = g[e * m + e];
          if (!(lambda > leverage_zero_eigenvalue * lmax)) break;  // descending: the rest too
          const double scale = 1.0 / std::sqrt(lambda + opt.ridge);
          for (std::int64_t col = 0; col < m; ++col)
            gf[col * r_max + used] = float(vec[col * m + e] * scale);
          ++used;
        }
      }
      if (used == 0) {  // all keys equal (centered) or zero
        std::fill(o, o + k.seq, 0.f);
        continue;
      }
      const std::int64_t ldw = chol ? m : r_max;
      for (std::int64_t j0 = 0; j0 < k.seq; j0 += nb) {
        const std::int64_t n = std::min(nb, k.seq - j0);
        const float* x = block(j0, n);
        detail::leverage_gemm<Arch>(n, used, m, x, m, gf, ldw, xt, used);
        for (std::int64_t i = 0; i < n; ++i) {
          float s = 0.f;
          for (std::int64_t t = 0; t < used; ++t) s += xt[i * used + t] * xt[i * used + t];
          o[j0 + i] = s;
        }
      }
    }
  });
  return status::ok;
}

}  // namespace heed
