// Token pruning for prefill: drop whole tokens from the sequence after a chosen layer.
//
// FastV: after layer K, rank the tokens by the attention they receive from the last query (or the
// last W queries), averaged over every query head, and keep the top share, optionally only among a
// token range (e.g. the image tokens; tokens outside the range are always kept). LazyLLM: the
// same scores with a keep ratio that shrinks layer by layer (lazyllm_schedule). The result is the
// kept token indices, ascending, plus the scores, so an engine can gather its hidden states.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/policy/select.hpp"
#include "heed/scoring/observation_window.hpp"

namespace heed {

struct token_prune_options {
  double drop_ratio = 0.5;       // share of the prunable tokens to drop, in [0, 1)
  std::int64_t range_begin = 0;  // only tokens in [range_begin, range_end) may be dropped
  std::int64_t range_end = -1;   // -1 = the sequence length
};

// Bytes of scratch token_attention_scores() needs for L tokens and Hq query heads.
inline std::size_t token_attention_workspace_size(std::int64_t L, std::int64_t q_heads) noexcept {
  if (L < 0 || q_heads < 0) return 0;
  observation_window_options o;
  o.pool = pool_kind::none;
  o.pool_kernel = 1;
  return align_up(std::size_t(L) * std::size_t(q_heads) * sizeof(float)) +
         observation_window_workspace_size(L, o) + 2 * workspace_alignment;
}

// FastV scores: out[j] = mean over the query heads and the W rows of q ([W, Hq, d], the last W
// queries at positions L - W .. L - 1) of the attention p_ij they pay to token j of k ([L, Hkv,
// d]). lse: the rows' LSE from the main pass ([Hq][lse_stride]) or null to recompute. logits:
// the model's logit settings (scale, softcap, ALiBi, window, sinks, ...; [Hq] arrays), as the main
// pass had them.
inline status token_attention_scores(const tensor_view& q, const tensor_view& k, const float* lse,
                                     std::int64_t lse_stride, const logit_settings& logits,
                                     float* out, workspace ws) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(q));
  HEED_RETURN_IF_ERROR(validate_view(k));
  if (out == nullptr) return status::null_pointer;
  if (q.heads % k.heads != 0) return status::shape_mismatch;
  const std::int64_t L = k.seq, hq = q.heads, w = q.seq;
  if (ws.size < token_attention_workspace_size(L, hq)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  workspace_carver carve(workspace_carver::align_base(ws.data));
  float* vertical = carve.take<float>(std::size_t(L) * std::size_t(hq));
  observation_window_options o;
  o.logits = logits;
  o.pool = pool_kind::none;
  o.pool_kernel = 1;
  const std::size_t wb = observation_window_workspace_size(L, o);
  void* wsw = carve.take<unsigned char>(wb);
  observation_window_outputs outs;
  outs.vertical = vertical;
  outs.vertical_head_stride = L;
  HEED_RETURN_IF_ERROR(observation_window_scores(q, k, lse, lse_stride, o, outs, {wsw, wb}));
  const float inv = 1.f / float(hq * w);
  for (std::int64_t j = 0; j < L; ++j) out[j] = 0.f;
  for (std::int64_t h = 0; h < hq; ++h)
    for (std::int64_t j = 0; j < L; ++j) out[j] += vertical[h * L + j] * inv;
  return status::ok;
}

// Elements of int32 scratch prune_tokens() needs for L tokens.
inline std::int64_t prune_tokens_scratch_size(std::int64_t L) noexcept { return L > 0 ? 2 * L : 0; }

// Keeps every token outside the range and, inside it, the best-ranked (ranks_above: higher score,
// NaN lowest, ties to the later token) R - floor(R * drop_ratio) of its R tokens. keep has room
// for L indices; they come out ascending.
inline status prune_tokens(const float* scores, std::int64_t L, const token_prune_options& opt,
                           std::int32_t* keep, std::int64_t* n_keep,
                           std::int32_t* scratch) noexcept {
  if (n_keep == nullptr) return status::null_pointer;
  if (L < 0 || L > (std::int64_t(1) << 31) - 1) return status::invalid_argument;
  if (!(opt.drop_ratio >= 0.0 && opt.drop_ratio < 1.0)) return status::invalid_argument;
  const std::int64_t end = opt.range_end < 0 ? L : opt.range_end;
  if (opt.range_begin < 0 || opt.range_end < -1 || end > L || opt.range_begin > end)
    return status::invalid_argument;
  if (L > 0 && (scores == nullptr || keep == nullptr || scratch == nullptr))
    return status::null_pointer;
  const std::int64_t r = end - opt.range_begin;
  const std::int64_t keep_in =
      r - static_cast<std::int64_t>(std::floor(double(r) * opt.drop_ratio));
  std::int32_t* in_range = scratch + L;  // kept indices relative to range_begin
  std::int64_t n_in = 0;
  HEED_RETURN_IF_ERROR(
      select_top_k(scores + opt.range_begin, r, keep_in, protect_spec{}, in_range, &n_in, scratch));
  std::int64_t n = 0;
  for (std::int64_t j = 0; j < opt.range_begin; ++j) keep[n++] = static_cast<std::int32_t>(j);
  for (std::int64_t i = 0; i < n_in; ++i)
    keep[n++] = static_cast<std::int32_t>(opt.range_begin + in_range[i]);
  for (std::int64_t j = end; j < L; ++j) keep[n++] = static_cast<std::int32_t>(j);
  *n_keep = n;
  return status::ok;
}

// LazyLLM-style progressive schedule: ratio[l] is the share of the original tokens still present
// after layer l: 1 before start_layer, then falling linearly to final_keep at the last layer.
inline status lazyllm_schedule(int layers, int start_layer, double final_keep,
                               double* ratio) noexcept {
  if (ratio == nullptr) return status::null_pointer;
  if (layers <= 0 || start_layer < 0 || start_layer >= layers) return status::invalid_argument;
  if (!(final_keep > 0.0 && final_keep <= 1.0)) return status::invalid_argument;
  const int span = layers - start_layer;
  for (int l = 0; l < layers; ++l) {
    if (l < start_layer) {
      ratio[l] = 1.0;
    } else {
      const double t = double(l - start_layer + 1) / double(span);
      ratio[l] = 1.0 - (1.0 - final_keep) * t;
    }
  }
  return status::ok;
}

}  // namespace heed
