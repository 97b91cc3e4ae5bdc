// Interpolation of the attention matrix toward the identity, fused into the output:
//
//   A' = (1 - alpha) A + alpha I   =>   o'_i = (1 - alpha) o_i + alpha v_{q_offset + i}
//
// where v_{q_offset + i} is the value at the query's own key position (its KV head under GQA).
// "Identity" is the diagonal at the query's position among the keys, so every query row i needs
// a key at q_offset + i: the call fails (invalid_argument) when p.offset() < 0 or
// p.offset() + Lq > Lk. alpha is one value, or one per query head; each in [0, 1] (0 leaves the
// head bit for bit unchanged, 1 replaces its output with its own values). The row's LSE and
// entropy outputs are left as they were; masks and variants of the kernel do not matter (the
// mix acts on the finished output), and an empty row (o = 0) becomes alpha v_i.
//
// Cost: one pass over O and the Lq diagonal rows of V. No allocation, noexcept, serial.
#pragma once

#include <cstdint>

#include "heed/attention/modifiers/detail/modifier_common.hpp"
#include "heed/attention/params.hpp"
#include "heed/core/status.hpp"

namespace heed {

namespace detail {
namespace mod {

inline status identity_mix_check(const dense_params& p, const float* alpha,
                                 bool per_head) noexcept {
  HEED_RETURN_IF_ERROR(validate(p));
  if (alpha == nullptr) return status::null_pointer;
  const std::int64_t n = per_head ? p.q_heads() : 1;
  for (std::int64_t h = 0; h < n; ++h)
    if (!(alpha[h] >= 0.f && alpha[h] <= 1.f)) return status::invalid_argument;  // NaN too
  if (p.offset() < 0 || p.offset() + p.q_len() > p.kv_len()) return status::invalid_argument;
  return status::ok;
}

inline void identity_mix_run(const dense_params& p, const float* alpha, bool per_head) noexcept {
  const std::int64_t lq = p.q_len(), hq = p.q_heads(), d = p.head_dim();
  const std::int64_t group = hq / p.kv_heads(), off = p.offset();
  float* ob = static_cast<float*>(p.o.data);
  detail::with_kv_type(p.v.type, [&](auto kv) {
    using T = decltype(kv);
    for (std::int64_t i = 0; i < lq; ++i)
      for (std::int64_t h = 0; h < hq; ++h) {
        const float a = alpha[per_head ? h : 0];
        if (a == 0.f) continue;
        float* o = ob + p.o.offset(i, h);
        const T* v = row_ptr<T>(p.v, off + i, h / group);
        const float keep = 1.f - a;
        for (std::int64_t c = 0; c < d; ++c) o[c] = keep * o[c] + a * to_float(v[c]);
      }
  });
}

}  // namespace mod
}  // namespace detail

// One alpha for every head. Call after the dense kernel ran with p (O holds its output).
inline status identity_mix(const dense_params& p, float alpha) noexcept {
  HEED_RETURN_IF_ERROR(detail::mod::identity_mix_check(p, &alpha, false));
  detail::mod::identity_mix_run(p, &alpha, false);
  return status::ok;
}

// alpha: [Hq], one per query head.
inline status identity_mix_per_head(const dense_params& p, const float* alpha) noexcept {
  HEED_RETURN_IF_ERROR(detail::mod::identity_mix_check(p, alpha, true));
  detail::mod::identity_mix_run(p, alpha, true);
  return status::ok;
}

}  // namespace heed
