// Private building blocks of the score functions (scoring/key_norm.hpp, expected_attention.hpp,
// lagkv.hpp, caote.hpp, observation_window.hpp): dtype dispatch of K/V rows, vectorized dot
// products and norms over the head dimension, an in-place softmax, and the reduction of
// query-head rows into KV-head rows. Everything is templated on the xsimd arch (Highway's ODR
// rule: an inline function compiled into several per-ISA TUs must depend on the arch).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/scoring/score_common.hpp"
#include "heed/simd/convert.hpp"
#include "heed/simd/kv_row.hpp"
#include "heed/simd/math.hpp"
#include "heed/simd/reduce.hpp"

namespace heed {
namespace detail {

// Calls f with the base of a validated view's rows: a typed pointer (f32 / f16 / bf16), or for
// quantized rows (q8 / q4) a simd::quant_ptr that carries the view's group. Either moves by the
// view's offsets (base + v.offset(j, h)) and is read by simd::load_cols / load_col / row_to_float
// and by the helpers below.
template <class F>
HEED_FORCE_INLINE void with_typed(const tensor_view& v, F&& f) noexcept {
  if (v.type == dtype::f32) {
    f(static_cast<const float*>(v.data));
  } else if (v.type == dtype::f16) {
    f(static_cast<const f16*>(v.data));
  } else if (v.type == dtype::bf16) {
    f(static_cast<const bf16*>(v.data));
  } else if (v.type == dtype::q8) {
    f(simd::quant_ptr<dtype::q8>{static_cast<const std::uint8_t*>(v.data), v.quant_group()});
  } else {
    f(simd::quant_ptr<dtype::q4>{static_cast<const std::uint8_t*>(v.data), v.quant_group()});
  }
}

// sum_c a[c] * b[c] (b: a row as with_typed hands them out)
template <class A, class P>
HEED_FORCE_INLINE float dot_row(const float* HEED_RESTRICT a, P b, std::int64_t n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  B acc0(0.f), acc1(0.f);
  std::int64_t c = 0;
  for (; c + 2 * L <= n; c += 2 * L) {
    acc0 = xsimd::fma(B::load_unaligned(a + c), simd::load_cols<A>(b, c, n), acc0);
    acc1 = xsimd::fma(B::load_unaligned(a + c + L), simd::load_cols<A>(b, c + L, n), acc1);
  }
  for (; c + L <= n; c += L)
    acc0 = xsimd::fma(B::load_unaligned(a + c), simd::load_cols<A>(b, c, n), acc0);
  float s = simd::hsum<A>(acc0 + acc1);
  for (; c < n; ++c) s += a[c] * simd::load_col(b, c, n);
  return s;
}

// sum_c x[c]^2
template <class A, class P>
HEED_FORCE_INLINE float sqnorm_row(P x, std::int64_t n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  B acc0(0.f), acc1(0.f);
  std::int64_t c = 0;
  for (; c + 2 * L <= n; c += 2 * L) {
    const B a = simd::load_cols<A>(x, c, n), b = simd::load_cols<A>(x, c + L, n);
    acc0 = xsimd::fma(a, a, acc0);
    acc1 = xsimd::fma(b, b, acc1);
  }
  for (; c + L <= n; c += L) {
    const B a = simd::load_cols<A>(x, c, n);
    acc0 = xsimd::fma(a, a, acc0);
  }
  float s = simd::hsum<A>(acc0 + acc1);
  for (; c < n; ++c) {
    const float a = simd::load_col(x, c, n);
    s += a * a;
  }
  return s;
}

// sum_c (o[c] - v[c])^2
template <class A, class P>
HEED_FORCE_INLINE float sqdist_row(const float* HEED_RESTRICT o, P v, std::int64_t n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  B acc(0.f);
  std::int64_t c = 0;
  for (; c + L <= n; c += L) {
    const B e = B::load_unaligned(o + c) - simd::load_cols<A>(v, c, n);
    acc = xsimd::fma(e, e, acc);
  }
  float s = simd::hsum<A>(acc);
  for (; c < n; ++c) {
    const float e = o[c] - simd::load_col(v, c, n);
    s += e * e;
  }
  return s;
}

// In-place softmax over x[0, n): -inf entries give 0; a row with no finite entry becomes all 0.
// Entries must be finite or -inf.
template <class A>
HEED_FORCE_INLINE void softmax_inplace(float* x, std::int64_t n) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  const float ninf = -std::numeric_limits<float>::infinity();
  B mb(ninf);
  std::int64_t j = 0;
  for (; j + L <= n; j += L) mb = xsimd::max(mb, B::load_unaligned(x + j));
  float m = simd::hmax<A>(mb);
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  if (m == ninf) {
    for (j = 0; j < n; ++j) x[j] = 0.f;
    return;
  }
  B sb(0.f);
  for (j = 0; j + L <= n; j += L) {
    const B e = simd::fast_exp<A>(B::load_unaligned(x + j) - B(m));
    e.store_unaligned(x + j);
    sb += e;
  }
  float s = simd::hsum<A>(sb);
  for (; j < n; ++j) {
    x[j] = std::exp(x[j] - m);
    s += x[j];
  }
  const float inv = 1.f / s;
  for (j = 0; j + L <= n; j += L) (B::load_unaligned(x + j) * B(inv)).store_unaligned(x + j);
  for (; j < n; ++j) x[j] *= inv;
}

// Folds one query head's row src into its KV head's row out. The first head of the group
// (first = true) overwrites out. mean: out += w * src with w = 1 / group; max: out = max(out, src).
template <class A>
HEED_FORCE_INLINE void fold_head(float* HEED_RESTRICT out, const float* HEED_RESTRICT src,
                                 std::int64_t n, head_reduce r, bool first, float w) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  std::int64_t j = 0;
  if (r == head_reduce::max) {
    if (first) {
      for (; j < n; ++j) out[j] = src[j];
    } else {
      for (; j + L <= n; j += L)
        xsimd::max(B::load_unaligned(out + j), B::load_unaligned(src + j)).store_unaligned(out + j);
      for (; j < n; ++j) out[j] = out[j] < src[j] ? src[j] : out[j];
    }
    return;
  }
  if (first) {
    for (; j + L <= n; j += L) (B::load_unaligned(src + j) * B(w)).store_unaligned(out + j);
    for (; j < n; ++j) out[j] = src[j] * w;
  } else {
    for (; j + L <= n; j += L)
      xsimd::fma(B::load_unaligned(src + j), B(w), B::load_unaligned(out + j))
          .store_unaligned(out + j);
    for (; j < n; ++j) out[j] += src[j] * w;
  }
}

// Resolves an output head stride (0 means n) and checks it leaves room for n entries.
HEED_FORCE_INLINE status resolve_stride(std::int64_t& stride, std::int64_t n) noexcept {
  if (stride < 0) return status::invalid_stride;
  if (stride == 0) stride = n;
  return stride < n ? status::invalid_stride : status::ok;
}

// Views of K and V (or any pair) must agree on positions and heads.
HEED_FORCE_INLINE status same_rows(const tensor_view& a, const tensor_view& b) noexcept {
  return a.seq == b.seq && a.heads == b.heads ? status::ok : status::shape_mismatch;
}

constexpr std::int64_t max_score_len = std::int64_t(1) << 30;

}  // namespace detail
}  // namespace heed
