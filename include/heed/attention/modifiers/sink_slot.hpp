// A virtual sink key/value slot merged into the output of the dense kernel, exactly.
//
// The slot is one learned key k_s and value v_s prepended to every row's keys (a "register" or
// learned-KV-prefix token). It is visible to every row whatever the causal limit or window, and
// its logit is
//
//   s = scale * q . k_s + bias          (scale = p.logit_scale(); no ALiBi or soft-capping)
//
// With the row's LSE from the kernel (natural log) the merge is the usual two-part softmax merge:
//
//   lse' = logaddexp(lse, s)
//   o'   = o * exp(lse - lse') + v_s * exp(s - lse')
//   H'   = a H - a log a - b log b,  a = exp(lse - lse'), b = exp(s - lse')   (entropy, if asked)
//
// so running it after the kernel equals attention over [slot, keys]. A row the kernel left empty
// (LSE -inf) becomes v_s with LSE s; a slot whose logit is -inf (bias -inf disables a head's slot)
// leaves the row bit for bit as it was. The kernel's own learned sinks (sink_logits) are part of
// its LSE and stay in the merged distribution.
//
// Heads: the slot has `heads` rows, any divisor of Hq; query head h uses slot row
// h / (Hq / heads). heads == Hkv shares a slot across a GQA group (a learned K/V per kv head, as
// K/V projections are); heads == Hq gives each query head its own.
//
// Cost: one dot product and one axpy of length d per (row, head); O is read and written once.
// No allocation, noexcept, serial.
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/attention/modifiers/detail/modifier_common.hpp"
#include "heed/attention/params.hpp"
#include "heed/core/status.hpp"

namespace heed {

struct sink_slot {
  const float* key = nullptr;         // [heads][d] contiguous; null = a zero key (logit = bias)
  const float* value = nullptr;       // [heads][d] contiguous; required
  const float* logit_bias = nullptr;  // [heads], added to the logit; null = 0, -inf = no slot
  std::int64_t heads = 0;             // a divisor of Hq (typically Hkv or Hq)
};

// Checks p (as for the kernel), that the LSE output exists and that the slot fits p.
inline status sink_slot_can_implement(const dense_params& p, const sink_slot& s) noexcept {
  HEED_RETURN_IF_ERROR(validate(p));
  if (p.lse == nullptr || s.value == nullptr) return status::null_pointer;
  if (s.heads < 1 || p.q_heads() % s.heads != 0) return status::shape_mismatch;
  if (p.sigmoid) return status::invalid_argument;  // no softmax LSE to merge into
  if (s.logit_bias != nullptr)
    for (std::int64_t h = 0; h < s.heads; ++h)
      if (std::isnan(s.logit_bias[h]) || s.logit_bias[h] == -detail::mod::neg_inf())
        return status::invalid_argument;  // NaN or +inf
  return status::ok;
}

// Merges the slot into p.o, p.lse (and p.entropy when set) in place. Call it after the dense
// kernel ran with p (same views, same LSE buffer).
inline status merge_sink_slot(const dense_params& p, const sink_slot& s) noexcept {
  HEED_RETURN_IF_ERROR(sink_slot_can_implement(p, s));
  const std::int64_t lq = p.q_len(), hq = p.q_heads(), d = p.head_dim();
  const std::int64_t group = hq / s.heads, rs = p.row_stride();
  const float scale = p.logit_scale();
  const float* qb = static_cast<const float*>(p.q.data);
  float* ob = static_cast<float*>(p.o.data);
  for (std::int64_t h = 0; h < hq; ++h) {
    const std::int64_t sh = h / group;
    const float* ks = s.key != nullptr ? s.key + sh * d : nullptr;
    const float* vs = s.value + sh * d;
    const float bias = s.logit_bias != nullptr ? s.logit_bias[sh] : 0.f;
    if (bias == detail::mod::neg_inf()) continue;  // no slot for this head
    for (std::int64_t i = 0; i < lq; ++i) {
      const float* q = qb + p.q.offset(i, h);
      const float sl = (ks != nullptr ? scale * detail::mod::dot(q, ks, d) : 0.f) + bias;
      if (sl == detail::mod::neg_inf()) continue;
      float& lse_ref = p.lse[h * rs + i];
      const double lse = lse_ref, sd = sl;
      double lse_new, a, b;
      if (std::isinf(lse) && lse < 0.0) {  // empty row: the slot takes everything
        lse_new = sd;
        a = 0.0;
        b = 1.0;
      } else {
        const double m = lse > sd ? lse : sd;
        lse_new = m + std::log1p(std::exp(-std::fabs(lse - sd)));
        a = std::exp(lse - lse_new);
        b = std::exp(sd - lse_new);
      }
      float* o = ob + p.o.offset(i, h);
      const float af = static_cast<float>(a), bf = static_cast<float>(b);
      for (std::int64_t c = 0; c < d; ++c) o[c] = af * o[c] + bf * vs[c];
      lse_ref = static_cast<float>(lse_new);
      if (p.entropy != nullptr) {
        float& ent = p.entropy[h * rs + i];
        const double al = a > 0.0 ? a * std::log(a) : 0.0;
        const double bl = b > 0.0 ? b * std::log(b) : 0.0;
        ent = static_cast<float>(a * static_cast<double>(ent) - al - bl);
      }
    }
  }
  return status::ok;
}

}  // namespace heed
