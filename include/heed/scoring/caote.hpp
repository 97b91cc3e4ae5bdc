// CAOTE: re-scores keys by the error their eviction would cause in the attention output.
//
// Evicting key j from a row with probabilities p and output o = sum_i p_i v_i renormalizes the
// rest, moving the output by p_j / (1 - p_j) * (o - v_j). So
//   c_j = p_j / (1 - p_j) * ||o - v_j||_2
// per query head (higher = keep). p_j >= 1 (a row that is all on one key) uses the finite ratio
// caote_max_ratio instead of a division by zero; products are clamped to the largest float.
//
//   caote_scores:         p [Hq][Lk] are the latest query's attention probabilities, o [1, Hq, d]
//                         its attention output; the query-head scores are reduced to KV heads.
//   caote_rescore_scores: any per-KV-head scores s [Hkv][Lk] are turned into probabilities by a
//                         softmax over j per KV head (+inf scores are excluded from the softmax
//                         and stay +inf in the output, -inf gives p = 0, NaN stays NaN), then the
//                         formula is applied with o = mean of the group's query-head outputs.
//
// V: [Lk, Hkv, d] f32 / f16 / bf16. O(Hq * Lk * d), vectorized over d.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/scoring/score_common.hpp"

namespace heed {

// Ratio p / (1 - p) used when p >= 1.
constexpr float caote_max_ratio = 1e30f;

namespace detail {
HEED_FORCE_INLINE float caote_value(float p, float dist) noexcept {
  const float ratio = p >= 1.f ? caote_max_ratio : p / (1.f - p);
  const float c = ratio * dist;
  const float big = std::numeric_limits<float>::max();
  return c > big ? big : c;
}

HEED_FORCE_INLINE status check_caote_o(const tensor_view& o, const tensor_view& v) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(o));
  if (o.type != dtype::f32) return status::unsupported_dtype;
  if (o.seq != 1 || o.dim != v.dim || o.heads % v.heads != 0) return status::shape_mismatch;
  return status::ok;
}
}  // namespace detail

// p[h * p_head_stride + j]: probabilities of query head h (p_head_stride 0 means Lk).
// o: [1, Hq, d] f32. v: [Lk, Hkv, d]. out[h * out_head_stride + j] for KV head h.
template <class Arch = xsimd::default_arch>
status caote_scores(const float* p, std::int64_t p_head_stride, const tensor_view& o,
                    const tensor_view& v, head_reduce reduce, float* out,
                    std::int64_t out_head_stride = 0) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(v, /*quantized_ok=*/true));
  HEED_RETURN_IF_ERROR(detail::check_caote_o(o, v));
  if (p == nullptr || out == nullptr) return status::null_pointer;
  if (v.seq > detail::max_score_len || !valid_head_reduce(reduce)) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(p_head_stride, v.seq));
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, v.seq));
  const std::int64_t lk = v.seq, d = v.dim, group = o.heads / v.heads;
  const float w = 1.f / float(group);
  const float* ob = static_cast<const float*>(o.data);
  detail::with_typed(v, [&](auto vb) {
    for (std::int64_t h = 0; h < o.heads; ++h) {
      const std::int64_t kvh = h / group;
      const float* oh = ob + o.offset(0, h);
      const float* ph = p + h * p_head_stride;
      float* dst = out + kvh * out_head_stride;
      const bool first = h % group == 0;
      for (std::int64_t j = 0; j < lk; ++j) {
        const float c = detail::caote_value(
            ph[j], std::sqrt(detail::sqdist_row<Arch>(oh, vb + v.offset(j, kvh), d)));
        if (reduce == head_reduce::mean) {
          dst[j] = first ? c * w : dst[j] + c * w;
        } else {
          dst[j] = first || dst[j] < c ? c : dst[j];
        }
      }
    }
  });
  return status::ok;
}

namespace detail {
struct caote_rescore_scratch {
  float* om;   // [d] mean output of the group
  float* row;  // [Lk] probabilities of one KV head
};
inline caote_rescore_scratch carve_caote_rescore(void* base, std::int64_t lk, std::int64_t d,
                                                 std::size_t* bytes) noexcept {
  workspace_carver c(base ? workspace_carver::align_base(base) : nullptr);
  caote_rescore_scratch s;
  s.om = c.take<float>(std::size_t(d));
  s.row = c.take<float>(std::size_t(lk));
  if (bytes) *bytes = c.bytes_needed();
  return s;
}
}  // namespace detail

// Bytes of scratch caote_rescore_scores() needs.
inline std::size_t caote_rescore_workspace_size(std::int64_t kv_len,
                                                std::int64_t head_dim) noexcept {
  if (kv_len < 0 || head_dim < 0) return 0;
  std::size_t bytes = 0;
  detail::carve_caote_rescore(nullptr, kv_len, head_dim, &bytes);
  return bytes;
}

// scores[h * scores_head_stride + j] for KV head h (any values; see the header comment);
// o: [1, Hq, d] f32; v: [Lk, Hkv, d]. out may equal scores (in place) with the same stride.
template <class Arch = xsimd::default_arch>
status caote_rescore_scores(const float* scores, std::int64_t scores_head_stride,
                            const tensor_view& o, const tensor_view& v, float* out,
                            std::int64_t out_head_stride, workspace ws) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(v, /*quantized_ok=*/true));
  HEED_RETURN_IF_ERROR(detail::check_caote_o(o, v));
  if (scores == nullptr || out == nullptr) return status::null_pointer;
  if (v.seq > detail::max_score_len) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(scores_head_stride, v.seq));
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, v.seq));
  const std::int64_t lk = v.seq, d = v.dim, group = o.heads / v.heads;
  if (ws.size < caote_rescore_workspace_size(lk, d)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  const auto s = detail::carve_caote_rescore(ws.data, lk, d, nullptr);
  const float inf = std::numeric_limits<float>::infinity();
  const float* ob = static_cast<const float*>(o.data);
  detail::with_typed(v, [&](auto vb) {
    for (std::int64_t h = 0; h < v.heads; ++h) {
      for (std::int64_t c = 0; c < d; ++c) s.om[c] = 0.f;
      for (std::int64_t g = 0; g < group; ++g) {
        const float* oh = ob + o.offset(0, h * group + g);
        for (std::int64_t c = 0; c < d; ++c) s.om[c] += oh[c];
      }
      for (std::int64_t c = 0; c < d; ++c) s.om[c] /= float(group);
      const float* sh = scores + h * scores_head_stride;
      for (std::int64_t j = 0; j < lk; ++j) {
        const float x = sh[j];
        s.row[j] = std::isfinite(x) ? x : -inf;  // +inf, -inf and NaN leave the softmax
      }
      detail::softmax_inplace<Arch>(s.row, lk);
      float* dst = out + h * out_head_stride;
      for (std::int64_t j = 0; j < lk; ++j) {
        const float x = sh[j];
        if (std::isnan(x) || x == inf) {
          dst[j] = x;
        } else {
          dst[j] = detail::caote_value(
              s.row[j], std::sqrt(detail::sqdist_row<Arch>(s.om, vb + v.offset(j, h), d)));
        }
      }
    }
  });
  return status::ok;
}

}  // namespace heed
