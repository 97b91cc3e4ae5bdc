// Positive orthogonal random features for FAVOR+ (Performer), seeded and reproducible on every
// platform (own generator: splitmix64 + Box-Muller, not std::normal_distribution, whose output
// is implementation-defined).
//
// Features come in blocks of d mutually orthogonal directions (Gram-Schmidt on Gaussian
// vectors, in double); each is scaled to the norm of an independent Gaussian d-vector, so every
// w_r is marginally N(0, I_d) and the estimator stays unbiased with lower variance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "heed/core/detail/no_throw.hpp"
#include "heed/core/status.hpp"

namespace heed {

namespace detail {
struct gauss_rng {
  std::uint64_t s;
  bool has_spare = false;
  double spare = 0.0;
  std::uint64_t next() noexcept {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() noexcept { return (double(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double normal() noexcept {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = 6.283185307179586 * uniform();
    spare = r * std::sin(t);
    has_spare = true;
    return r * std::cos(t);
  }
};
}  // namespace detail

// Writes m features of dimension d, transposed: wt[c * m + r] = component c of w_r (the layout
// favor_plus takes). Allocates d * d doubles of scratch.
inline status make_favor_features(std::int64_t d, std::int64_t m, std::uint64_t seed,
                                  float* wt) noexcept {
  if (wt == nullptr) return status::null_pointer;
  if (d < 1 || m < 1 || d > (1 << 12) || m > (1 << 16)) return status::invalid_argument;
  return detail::no_throw([&]() -> status {
    detail::gauss_rng rng{seed};
    std::vector<double> block(static_cast<std::size_t>(d * d));
    for (std::int64_t r0 = 0; r0 < m; r0 += d) {
      const std::int64_t nb = std::min(d, m - r0);
      for (std::int64_t i = 0; i < nb; ++i) {
        double* row = &block[static_cast<std::size_t>(i * d)];
        double norm = 0.0;
        while (norm < 1e-6) {  // Gram-Schmidt against the previous rows (twice, for accuracy)
          for (std::int64_t c = 0; c < d; ++c) row[c] = rng.normal();
          for (int pass = 0; pass < 2; ++pass)
            for (std::int64_t p = 0; p < i; ++p) {
              const double* prev = &block[static_cast<std::size_t>(p * d)];
              double dot = 0.0;
              for (std::int64_t c = 0; c < d; ++c) dot += row[c] * prev[c];
              for (std::int64_t c = 0; c < d; ++c) row[c] -= dot * prev[c];
            }
          norm = 0.0;
          for (std::int64_t c = 0; c < d; ++c) norm += row[c] * row[c];
          norm = std::sqrt(norm);
        }
        for (std::int64_t c = 0; c < d; ++c) row[c] /= norm;
      }
      for (std::int64_t i = 0; i < nb; ++i) {
        double len = 0.0;  // chi(d): the norm of a fresh Gaussian vector
        for (std::int64_t c = 0; c < d; ++c) {
          const double g = rng.normal();
          len += g * g;
        }
        len = std::sqrt(len);
        for (std::int64_t c = 0; c < d; ++c)
          wt[c * m + r0 + i] = static_cast<float>(block[static_cast<std::size_t>(i * d + c)] * len);
      }
    }
    return status::ok;
  });
}

}  // namespace heed
