// Feature maps of linear attention: phi(x) for queries and keys, templated on the xsimd arch.
//
// A feature map is a small struct, like a variant (write your own the same way):
//   std::int64_t feature_dim(std::int64_t head_dim) const noexcept;   F, the size of phi(x)
//   status check(std::int64_t head_dim) const noexcept;                its own parameters
//   template <class A>
//   void map_rows(feature_role role, int head, const float* x, std::int64_t ldx,
//                 std::int64_t rows, std::int64_t d, float* out, std::int64_t ldo) const noexcept;
//     writes phi of `rows` input rows (stride ldx, d floats each) to out (stride ldo, F floats
//     each). head is the query head for queries and the KV head for keys. No allocation.
// Elementwise maps derive from elementwise_map<Self> and only provide
//   template <class A> xsimd::batch<float, A> apply(xsimd::batch<float, A>) const noexcept.
//
// Built-in: identity, elu_plus_one (Katharopoulos et al.), relu, favor_plus (Performer's positive
// orthogonal random features, exp(w.x - |x|^2 / 2) / sqrt(m) on x / d^(1/4)), hedgehog
// ([exp(Wx + b), exp(-(Wx + b))] with caller-given W and b).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"
#include "heed/core/status.hpp"
#include "heed/linear/detail/small_gemm.hpp"
#include "heed/simd/math.hpp"

namespace heed {
HEED_ISA_BEGIN

enum class feature_role : int { query = 0, key = 1 };

template <class Self>
struct elementwise_map {
  HEED_FORCE_INLINE std::int64_t feature_dim(std::int64_t d) const noexcept { return d; }
  HEED_FORCE_INLINE status check(std::int64_t) const noexcept { return status::ok; }

  template <class A>
  void map_rows(feature_role, int, const float* x, std::int64_t ldx, std::int64_t rows,
                std::int64_t d, float* out, std::int64_t ldo) const noexcept {
    using B = xsimd::batch<float, A>;
    constexpr std::int64_t L = B::size;
    const Self& self = static_cast<const Self&>(*this);
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ldx;
      float* orow = out + r * ldo;
      std::int64_t c = 0;
      for (; c + L <= d; c += L)
        self.template apply<A>(B::load_unaligned(xr + c)).store_unaligned(orow + c);
      if (c < d) {
        alignas(64) float tmp[L];
        for (std::int64_t t = 0; t < L; ++t) tmp[t] = c + t < d ? xr[c + t] : 0.f;
        self.template apply<A>(B::load_aligned(tmp)).store_aligned(tmp);
        for (std::int64_t t = 0; c + t < d; ++t) orow[c + t] = tmp[t];
      }
    }
  }
};

struct identity_map : elementwise_map<identity_map> {
  template <class A>
  HEED_FORCE_INLINE xsimd::batch<float, A> apply(xsimd::batch<float, A> x) const noexcept {
    return x;
  }
};

// elu(x) + 1: x + 1 for x > 0, exp(x) otherwise; always positive.
struct elu_plus_one : elementwise_map<elu_plus_one> {
  template <class A>
  HEED_FORCE_INLINE xsimd::batch<float, A> apply(xsimd::batch<float, A> x) const noexcept {
    using B = xsimd::batch<float, A>;
    return xsimd::select(x > B(0.f), x + B(1.f), simd::fast_exp<A>(xsimd::min(x, B(0.f))));
  }
};

struct relu_map : elementwise_map<relu_map> {
  template <class A>
  HEED_FORCE_INLINE xsimd::batch<float, A> apply(xsimd::batch<float, A> x) const noexcept {
    return xsimd::max(x, xsimd::batch<float, A>(0.f));
  }
};

// FAVOR+ (Performer): phi(x) = exp(w_r . x' - |x'|^2 / 2) / sqrt(m), r = 1..m, x' = x / d^(1/4),
// so that E[phi(q) . phi(k)] = exp(q . k / sqrt(d)). The features w_r (rows of W, stored
// transposed as wt[d][m]) come from make_favor_features(); shared by all heads unless
// head_stride > 0 (then head h uses wt + h * head_stride, queries by query head, keys by KV head).
struct favor_plus {
  const float* wt = nullptr;  // [d][m]
  std::int64_t m = 0;
  std::int64_t head_stride = 0;

  HEED_FORCE_INLINE favor_plus(const float* w, std::int64_t features,
                               std::int64_t stride = 0) noexcept
      : wt(w), m(features), head_stride(stride) {}

  HEED_FORCE_INLINE std::int64_t feature_dim(std::int64_t) const noexcept { return m; }
  HEED_FORCE_INLINE status check(std::int64_t) const noexcept {
    if (wt == nullptr) return status::null_pointer;
    return m >= 1 && m <= (1 << 16) && head_stride >= 0 ? status::ok : status::invalid_argument;
  }

  template <class A>
  void map_rows(feature_role, int head, const float* x, std::int64_t ldx, std::int64_t rows,
                std::int64_t d, float* out, std::int64_t ldo) const noexcept {
    using B = xsimd::batch<float, A>;
    constexpr std::int64_t L = B::size;
    detail::small_gemm<A>(rows, m, d, x, ldx, wt + head * head_stride, m, out, ldo, false);
    const float s = 1.f / std::sqrt(std::sqrt(float(d)));  // x' = x * s
    const float norm = 1.f / std::sqrt(float(m));
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ldx;
      float sq = 0.f;
      for (std::int64_t c = 0; c < d; ++c) sq += xr[c] * xr[c];
      const B shift(-0.5f * sq * s * s);
      float* orow = out + r * ldo;
      std::int64_t c = 0;
      for (; c + L <= m; c += L) {
        const B u = xsimd::fma(B::load_unaligned(orow + c), B(s), shift);
        (simd::fast_exp<A>(u) * B(norm)).store_unaligned(orow + c);
      }
      if (c < m) {  // the last partial vector through a padded buffer, same arithmetic
        alignas(64) float tmp[L] = {};
        std::copy(orow + c, orow + m, tmp);
        const B u = xsimd::fma(B::load_aligned(tmp), B(s), shift);
        (simd::fast_exp<A>(u) * B(norm)).store_aligned(tmp);
        std::copy(tmp, tmp + (m - c), orow + c);
      }
    }
  }
};

// Hedgehog-style learnable map: u = W x + b (W given transposed, wt[d][m]), phi(x) =
// [exp(u), exp(-u)], F = 2m. Queries use (wq, bq), keys (wk, bk), or the query ones when wk is
// null. Per head when head_stride > 0 (W at wt + h * head_stride, b at b + h * m).
struct hedgehog {
  const float* wq = nullptr;  // [d][m]
  const float* bq = nullptr;  // [m] (may be null: no bias)
  const float* wk = nullptr;
  const float* bk = nullptr;
  std::int64_t m = 0;
  std::int64_t head_stride = 0;

  HEED_FORCE_INLINE std::int64_t feature_dim(std::int64_t) const noexcept { return 2 * m; }
  HEED_FORCE_INLINE status check(std::int64_t) const noexcept {
    if (wq == nullptr) return status::null_pointer;
    return m >= 1 && m <= (1 << 15) && head_stride >= 0 ? status::ok : status::invalid_argument;
  }

  template <class A>
  void map_rows(feature_role role, int head, const float* x, std::int64_t ldx, std::int64_t rows,
                std::int64_t d, float* out, std::int64_t ldo) const noexcept {
    using B = xsimd::batch<float, A>;
    constexpr std::int64_t L = B::size;
    const bool key = role == feature_role::key && wk != nullptr;
    const float* w = (key ? wk : wq) + head * head_stride;
    const float* b = key ? bk : bq;
    if (b != nullptr && head_stride > 0) b += head * m;
    detail::small_gemm<A>(rows, m, d, x, ldx, w, m, out, ldo, false);
    for (std::int64_t r = 0; r < rows; ++r) {
      float* orow = out + r * ldo;
      std::int64_t c = 0;
      for (; c + L <= m; c += L) {
        B u = B::load_unaligned(orow + c);
        if (b != nullptr) u += B::load_unaligned(b + c);
        simd::fast_exp<A>(u).store_unaligned(orow + c);
        simd::fast_exp<A>(-u).store_unaligned(orow + m + c);
      }
      for (; c < m; ++c) {
        const float u = orow[c] + (b != nullptr ? b[c] : 0.f);
        orow[c] = std::exp(u);
        orow[m + c] = std::exp(-u);
      }
    }
  }
};

HEED_ISA_END
}  // namespace heed
