// Eigen-decomposition of a small symmetric matrix (d x d, d = the head dim) on caller memory, for
// the scores that need principal directions: Q-Filters' calibration (the top eigenvector of the
// queries' Gram matrix) and leverage scores (the eigenpairs of the keys' Gram matrix).
//
// Why not Eigen (a dependency of heed_headers): its eigen solvers allocate their own storage and
// may throw, and score() must not allocate. The cyclic Jacobi method below works in place on the
// caller's workspace, in double precision, and is accurate for every eigenpair (not only the
// largest, as power iteration would be, which also converges slowly when the top two eigenvalues
// are close). A sweep costs about 3 d^3 flops (6 M at d = 128, against the L d^2 = 67 M of a
// Gram matrix of 4096 keys); it converges in well under 20 sweeps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace heed {
namespace detail {

// Most Jacobi sweeps before giving up (NaN or inf input never converges; the result is then
// whatever the sweeps left, NaN included, and the callers' scores rank it lowest).
inline constexpr int jacobi_max_sweeps = 60;

// a: [n, n] row-major symmetric, overwritten (its diagonal ends as the eigenvalues); v: [n, n]
// row-major, set to the eigenvectors as columns (v[r * n + c] = component r of eigenvector c).
// Deterministic: the same input gives the same bits.
inline void sym_eigen_jacobi(double* a, double* v, std::int64_t n) noexcept {
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < n; ++c) v[r * n + c] = r == c ? 1.0 : 0.0;
  for (int sweep = 0; sweep < jacobi_max_sweeps; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (std::int64_t r = 0; r < n; ++r) {
      diag += a[r * n + r] * a[r * n + r];
      for (std::int64_t c = r + 1; c < n; ++c) off += a[r * n + c] * a[r * n + c];
    }
    // Converged: the off-diagonal part is 1e-12 of the diagonal's norm (NaN: no progress).
    if (!(off > 1e-24 * diag) || off == 0.0) return;
    for (std::int64_t p = 0; p < n; ++p)
      for (std::int64_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        const double app = a[p * n + p], aqq = a[q * n + q];
        if (std::fabs(apq) <= 1e-18 * std::sqrt(std::fabs(app * aqq))) {  // already negligible
          a[p * n + q] = a[q * n + p] = 0.0;
          continue;
        }
        // The rotation that zeroes a[p][q]: tan t = sign(theta) / (|theta| + sqrt(theta^2 + 1)).
        const double theta = (aqq - app) / (2.0 * apq);
        const double t =
            (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (std::int64_t k = 0; k < n; ++k) {  // columns p and q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (std::int64_t k = 0; k < n; ++k) {  // rows p and q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = a[q * n + p] = 0.0;
        for (std::int64_t k = 0; k < n; ++k) {
          const double vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
}

// order[0 .. n): the eigenvalue indices by eigenvalue descending (a's diagonal after
// sym_eigen_jacobi), ties to the lower index; NaN last.
inline void eigen_order(const double* a, std::int64_t n, std::int32_t* order) noexcept {
  for (std::int64_t i = 0; i < n; ++i) order[i] = std::int32_t(i);
  auto above = [a, n](std::int32_t x, std::int32_t y) {
    const double ex = a[std::int64_t(x) * n + x], ey = a[std::int64_t(y) * n + y];
    if (std::isnan(ex) != std::isnan(ey)) return std::isnan(ey);  // NaN last
    if (std::isnan(ex)) return x < y;
    return ex > ey || (ex == ey && x < y);
  };
  // Insertion sort: n is a head dim (small), and it is stable and allocation-free.
  for (std::int64_t i = 1; i < n; ++i) {
    const std::int32_t x = order[i];
    std::int64_t j = i;
    for (; j > 0 && above(x, order[j - 1]); --j) order[j] = order[j - 1];
    order[j] = x;
  }
}

}  // namespace detail
}  // namespace heed
