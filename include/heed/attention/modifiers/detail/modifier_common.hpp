// Shared pieces of the epilogue modifiers: typed K/V row access, a dot product and an axpy in
// plain loops (fixed summation order, so results do not depend on the thread that ran a row),
// the keys a row can see, and the logits the dense kernel's built-in variants produce.
// Private header: include one of heed/attention/modifiers/*.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/attention/params.hpp"
#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {
namespace detail {
namespace mod {

template <class T>
HEED_FORCE_INLINE const T* row_ptr(const tensor_view& t, std::int64_t s, std::int64_t h) noexcept {
  return static_cast<const T*>(t.data) + t.offset(s, h);
}

// sum a[c] * b[c] in fp32 with eight interleaved partial sums (the compiler keeps them in one
// vector register for f32 / bf16 storage).
template <class T>
inline float dot(const float* HEED_RESTRICT a, const T* HEED_RESTRICT b, std::int64_t n) noexcept {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  std::int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[c + l] * to_float(b[c + l]);
  float tail = 0.f;
  for (; c < n; ++c) tail += a[c] * to_float(b[c]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// The dot products of a with four rows at once (four independent chains; each result rounded
// exactly as dot() rounds it).
template <class T>
inline void dot4(const float* HEED_RESTRICT a, const T* HEED_RESTRICT b0, const T* HEED_RESTRICT b1,
                 const T* HEED_RESTRICT b2, const T* HEED_RESTRICT b3, std::int64_t n,
                 float* out) noexcept {
  float a0[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  float a1[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  float a2[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  float a3[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  std::int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int l = 0; l < 8; ++l) {
      const float x = a[c + l];
      a0[l] += x * to_float(b0[c + l]);
      a1[l] += x * to_float(b1[c + l]);
      a2[l] += x * to_float(b2[c + l]);
      a3[l] += x * to_float(b3[c + l]);
    }
  float t[4] = {0.f, 0.f, 0.f, 0.f};
  for (; c < n; ++c) {
    t[0] += a[c] * to_float(b0[c]);
    t[1] += a[c] * to_float(b1[c]);
    t[2] += a[c] * to_float(b2[c]);
    t[3] += a[c] * to_float(b3[c]);
  }
  const float* acc[4] = {a0, a1, a2, a3};
  for (int r = 0; r < 4; ++r) {
    const float* x = acc[r];
    out[r] = ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7])) + t[r];
  }
}

// y[c] += a * x[c] for c in [0, n).
template <class T>
inline void axpy(float a, const T* HEED_RESTRICT x, float* HEED_RESTRICT y,
                 std::int64_t n) noexcept {
  for (std::int64_t c = 0; c < n; ++c) y[c] += a * to_float(x[c]);
}

// y[c] += w[0] x0[c] + w[1] x1[c] + w[2] x2[c] + w[3] x3[c] for c in [0, n).
template <class T>
inline void axpy4(const float* w, const T* HEED_RESTRICT x0, const T* HEED_RESTRICT x1,
                  const T* HEED_RESTRICT x2, const T* HEED_RESTRICT x3, float* HEED_RESTRICT y,
                  std::int64_t n) noexcept {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (std::int64_t c = 0; c < n; ++c)
    y[c] += (w0 * to_float(x0[c]) + w1 * to_float(x1[c])) +
            (w2 * to_float(x2[c]) + w3 * to_float(x3[c]));
}

// Keys [lo, hi) that the row at position q_pos sees under the causal limit and the window.
struct key_span {
  std::int64_t lo = 0, hi = 0;
};
inline key_span visible_keys(const dense_params& p, std::int64_t q_pos) noexcept {
  key_span r{0, p.kv_len()};
  if (p.causal) r.hi = std::min(r.hi, q_pos + 1);
  if (p.window_left >= 0) r.lo = std::max<std::int64_t>(0, q_pos - p.window_left);
  if (r.hi < r.lo) r.hi = r.lo;
  return r;
}

// The logit the kernel gives key j for query head h at position q_pos, from the query row q
// (f32, d elements) and the key row k: scale * q.k, then ALiBi, then soft-capping. Other
// built-in logit variants are rejected by the entry points that recompute logits.
HEED_FORCE_INLINE float finish_logit(const dense_params& p, float scale, std::int64_t h,
                                     std::int64_t q_pos, std::int64_t j, float qk) noexcept {
  float s = scale * qk;
  if (p.alibi_slopes != nullptr) s -= p.alibi_slopes[h] * static_cast<float>(q_pos - j);
  if (p.softcap > 0.f) s = p.softcap * std::tanh(s / p.softcap);
  return s;
}
template <class T>
HEED_FORCE_INLINE float key_logit(const dense_params& p, float scale, std::int64_t h,
                                  std::int64_t q_pos, std::int64_t j, const float* q,
                                  const T* k) noexcept {
  return finish_logit(p, scale, h, q_pos, j, dot(q, k, p.head_dim()));
}

// True when p uses a logit variant key_logit() does not reproduce (the row scaling of SSMax and
// length scaling, the per-key bias, sigmoid attention).
inline bool has_unreproduced_logit_variant(const dense_params& p) noexcept {
  return p.ssmax != nullptr || p.length_scale_base != 0 || p.key_bias != nullptr || p.sigmoid;
}

inline float neg_inf() noexcept { return -std::numeric_limits<float>::infinity(); }

}  // namespace mod
}  // namespace detail
}  // namespace heed
