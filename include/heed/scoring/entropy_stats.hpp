// Statistics of attention entropy rows (the row observer's output, nats).
//
//   entropy_stats:       per query head mean / min / max over the Lq rows of an [Hq][Lq] buffer.
//   nats_to_bits:        H / ln 2 (scalar and in-place over a buffer).
//   entropy_accumulator: the same statistics gathered over layers into caller-provided
//                        [layers][Hq] arrays; several add() calls for one layer (chunked prefill)
//                        merge, the mean weighted by the number of rows.
// Sums are kept in double. NaN rows propagate into the mean (min / max ignore them).
#pragma once

#include <cstdint>
#include <limits>

#include "heed/core/status.hpp"

namespace heed {

constexpr double ln2_d = 0.693147180559945309417;

constexpr float nats_to_bits(float nats) noexcept {
  return static_cast<float>(static_cast<double>(nats) / ln2_d);
}

// x[i] = x[i] / ln 2 for i < n.
inline status nats_to_bits(float* x, std::int64_t n) noexcept {
  if (n < 0) return status::invalid_argument;
  if (n > 0 && x == nullptr) return status::null_pointer;
  for (std::int64_t i = 0; i < n; ++i) x[i] = nats_to_bits(x[i]);
  return status::ok;
}

namespace detail {
// Sum (double), min and max of one head's lq entropy rows.
struct entropy_row_stats {
  double sum = 0.0;
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
};
inline entropy_row_stats entropy_row(const float* e, std::int64_t lq) noexcept {
  entropy_row_stats r;
  for (std::int64_t i = 0; i < lq; ++i) {
    r.sum += e[i];
    r.lo = e[i] < r.lo ? e[i] : r.lo;
    r.hi = e[i] > r.hi ? e[i] : r.hi;
  }
  return r;
}
// Checks the buffer and resolves head_stride 0 to lq.
inline status check_entropy_rows(const float* entropy, std::int64_t lq,
                                 std::int64_t* head_stride) noexcept {
  if (entropy == nullptr) return status::null_pointer;
  if (*head_stride < 0) return status::invalid_stride;
  if (*head_stride == 0) *head_stride = lq;
  if (*head_stride < lq) return status::invalid_stride;
  return status::ok;
}
}  // namespace detail

// entropy[h * head_stride + i] for query head h < hq, row i < lq (head_stride 0 means lq).
// Writes mean[h], min[h], max[h]; any of the three may be null (skipped).
inline status entropy_stats(const float* entropy, std::int64_t hq, std::int64_t lq,
                            std::int64_t head_stride, float* mean, float* min,
                            float* max) noexcept {
  if (hq < 1 || lq < 1) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::check_entropy_rows(entropy, lq, &head_stride));
  for (std::int64_t h = 0; h < hq; ++h) {
    const detail::entropy_row_stats r = detail::entropy_row(entropy + h * head_stride, lq);
    if (mean) mean[h] = static_cast<float>(r.sum / static_cast<double>(lq));
    if (min) min[h] = r.lo;
    if (max) max[h] = r.hi;
  }
  return status::ok;
}

// Per (layer, query head) statistics in caller-provided arrays indexed [layer * hq + h].
// rows[layer] counts the rows seen so far; call reset() (or zero rows) before the first add().
struct entropy_accumulator {
  std::int64_t layers = 0;
  std::int64_t hq = 0;
  float* mean = nullptr;         // [layers][hq], required
  float* min = nullptr;          // [layers][hq], optional
  float* max = nullptr;          // [layers][hq], optional
  std::int64_t* rows = nullptr;  // [layers], required

  status validate() const noexcept {
    if (layers < 1 || hq < 1) return status::invalid_argument;
    if (mean == nullptr || rows == nullptr) return status::null_pointer;
    return status::ok;
  }

  status reset() noexcept {
    HEED_RETURN_IF_ERROR(validate());
    const float inf = std::numeric_limits<float>::infinity();
    for (std::int64_t l = 0; l < layers; ++l) rows[l] = 0;
    for (std::int64_t i = 0; i < layers * hq; ++i) {
      mean[i] = 0.f;
      if (min) min[i] = inf;
      if (max) max[i] = -inf;
    }
    return status::ok;
  }

  // Folds the [hq][lq] entropy rows of one layer (head_stride 0 means lq) into its statistics.
  status add(std::int64_t layer, const float* entropy, std::int64_t lq,
             std::int64_t head_stride = 0) noexcept {
    HEED_RETURN_IF_ERROR(validate());
    if (layer < 0 || layer >= layers || lq < 1) return status::invalid_argument;
    HEED_RETURN_IF_ERROR(detail::check_entropy_rows(entropy, lq, &head_stride));
    if (rows[layer] < 0) return status::invalid_argument;
    const double n_old = static_cast<double>(rows[layer]);
    const double n_new = n_old + static_cast<double>(lq);
    for (std::int64_t h = 0; h < hq; ++h) {
      const detail::entropy_row_stats r = detail::entropy_row(entropy + h * head_stride, lq);
      const double sum = r.sum;
      const float lo = r.lo, hi = r.hi;
      const std::int64_t at = layer * hq + h;
      const double prev = rows[layer] > 0 ? static_cast<double>(mean[at]) * n_old : 0.0;
      mean[at] = static_cast<float>((prev + sum) / n_new);
      if (min) min[at] = rows[layer] > 0 && min[at] < lo ? min[at] : lo;
      if (max) max[at] = rows[layer] > 0 && max[at] > hi ? max[at] : hi;
    }
    rows[layer] += lq;
    return status::ok;
  }
};

}  // namespace heed
