// KeyDiff (Park et al. 2025, arXiv 2504.15364): an attention-free score of how much each key
// differs from where the keys of its head point on average.
//
// Per KV head, over its Lk keys (eps = 1e-8):
//   a       = (1 / Lk) sum_j k_j / max(||k_j||, eps)          the mean unit key ("anchor")
//   score_j = -(k_j . a) / (max(||k_j||, eps) * max(||a||, eps))
// minus the cosine similarity of key j with the anchor: keys that point where most keys point are
// redundant and go first, distinctive keys stay. kvpress's KeyDiffPress computes the same (anchor =
// mean of the L2-normalized keys, score = -cosine similarity); the paper's block-wise eviction is
// what an eviction loop with slack (evict every `slack` tokens) does. Higher = keep, in [-1, 1].
//
// K is a [seq, kv_heads, d] view of f32 / f16 / bf16 / q8 / q4 with any strides. Scores land at
// out[h * out_head_stride + j]; out_head_stride 0 means the sequence length. O(Lk * d) per KV
// head (two passes over K), vectorized over d. Scratch: key_diff_workspace_size(d), the anchor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {

inline constexpr float key_diff_eps = 1e-8f;

// Bytes of workspace for key_diff_scores on rows of head_dim values (0 if head_dim < 0).
inline std::size_t key_diff_workspace_size(std::int64_t head_dim) noexcept {
  if (head_dim < 0) return 0;
  workspace_carver c(nullptr);
  c.take<float>(std::size_t(head_dim));
  return c.bytes_needed();
}

template <class Arch = xsimd::default_arch>
status key_diff_scores(const tensor_view& k, float* out, std::int64_t out_head_stride,
                       workspace ws) noexcept {
  using A = Arch;
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  if (out == nullptr) return status::null_pointer;
  if (k.seq > detail::max_score_len) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, k.seq));
  if (ws.size < key_diff_workspace_size(k.dim)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  if (k.seq == 0) return status::ok;
  workspace_carver c(workspace_carver::align_base(ws.data));
  float* anchor = c.take<float>(std::size_t(k.dim));
  const std::int64_t d = k.dim;
  const simd::row_shape rs(d, k.quant_group());
  detail::with_typed(k, [&](auto base) {
    for (std::int64_t h = 0; h < k.heads; ++h) {
      float* o = out + h * out_head_stride;
      std::fill(anchor, anchor + d, 0.f);
      // Pass 1: the norms (kept in out) and the sum of the unit keys.
      for (std::int64_t j = 0; j < k.seq; ++j) {
        const auto row = base + k.offset(j, h);
        const float n = std::sqrt(detail::sqnorm_row<A>(row, d));
        o[j] = n;
        const B inv(1.f / std::max(n, key_diff_eps));
        std::int64_t col = 0;
        for (; col + L <= d; col += L)
          xsimd::fma(simd::load_cols<A>(row, col, rs), inv, B::load_unaligned(anchor + col))
              .store_unaligned(anchor + col);
        for (; col < d; ++col)
          anchor[col] += simd::load_col(row, col, rs) * (1.f / std::max(n, key_diff_eps));
      }
      const float mean = 1.f / float(k.seq);
      for (std::int64_t col = 0; col < d; ++col) anchor[col] *= mean;
      float an = 0.f;
      for (std::int64_t col = 0; col < d; ++col) an += anchor[col] * anchor[col];
      const float a_norm = std::max(std::sqrt(an), key_diff_eps);
      // Pass 2: minus the cosine similarity with the anchor.
      for (std::int64_t j = 0; j < k.seq; ++j) {
        const float dot = detail::dot_row<A>(anchor, base + k.offset(j, h), d);
        o[j] = -dot / (std::max(o[j], key_diff_eps) * a_norm);
      }
    }
  });
  return status::ok;
}

}  // namespace heed
