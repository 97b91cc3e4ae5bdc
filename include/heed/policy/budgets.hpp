// Per-layer budget schedules (PyramidKV): the same total budget spread over the layers as an
// arithmetic sequence that shrinks with depth.
#pragma once

#include <algorithm>
#include <cstdint>

#include "heed/core/status.hpp"

namespace heed {

// PyramidKV: with m layers and an average budget k, the last layer gets k / beta and the first
// 2k - k / beta, linearly in between; the budgets sum to m * k exactly (rounding remainders go
// to the first layers) and each is at least min_budget. beta >= 1 (beta = 1 gives uniform).
inline status pyramid_budgets(int layers, std::int64_t average, double beta,
                              std::int64_t min_budget, std::int64_t* out) noexcept {
  if (out == nullptr) return status::null_pointer;
  if (layers <= 0 || average < 0 || min_budget < 0 || !(beta >= 1.0) || beta > 1e6)
    return status::invalid_argument;
  const std::int64_t total = std::int64_t(layers) * average;
  if (std::int64_t(layers) * min_budget > total) return status::invalid_argument;
  const double last = double(average) / beta, first = 2.0 * double(average) - last;
  std::int64_t sum = 0;
  for (int l = 0; l < layers; ++l) {
    const double t = layers > 1 ? double(l) / double(layers - 1) : 0.0;
    out[l] = std::max(min_budget, std::int64_t(first + (last - first) * t));
    sum += out[l];
  }
  // Move the rounding (and min_budget) difference so the total is exact.
  for (int pass = 0; sum != total && pass < 4; ++pass) {
    for (int l = 0; l < layers && sum != total; ++l) {
      if (sum < total) {
        ++out[l];
        ++sum;
      } else if (out[layers - 1 - l] > min_budget) {
        --out[layers - 1 - l];
        --sum;
      }
    }
  }
  while (sum > total) {  // large corrections: take from the largest budgets
    int big = 0;
    for (int l = 1; l < layers; ++l)
      if (out[l] > out[big]) big = l;
    --out[big];
    --sum;
  }
  while (sum < total) {
    ++out[0];
    ++sum;
  }
  return status::ok;
}

}  // namespace heed
