// Top-theta calibration: per query head, the logit threshold theta that keeps about `keep` keys
// per row, from calibration rows. For each sampled row (every `row_stride`-th query that sees at
// least `keep` keys), the keep-th largest scaled logit scale * q.k over its visible keys (causal);
// theta[h] is the mean of those over the rows. Use it with the logit_threshold variant.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "heed/core/detail/no_throw.hpp"
#include "heed/sparse/detail/estimate_common.hpp"

namespace heed {

struct top_theta_options {
  std::int64_t keep = 64;        // keys per row to aim for, >= 1
  std::int64_t row_stride = 16;  // sample every row_stride-th query row, >= 1
  float scale = 0.f;             // 0 means 1 / sqrt(d)
};

// q: [Lq, Hq, d] f32, k: [Lk, Hkv, d]; theta: [Hq] out. Rows seeing fewer than `keep` keys are
// skipped; a head with no sampled row gets -inf (keeps everything).
inline status calibrate_top_theta(const tensor_view& q, const tensor_view& k, std::int64_t q_offset,
                                  const top_theta_options& opt, float* theta,
                                  executor& ex = default_executor()) noexcept {
  return detail::no_throw([&]() -> status {
    HEED_RETURN_IF_ERROR(sparse_detail::check_qk(q, k, q_offset, opt.scale));
    if (theta == nullptr) return status::null_pointer;
    if (opt.keep < 1 || opt.row_stride < 1) return status::invalid_argument;
    const std::int64_t d = q.dim, group = q.heads / k.heads;
    const std::int64_t off = q_offset >= 0 ? q_offset : k.seq - q.seq;
    const float scale = opt.scale != 0.f ? opt.scale : 1.f / std::sqrt(float(d));
    std::vector<std::vector<float>> rows(std::size_t(ex.concurrency()),
                                         std::vector<float>(std::size_t(k.seq)));
    const float* qb = static_cast<const float*>(q.data);
    ex.parallel_for(q.heads, [&](std::int64_t h, int t) {
      std::vector<float>& s = rows[std::size_t(t)];
      double sum = 0.0;
      std::int64_t n_rows = 0;
      for (std::int64_t i = 0; i < q.seq; i += opt.row_stride) {
        const std::int64_t seen = std::min(k.seq, off + i + 1);
        if (seen < opt.keep) continue;
        const float* qr = qb + q.offset(i, h);
        for (std::int64_t j = 0; j < seen; ++j) {
          float dot = 0.f;
          for (std::int64_t c = 0; c < d; ++c)
            dot += qr[c] * sparse_detail::element(k, j, h / group, c);
          s[std::size_t(j)] = dot * scale;
        }
        std::nth_element(s.begin(), s.begin() + (opt.keep - 1), s.begin() + seen,
                         [](float a, float b) { return a > b; });
        sum += s[std::size_t(opt.keep - 1)];
        ++n_rows;
      }
      theta[h] = n_rows ? static_cast<float>(sum / double(n_rows))
                        : -std::numeric_limits<float>::infinity();
    });
    return status::ok;
  });
}

}  // namespace heed
