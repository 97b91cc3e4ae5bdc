// Parameters of the dense attention kernels and their validation.
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/attention/logit_settings.hpp"
#include "heed/config.hpp"
#include "heed/core/kv_page.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/quant/quantize.hpp"

namespace heed {

// Called by the compiled kernel in decode (Lq == 1) with the final probabilities of query head
// q_head over keys [key_begin, key_begin + n). Calls for different heads or key ranges may come
// from different threads at once; each (head, key) is reported exactly once per call of the kernel.
using prob_tap_fn = void (*)(void* user, int q_head, std::int64_t key_begin, const float* p,
                             std::int64_t n);

// The logit settings (scale and built-in variants: window_left, softcap, alibi_slopes,
// sink_logits, ssmax, length scaling, key_bias, sigmoid) are the base, logit_settings.
struct dense_params : logit_settings {
  tensor_view q;               // [Lq, Hq, d], f32
  tensor_view k;               // [Lk, Hkv, d], f32 / f16 / bf16 / q8 / q4
  tensor_view v;               // [Lk, Hkv, d], same dtype as k
  mutable_tensor_view o;       // [Lq, Hq, d], f32
  bool causal = true;          // query i (position q_offset + i) sees keys 0 .. q_offset + i
  std::int64_t q_offset = -1;  // position of query row 0 among the keys; -1 means Lk - Lq

  // Optional per-row outputs, natural log units, indexed [h * row_head_stride + i].
  float* lse = nullptr;
  float* entropy = nullptr;          // entropy of the attention row in nats
  std::int64_t row_head_stride = 0;  // 0 means Lq

  // Paged K/V (decode only, Lq == 1): the keys are the rows of pages[0 .. n_pages) in order,
  // page i holding keys [begin, begin + len) (begins consecutive from 0, lengths summing to
  // k.seq), each laid out with k's and v's strides from its own pointers. k.data / v.data must
  // still be set (to page 0's). Every page is one split-KV partition of the decode kernel.
  const kv_page* pages = nullptr;
  std::int64_t n_pages = 0;

  // Decode-time probability tap (compiled library; header users pass an observer).
  prob_tap_fn prob_tap = nullptr;
  void* prob_tap_user = nullptr;

  HEED_FORCE_INLINE std::int64_t q_len() const noexcept { return q.seq; }
  HEED_FORCE_INLINE std::int64_t kv_len() const noexcept { return k.seq; }
  HEED_FORCE_INLINE std::int64_t q_heads() const noexcept { return q.heads; }
  HEED_FORCE_INLINE std::int64_t kv_heads() const noexcept { return k.heads; }
  HEED_FORCE_INLINE std::int64_t head_dim() const noexcept { return q.dim; }
  HEED_FORCE_INLINE std::int64_t offset() const noexcept {
    return q_offset >= 0 ? q_offset : k.seq - q.seq;
  }
  HEED_FORCE_INLINE float logit_scale() const noexcept {
    return scale != 0.f ? scale : 1.f / std::sqrt(static_cast<float>(q.dim));
  }
  HEED_FORCE_INLINE std::int64_t row_stride() const noexcept {
    return row_head_stride > 0 ? row_head_stride : q.seq;
  }
};

HEED_ISA_BEGIN
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
  HEED_RETURN_IF_ERROR(validate_logits(p));
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
// Decode over q8 keys quantizes the query rows to q8 too (attention/detail/decode_qk_int.hpp):
// each must be one the format holds (finite, |q| <= 127 * 65504), else status::invalid_argument.
HEED_FORCE_INLINE status validate_dense(const dense_params& p) noexcept {
  HEED_RETURN_IF_ERROR(validate(p, /*quantized_kv=*/true));
  if (p.k.type == dtype::q8 && p.q.seq == 1) {
    const float* q = static_cast<const float*>(p.q.data);
    for (std::int64_t h = 0; h < p.q.heads; ++h)
      if (quant::check_row(dtype::q8, q + p.q.offset(0, h), p.q.dim, p.k.quant_group()) !=
          status::ok)
        return status::invalid_argument;
  }
  return status::ok;
}
HEED_ISA_END

}  // namespace heed
