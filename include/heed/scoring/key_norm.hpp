// Attention-free norm scores (per KV head, higher = keep).
//
//   key_norm_scores:      score_j = -||k_j||_2        (KNorm: low key norm = important)
//   value_norm_scores:    score_j =  ||v_j||_2
//   weight_by_value_norm: score_j *= ||v_j||_2, in place (value-aware variant of any score)
//
// K / V are [seq, kv_heads, d] views of f32 / f16 / bf16 with any strides. Scores land at
// out[h * out_head_stride + j]; out_head_stride 0 means the sequence length. O(L * d),
// vectorized over d; no scratch.
#pragma once

#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/scoring/detail/score_kernels.hpp"

namespace heed {

namespace detail {
// mode 0: out = sign * ||x||; mode 1: out *= ||x||.
template <class A>
status row_norm_scores(const tensor_view& x, float* out, std::int64_t stride, float sign,
                       bool multiply) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(x, /*quantized_ok=*/true));
  if (out == nullptr) return status::null_pointer;
  if (x.seq > max_score_len) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(resolve_stride(stride, x.seq));
  with_typed(x, [&](auto base) {
    for (std::int64_t h = 0; h < x.heads; ++h) {
      float* o = out + h * stride;
      for (std::int64_t j = 0; j < x.seq; ++j) {
        const float n = std::sqrt(sqnorm_row<A>(base + x.offset(j, h), x.dim));
        o[j] = multiply ? o[j] * n : sign * n;
      }
    }
  });
  return status::ok;
}
}  // namespace detail

// score_j = -||k_j||_2 per KV head.
template <class Arch = xsimd::default_arch>
status key_norm_scores(const tensor_view& k, float* out,
                       std::int64_t out_head_stride = 0) noexcept {
  return detail::row_norm_scores<Arch>(k, out, out_head_stride, -1.f, false);
}

// score_j = ||v_j||_2 per KV head.
template <class Arch = xsimd::default_arch>
status value_norm_scores(const tensor_view& v, float* out,
                         std::int64_t out_head_stride = 0) noexcept {
  return detail::row_norm_scores<Arch>(v, out, out_head_stride, 1.f, false);
}

// scores[h * stride + j] *= ||v_j||_2 for every KV head h and key j < v.seq.
template <class Arch = xsimd::default_arch>
status weight_by_value_norm(const tensor_view& v, float* scores,
                            std::int64_t scores_head_stride = 0) noexcept {
  return detail::row_norm_scores<Arch>(v, scores, scores_head_stride, 1.f, true);
}

}  // namespace heed
