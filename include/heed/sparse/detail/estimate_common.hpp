// Shared pieces of the sparse-pattern estimators: per-head sub-views, block mean pooling,
// per-thread scratch, and the observation-window vertical / slash scores of one head.
// Private header: include heed/sparse/minference.hpp or heed/sparse/flexprefill.hpp.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "heed/core/dtype.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/scoring/observation_window.hpp"

namespace heed {

// Reusable memory of the estimators: grows on first use, then reused (no allocation when the
// shapes do not grow).
struct estimate_scratch {
  std::vector<char> window;          // observation-window workspace, per thread
  std::vector<float> vertical;       // [Hq][Lk]
  std::vector<float> slash;          // [Hq][Lk]
  std::vector<float> pooled_k;       // [Hkv][k_blocks][d]
  std::vector<float> pooled_q;       // per thread [q_blocks][d]
  std::vector<float> block_scores;   // per thread [q_blocks][k_blocks]
  std::vector<std::int32_t> keep;    // per head results
  std::vector<std::int32_t> select;  // per thread selection scratch
  std::vector<std::int64_t> count;   // per head result counts
};

namespace sparse_detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline tensor_view head_view(const tensor_view& v, std::int64_t h, std::int64_t s0 = 0,
                             std::int64_t n = -1) noexcept {
  tensor_view r = v;
  r.data = static_cast<const char*>(v.data) + std::size_t(v.offset(s0, h)) * dtype_size(v.type);
  r.heads = 1;
  r.seq = n >= 0 ? n : v.seq - s0;
  return r;
}

inline float element(const tensor_view& v, std::int64_t s, std::int64_t h,
                     std::int64_t c) noexcept {
  const std::int64_t at = v.offset(s, h) + c;
  switch (v.type) {
    case dtype::f16:
      return to_float(static_cast<const f16*>(v.data)[at]);
    case dtype::bf16:
      return to_float(static_cast<const bf16*>(v.data)[at]);
    default:
      return static_cast<const float*>(v.data)[at];
  }
}

// out[b][c] = mean over rows [s0 + b * bs, min(s0 + (b + 1) * bs, s_end)) of v[row][h][c].
inline void pool_blocks(const tensor_view& v, std::int64_t h, std::int64_t s0, std::int64_t s_end,
                        std::int64_t bs, float* out) noexcept {
  const std::int64_t d = v.dim, nb = (s_end - s0 + bs - 1) / bs;
  for (std::int64_t b = 0; b < nb; ++b) {
    float* o = out + b * d;
    std::fill(o, o + d, 0.f);
    const std::int64_t r0 = s0 + b * bs, r1 = std::min(s_end, r0 + bs);
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t c = 0; c < d; ++c) o[c] += element(v, r, h, c);
    const float inv = 1.f / float(r1 - r0);
    for (std::int64_t c = 0; c < d; ++c) o[c] *= inv;
  }
}

// In place: softmax of x[0, n) (natural units); n == 0 does nothing.
inline void softmax(float* x, std::int64_t n) noexcept {
  if (n <= 0) return;
  const float m = *std::max_element(x, x + n);
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  const float inv = static_cast<float>(1.0 / s);
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// Vertical (column sums) and slash (diagonal sums) of the last `rows` query rows of query head h
// against all keys of its KV head: observation_window_scores on one head, with the model's logit
// settings (per-head arrays [Hq]).
inline status window_scores(const tensor_view& q, const tensor_view& k, std::int64_t q_offset,
                            std::int64_t rows, const logit_settings& logits, std::int64_t h,
                            float* vertical, float* slash, char* ws, std::size_t ws_size) noexcept {
  const std::int64_t group = q.heads / k.heads;
  const tensor_view qh = head_view(q, h, q.seq - rows, rows);
  const tensor_view kh = head_view(k, h / group);
  observation_window_options opt;
  opt.logits = logits.heads_from(h);
  opt.q_offset = q_offset + q.seq - rows;
  opt.pool = pool_kind::none;
  opt.pool_kernel = 1;
  observation_window_outputs out;
  out.vertical = vertical;
  out.slash = slash;
  return observation_window_scores(qh, kh, nullptr, 0, opt, out, workspace{ws, ws_size});
}

inline std::size_t window_bytes(std::int64_t lk) noexcept {
  observation_window_options opt;
  opt.pool = pool_kind::none;
  opt.pool_kernel = 1;
  return observation_window_workspace_size(lk, opt);
}

// Shape checks shared by the estimators: f32 queries, matching dims, GQA, q_offset.
inline status check_qk(const tensor_view& q, const tensor_view& k, std::int64_t q_offset,
                       float scale) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(q));
  HEED_RETURN_IF_ERROR(validate_view(k));
  if (q.type != dtype::f32) return status::unsupported_dtype;
  if (q.dim != k.dim || k.heads < 1 || q.heads % k.heads != 0) return status::shape_mismatch;
  if (q.seq < 1 || k.seq < 1) return status::invalid_argument;
  if (q_offset < -1 || (q_offset == -1 && k.seq < q.seq)) return status::invalid_argument;
  if (!std::isfinite(scale) || scale < 0.f) return status::invalid_argument;
  return status::ok;
}

}  // namespace sparse_detail
}  // namespace heed
