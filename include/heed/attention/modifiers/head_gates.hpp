// Per-head output gates and head masks (head ablation), applied to the attention output.
//
//   apply_head_gates: o[:, h, :] *= gate[h]   (a gate of exactly 0 writes zeros, so an ablated
//                                              head's output may hold anything, even NaN)
//   apply_head_mask:  o[:, h, :] = 0 where keep[h] == 0; other heads untouched
//
// An engine that knows the mask before running attention can skip the masked heads altogether:
// heads_to_skip() lists them, kv_heads_to_skip() lists the KV heads whose every query head is
// masked (their K/V need not be read or even kept). Run the kernel on the remaining heads (views
// of the kept heads only, or the full views and discard), then apply_head_mask() zeroes the
// skipped heads' rows of O.
//
// Cost: one pass over O (Lq * Hq * d multiplies or stores). No allocation, noexcept, serial.
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {

namespace detail {
namespace mod {
inline status validate_output_view(const mutable_tensor_view& o) noexcept {
  if (o.data == nullptr) return status::null_pointer;
  HEED_RETURN_IF_ERROR(validate_view(o));
  if (o.type != dtype::f32) return status::unsupported_dtype;
  return status::ok;
}
}  // namespace mod
}  // namespace detail

// o: [Lq, Hq, d] f32; gates: [Hq], finite.
inline status apply_head_gates(const mutable_tensor_view& o, const float* gates) noexcept {
  HEED_RETURN_IF_ERROR(detail::mod::validate_output_view(o));
  if (gates == nullptr) return status::null_pointer;
  for (std::int64_t h = 0; h < o.heads; ++h)
    if (!std::isfinite(gates[h])) return status::invalid_argument;
  float* base = static_cast<float*>(o.data);
  for (std::int64_t i = 0; i < o.seq; ++i)
    for (std::int64_t h = 0; h < o.heads; ++h) {
      float* row = base + o.offset(i, h);
      const float g = gates[h];
      if (g == 1.f) continue;
      if (g == 0.f) {
        for (std::int64_t c = 0; c < o.dim; ++c) row[c] = 0.f;
      } else {
        for (std::int64_t c = 0; c < o.dim; ++c) row[c] *= g;
      }
    }
  return status::ok;
}

// o: [Lq, Hq, d] f32; keep: [Hq], nonzero = keep the head.
inline status apply_head_mask(const mutable_tensor_view& o, const std::uint8_t* keep) noexcept {
  HEED_RETURN_IF_ERROR(detail::mod::validate_output_view(o));
  if (keep == nullptr) return status::null_pointer;
  float* base = static_cast<float*>(o.data);
  for (std::int64_t i = 0; i < o.seq; ++i)
    for (std::int64_t h = 0; h < o.heads; ++h) {
      if (keep[h] != 0) continue;
      float* row = base + o.offset(i, h);
      for (std::int64_t c = 0; c < o.dim; ++c) row[c] = 0.f;
    }
  return status::ok;
}

// Writes the heads h in [0, heads) with keep[h] == 0, ascending, to out[0 .. *count). out may be
// null when capacity is 0 (to ask for the count): *count is always set, and workspace_too_small
// comes back when capacity < *count (out then holds the first `capacity` heads).
inline status heads_to_skip(const std::uint8_t* keep, std::int64_t heads, std::int32_t* out,
                            std::int64_t capacity, std::int64_t* count) noexcept {
  if (keep == nullptr || count == nullptr || (out == nullptr && capacity > 0))
    return status::null_pointer;
  if (heads < 1 || capacity < 0) return status::invalid_argument;
  std::int64_t n = 0;
  for (std::int64_t h = 0; h < heads; ++h) {
    if (keep[h] != 0) continue;
    if (n < capacity) out[n] = static_cast<std::int32_t>(h);
    ++n;
  }
  *count = n;
  return n <= capacity ? status::ok : status::workspace_too_small;
}

// Writes the KV heads whose query heads (GQA: query head h uses KV head h / (q_heads / kv_heads))
// are all masked, ascending, to out[0 .. *count). Same conventions as heads_to_skip.
inline status kv_heads_to_skip(const std::uint8_t* keep, std::int64_t q_heads,
                               std::int64_t kv_heads, std::int32_t* out, std::int64_t capacity,
                               std::int64_t* count) noexcept {
  if (keep == nullptr || count == nullptr || (out == nullptr && capacity > 0))
    return status::null_pointer;
  if (q_heads < 1 || kv_heads < 1 || capacity < 0) return status::invalid_argument;
  if (q_heads % kv_heads != 0) return status::shape_mismatch;
  const std::int64_t group = q_heads / kv_heads;
  std::int64_t n = 0;
  for (std::int64_t g = 0; g < kv_heads; ++g) {
    bool all_masked = true;
    for (std::int64_t h = g * group; h < (g + 1) * group; ++h) all_masked = all_masked && !keep[h];
    if (!all_masked) continue;
    if (n < capacity) out[n] = static_cast<std::int32_t>(g);
    ++n;
  }
  *count = n;
  return n <= capacity ? status::ok : status::workspace_too_small;
}

// The mask of a gate vector: keep[h] = (gates[h] != 0), so gated-off heads can be skipped too.
inline status head_mask_from_gates(const float* gates, std::int64_t heads,
                                   std::uint8_t* keep) noexcept {
  if (gates == nullptr || keep == nullptr) return status::null_pointer;
  if (heads < 1) return status::invalid_argument;
  for (std::int64_t h = 0; h < heads; ++h) keep[h] = gates[h] != 0.f ? 1 : 0;
  return status::ok;
}

}  // namespace heed
