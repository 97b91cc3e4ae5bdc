// The settings that define a model's attention logits: the scale and the built-in variants
// (sliding window, soft-capping, ALiBi, learned sinks, SSMax / length scaling, a per-key bias,
// sigmoid attention).
//
// One struct, embedded (as a base) by every path that computes attention probabilities:
// dense_params (the kernels), cache_attention_params, eviction_config (the loop hands its
// settings to the kernel and to every score it recomputes: the prefill column mass, SnapKV's
// window) and observation_window_options (the window scores, the token pruner, the sparse
// estimators). with_builtin_variant() (attention/variants/builtin.hpp) is the one function that
// turns the settings into the variant that computes them, for the kernels and the scores alike.
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/config.hpp"
#include "heed/core/status.hpp"

namespace heed {

struct logit_settings {
  float scale = 0.f;                    // logit scale; 0 means 1 / sqrt(d)
  std::int64_t window_left = -1;        // mask keys with q_pos - k_pos > window_left; -1 = off
  float softcap = 0.f;                  // s -> softcap * tanh(s / softcap); 0 = off
  const float* alibi_slopes = nullptr;  // [Hq]: s -> s - slope[h] * (q_pos - k_pos)
  const float* sink_logits = nullptr;   // [Hq]: a virtual key with this logit and a zero value
  // Row scaling by the number n of keys the causal limit lets the row see (q_pos + 1, or Lk when
  // not causal), applied to the logits before everything else:
  const float* ssmax = nullptr;        // [Hq]: Scalable-Softmax, s -> s * ssmax[h] * log(n)
  std::int64_t length_scale_base = 0;  // s -> s * max(floor, log(n) / log(base)); 0 = off
  float length_scale_floor = 1.f;      //   (entropy-invariant scaling; needs base >= 2)
  // Additive per-head per-key bias: s += key_bias[h * key_bias_len + k_pos] for keys
  // k_pos < key_bias_len <= 2^24 (ZeroTuning: key_bias_len 1, bias log(gamma) on key 0).
  const float* key_bias = nullptr;
  std::int64_t key_bias_len = 0;
  // Sigmoid attention: p = sigmoid(s + sigmoid_bias[h]) (bias 0 when null), no normalization;
  // o = sum p v. LSE and entropy are reported as 0. Not combinable with sink_logits.
  bool sigmoid = false;
  const float* sigmoid_bias = nullptr;  // [Hq]

  // The settings alone (a slice of any struct that embeds them).
  HEED_FORCE_INLINE const logit_settings& logits() const noexcept { return *this; }
  HEED_FORCE_INLINE logit_settings& logits() noexcept { return *this; }

  // The settings of query heads h0, h0 + 1, ...: every per-head array advanced by h0 heads (how a
  // caller hands a group of query heads to a kernel or a score).
  HEED_FORCE_INLINE logit_settings heads_from(std::int64_t h0) const noexcept {
    logit_settings s = *this;
    if (s.alibi_slopes) s.alibi_slopes += h0;
    if (s.sink_logits) s.sink_logits += h0;
    if (s.ssmax) s.ssmax += h0;
    if (s.key_bias) s.key_bias += h0 * s.key_bias_len;
    if (s.sigmoid_bias) s.sigmoid_bias += h0;
    return s;
  }

  // True when anything beyond the scale is set (a built-in variant is needed).
  HEED_FORCE_INLINE bool any_variant() const noexcept {
    return window_left >= 0 || softcap > 0.f || alibi_slopes != nullptr || sink_logits != nullptr ||
           ssmax != nullptr || length_scale_base > 0 || key_bias != nullptr || sigmoid;
  }
  // True when a setting depends on the keys' positions (window, ALiBi, per-key bias): such
  // settings need the original positions, which a KV cache after eviction does not keep in the
  // kernel's indices.
  HEED_FORCE_INLINE bool position_dependent() const noexcept {
    return window_left >= 0 || alibi_slopes != nullptr || key_bias != nullptr;
  }
};

HEED_ISA_BEGIN
// The checks every path makes of the settings.
inline status validate_logits(const logit_settings& s) noexcept {
  if (!(std::isfinite(s.scale)) || s.scale < 0.f) return status::invalid_argument;
  if (!(std::isfinite(s.softcap)) || s.softcap < 0.f) return status::invalid_argument;
  if (s.window_left < -1) return status::invalid_argument;
  if (s.length_scale_base < 0 || s.length_scale_base == 1 || !std::isfinite(s.length_scale_floor))
    return status::invalid_argument;
  if (s.key_bias_len > 0 && s.key_bias == nullptr) return status::null_pointer;
  if (s.key_bias_len < 0 || s.key_bias_len > (std::int64_t(1) << 24) ||
      (s.key_bias != nullptr && s.key_bias_len == 0))
    return status::invalid_argument;
  if (s.sigmoid && s.sink_logits != nullptr) return status::invalid_argument;
  return status::ok;
}
HEED_ISA_END

}  // namespace heed
