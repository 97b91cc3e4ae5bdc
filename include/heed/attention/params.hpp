// Parameters of the dense attention kernels and their validation.
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/core/kv_page.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {

// Called by the compiled kernel in decode (Lq == 1) with the final probabilities of query head
// q_head over keys [key_begin, key_begin + n). Calls for different heads or key ranges may come
// from different threads at once; each (head, key) is reported exactly once per call of the kernel.
using prob_tap_fn = void (*)(void* user, int q_head, std::int64_t key_begin, const float* p,
                             std::int64_t n);

struct dense_params {
  tensor_view q;               // [Lq, Hq, d], f32
  tensor_view k;               // [Lk, Hkv, d], f32 / f16 / bf16 / q8 / q4
  tensor_view v;               // [Lk, Hkv, d], same dtype as k
  mutable_tensor_view o;       // [Lq, Hq, d], f32
  float scale = 0.f;           // logit scale; 0 means 1 / sqrt(d)
  bool causal = true;          // query i (position q_offset + i) sees keys 0 .. q_offset + i
  std::int64_t q_offset = -1;  // position of query row 0 among the keys; -1 means Lk - Lq

  // Optional per-row outputs, natural log units, indexed [h * row_head_stride + i].
  float* lse = nullptr;
  float* entropy = nullptr;          // entropy of the attention row in nats
  std::int64_t row_head_stride = 0;  // 0 means Lq

  // Built-in variants (compiled library; header users may pass their own variant type).
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

  // Paged K/V (decode only, Lq == 1): the keys are the rows of pages[0 .. n_pages) in order,
  // page i holding keys [begin, begin + len) (begins consecutive from 0, lengths summing to
  // k.seq), each laid out with k's and v's strides from its own pointers. k.data / v.data must
  // still be set (to page 0's). Every page is one split-KV partition of the decode kernel.
  const kv_page* pages = nullptr;
  std::int64_t n_pages = 0;

  // Decode-time probability tap (compiled library; header users pass an observer).
  prob_tap_fn prob_tap = nullptr;
  void* prob_tap_user = nullptr;

  std::int64_t q_len() const noexcept { return q.seq; }
  std::int64_t kv_len() const noexcept { return k.seq; }
  std::int64_t q_heads() const noexcept { return q.heads; }
  std::int64_t kv_heads() const noexcept { return k.heads; }
  std::int64_t head_dim() const noexcept { return q.dim; }
  std::int64_t offset() const noexcept { return q_offset >= 0 ? q_offset : k.seq - q.seq; }
  float logit_scale() const noexcept {
    return scale != 0.f ? scale : 1.f / std::sqrt(static_cast<float>(q.dim));
  }
  std::int64_t row_stride() const noexcept { return row_head_stride > 0 ? row_head_stride : q.seq; }
};

// Checks everything the kernels rely on. Any head_dim >= 1 is accepted (unlisted sizes use the
// generic path). Quantized K/V (q8, q4) only where the caller's kernel reads them
// (quantized_kv: the dense and sparse kernels, see validate_dense), K and V with the same group;
// every other kernel refuses them with status::unsupported_dtype.
HEED_FORCE_INLINE status validate(const dense_params& p, bool quantized_kv = false) noexcept {
  if (p.q.data == nullptr || p.k.data == nullptr || p.v.data == nullptr || p.o.data == nullptr)
    return status::null_pointer;
  HEED_RETURN_IF_ERROR(validate_view(p.q));
  HEED_RETURN_IF_ERROR(validate_view(p.k, quantized_kv));
  HEED_RETURN_IF_ERROR(validate_view(p.v, quantized_kv));
  HEED_RETURN_IF_ERROR(validate_view(p.o));
  if (p.q.type != dtype::f32 || p.o.type != dtype::f32) return status::unsupported_dtype;
  if (p.k.type != p.v.type) return status::unsupported_dtype;
  if (is_quantized(p.k.type) && p.v.quant_group() != p.k.quant_group())
    return status::unsupported_dtype;
  const std::int64_t d = p.q.dim;
  if (p.k.dim != d || p.v.dim != d || p.o.dim != d) return status::shape_mismatch;
  if (p.o.seq != p.q.seq || p.o.heads != p.q.heads) return status::shape_mismatch;
  if (p.v.seq != p.k.seq || p.v.heads != p.k.heads) return status::shape_mismatch;
  if (p.q.heads % p.k.heads != 0) return status::shape_mismatch;
  if (p.k.seq > (std::int64_t(1) << 30) || p.q.seq > (std::int64_t(1) << 30))
    return status::invalid_argument;
  if (p.q_offset < -1) return status::invalid_argument;
  if (p.q_offset > (std::int64_t(1) << 30)) return status::invalid_argument;
  if (!(std::isfinite(p.scale)) || p.scale < 0.f) return status::invalid_argument;
  if (!(std::isfinite(p.softcap)) || p.softcap < 0.f) return status::invalid_argument;
  if (p.window_left < -1) return status::invalid_argument;
  if (p.length_scale_base < 0 || p.length_scale_base == 1 || !std::isfinite(p.length_scale_floor))
    return status::invalid_argument;
  if (p.key_bias_len > 0 && p.key_bias == nullptr) return status::null_pointer;
  if (p.key_bias_len < 0 || p.key_bias_len > (std::int64_t(1) << 24) ||
      (p.key_bias != nullptr && p.key_bias_len == 0))
    return status::invalid_argument;
  if (p.sigmoid && p.sink_logits != nullptr) return status::invalid_argument;
  if ((p.lse != nullptr || p.entropy != nullptr) && p.row_head_stride != 0 &&
      p.row_head_stride < p.q.seq)
    return status::invalid_stride;
  if (p.q_offset == -1 && p.k.seq < p.q.seq && p.causal) return status::invalid_argument;
  if (p.pages != nullptr || p.n_pages != 0) {
    if (p.pages == nullptr) return status::null_pointer;
    if (p.q.seq != 1 || p.n_pages < 1 || p.n_pages > (std::int64_t(1) << 24))
      return status::invalid_argument;
    std::int64_t next = 0;
    for (std::int64_t i = 0; i < p.n_pages; ++i) {
      const kv_page& pg = p.pages[i];
      if (pg.begin != next || pg.len < 0) return status::invalid_argument;
      if (pg.len > 0 && (pg.k == nullptr || pg.v == nullptr)) return status::null_pointer;
      next += pg.len;
    }
    if (next != p.k.seq) return status::shape_mismatch;
  }
  return status::ok;
}

// The dense and sparse kernels (decode and prefill) read every K/V type, quantized included.
HEED_FORCE_INLINE status validate_dense(const dense_params& p) noexcept {
  return validate(p, /*quantized_kv=*/true);
}

}  // namespace heed
