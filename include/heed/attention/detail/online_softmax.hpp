// The online softmax rule, written once for every dense kernel. Decode keeps a row's state in
// scalars (T = float); prefill keeps one row per lane of a tile (T = xsimd::batch<float, A>: the
// queries are the lanes). Logits are in base 2 (pre-scaled by log2 e). The state of a row:
//   m  the largest logit so far (-inf before any finite one),
//   d  sum_j exp2(s_j - m),
//   t  sum_j exp2(s_j - m) s_j, the entropy's sum (a -inf logit counts as -1e30, times 0),
// and the output accumulated with the same weights. A block of logits with max b moves the row to
// m' = max(m, b). The block's probabilities are exp2(s - shift), shift = m' (0 while m' is -inf, so
// that a row masked so far gives 0, not NaN), and what the row accumulated before is rescaled by
// alpha = exp2(m - shift) (0 while m was -inf). Partials merged in log-sum-exp form (decode's
// partitions) weigh each partial's (d, t, o) by the same alpha against the largest m.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <cmath>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/math.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

HEED_FORCE_INLINE float softmax_select(bool c, float a, float b) noexcept { return c ? a : b; }
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> softmax_select(const xsimd::batch_bool<float, A>& c,
                                                        const xsimd::batch<float, A>& a,
                                                        const xsimd::batch<float, A>& b) noexcept {
  return xsimd::select(c, a, b);
}

// What logits are shifted by under the running max m: m, or 0 while m is -inf.
template <class T>
HEED_FORCE_INLINE T softmax_shift(const T& m) noexcept {
  return softmax_select(m == T(neg_inf), T(0.f), m);
}

// The exp2 of a scalar state (decode) and of a tile's lanes (prefill).
struct exact_exp2 {
  HEED_FORCE_INLINE float operator()(float x) const noexcept { return std::exp2(x); }
};
template <class A>
struct fast_exp2_fn {
  HEED_FORCE_INLINE xsimd::batch<float, A> operator()(xsimd::batch<float, A> x) const noexcept {
    return simd::fast_exp2<A>(x);
  }
};

// The weight exp2(m - shift(top)) of what was accumulated under max m, against a larger max top.
template <class T, class Exp2>
HEED_FORCE_INLINE T softmax_weight(const T& m, const T& top, const Exp2& exp2) noexcept {
  return exp2(m - softmax_shift(top));
}

// One block of a row: the shift of its probabilities and the factor alpha of what was
// accumulated before.
template <class T>
struct softmax_step {
  T shift, alpha;
};

// Moves the running max m to max(m, block_max) and returns the block's step. exp2 is the kernel's
// (exact or fast; either gives 0 for -inf).
template <class T, class Exp2>
HEED_FORCE_INLINE softmax_step<T> softmax_advance(T& m, const T& block_max,
                                                  const Exp2& exp2) noexcept {
  const T m_new = xsimd::max(m, block_max);
  const softmax_step<T> st{softmax_shift(m_new), softmax_weight(m, m_new, exp2)};
  m = m_new;
  return st;
}

// A sum of the state (d or t) after a block whose own sum (of p, or of p s) is `block`.
template <class T>
HEED_FORCE_INLINE T softmax_rescaled(const T& sum, const softmax_step<T>& st,
                                     const T& block) noexcept {
  return xsimd::fma(sum, st.alpha, block);
}

// The entropy sum's term of one logit s with probability p, added to acc.
template <class T>
HEED_FORCE_INLINE T softmax_entropy_term(const T& p, const T& s, const T& acc) noexcept {
  return xsimd::fma(p, xsimd::max(s, T(-1e30f)), acc);
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
