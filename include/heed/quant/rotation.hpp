// Key rotation before quantizing: the normalized Walsh-Hadamard transform of a row.
//
// H_d / sqrt(d) (d a power of two) is orthogonal and symmetric, so rotating every key and every
// query by it leaves each q.k unchanged while it spreads a few large channels over all of them:
// groups then quantize with smaller scales (4-bit keys otherwise lose most of their levels to
// outlier channels). Rotate the keys before they enter a quantized cache (kv_cache::append) and
// the queries before attending; values are not rotated. Applying it twice gives the row back (up
// to f32 rounding).
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/core/status.hpp"

namespace heed {
namespace quant {

// Whether rows of d values can be rotated: d a power of two, at least 2.
constexpr bool rotatable(std::int64_t d) noexcept { return d >= 2 && (d & (d - 1)) == 0; }

// x[r * stride .. + d) for r < rows, each row replaced by H_d x / sqrt(d) (in place, f32, the
// butterflies of the fast transform: d log2 d additions per row).
inline status hadamard_rotate(float* x, std::int64_t rows, std::int64_t d,
                              std::int64_t stride) noexcept {
  if (x == nullptr) return status::null_pointer;
  if (!rotatable(d) || rows < 0 || stride < d) return status::invalid_argument;
  const float norm = 1.f / std::sqrt(float(d));
  for (std::int64_t r = 0; r < rows; ++r) {
    float* v = x + r * stride;
    for (std::int64_t h = 1; h < d; h *= 2)
      for (std::int64_t i = 0; i < d; i += 2 * h)
        for (std::int64_t j = i; j < i + h; ++j) {
          const float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
    for (std::int64_t c = 0; c < d; ++c) v[c] *= norm;
  }
  return status::ok;
}

}  // namespace quant
}  // namespace heed
