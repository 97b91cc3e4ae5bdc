// Attention of new queries over a ragged KV cache (compiled library: heed::heed).
//
// Every KV head of the layer has its own length; the kernel runs once per KV head with the
// query heads of its group (dense_attention over the head's [len, d] rows). With `causal`, the
// newest q.seq entries of every head are the queries' own tokens (append before attending):
// query row i sees the head's entries 0 .. len - q.seq + i. Positions inside the kernel are cache
// indices and a head may be attended in parts (pages, tiers) merged in log-sum-exp form, so of
// the logit settings only the scale, soft-capping and learned sinks ([Hq]) apply here; the others
// (window, ALiBi, per-key bias, SSMax, length scaling, sigmoid) are refused with
// status::invalid_argument. Apply RoPE before appending.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/logit_settings.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/column_accumulator.hpp"
#include "heed/simd/arch.hpp"

namespace heed {

// The logit settings (scale, softcap, sink_logits, ...) are the base, logit_settings.
struct cache_attention_params : logit_settings {
  tensor_view q;          // [Lq, Hq, d] f32, Hq a multiple of the cache's kv_heads
  mutable_tensor_view o;  // [Lq, Hq, d] f32
  bool causal = true;

  // Optional per-row outputs [h * row_head_stride + i] (row_head_stride 0 means Lq).
  float* lse = nullptr;
  float* entropy = nullptr;
  std::int64_t row_head_stride = 0;

  // Decode only (Lq == 1): fold the final probabilities into score channel `accumulate_channel`
  // of every head (H2O / A2SF / TOVA, see column_accumulator.hpp); -1 = off.
  int accumulate_channel = -1;
  column_accumulate_spec accumulate{};
  // Decode only: copy the final probabilities of every query head into
  // probs[h * probs_stride + j] for j < the head's length (probs_stride >= max length); or null.
  float* probs = nullptr;
  std::int64_t probs_stride = 0;
};

// The logit settings cache_attention applies: positions are cache indices and a head may be
// attended in parts (pages, tiers) merged in log-sum-exp form, so the settings that need
// positions, the number of keys or a normalized row are status::invalid_argument.
inline status validate_cache_logits(const logit_settings& s) noexcept {
  HEED_RETURN_IF_ERROR(validate_logits(s));
  if (s.position_dependent() || s.ssmax || s.length_scale_base > 0 || s.sigmoid)
    return status::invalid_argument;
  return status::ok;
}

status cache_attention_validate(const kv_cache& cache, int layer,
                                const cache_attention_params& p) noexcept;

std::size_t cache_attention_workspace_size(const kv_cache& cache, int layer,
                                           const cache_attention_params& p, int threads,
                                           isa i = isa::automatic) noexcept;

status cache_attention(kv_cache& cache, int layer, const cache_attention_params& p, workspace ws,
                       executor& ex = default_executor(), isa i = isa::automatic) noexcept;

}  // namespace heed
