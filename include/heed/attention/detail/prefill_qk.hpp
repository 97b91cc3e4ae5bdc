// Prefill's Q K^T: S^T = K Q^T for a tile (queries in the lanes), with an optional shaping of
// each logit inside the loop.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/simd/arch.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// S^T micro-block: acc[n][v] = sum_k K[n][k] * QT[k][v*L .. v*L+L) for NK keys.
template <class A, int D, int NK, int QV>
HEED_FORCE_INLINE void qk_block(const float* HEED_RESTRICT qt, const float* const* krows,
                                std::int64_t d_rt, xsimd::batch<float, A> (&acc)[NK][QV]) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  constexpr int BR = QV * L;
  const std::int64_t d = D ? D : d_rt;
  for (int n = 0; n < NK; ++n)
    for (int v = 0; v < QV; ++v) acc[n][v] = B(0.f);
  for (std::int64_t k = 0; k < d; ++k) {
    B q[QV];
    for (int v = 0; v < QV; ++v) q[v] = B::load_aligned(qt + k * BR + v * L);
    for (int n = 0; n < NK; ++n) {
      const B b(krows[n][k]);
      for (int v = 0; v < QV; ++v) acc[n][v] = xsimd::fma(b, q[v], acc[n][v]);
    }
  }
}

// S^T = K Q^T of nk (<= BC) keys, f32 rows at kt (row stride kstride), each logit passed through
// shape(logit, key n, vector v) and stored in st ([nk][BR]), with each lane's max over them in
// tmax. The one Q K^T loop of the prefill: raw_scores (shape = identity) and the kernels that
// shape logits inside it (prefill_kernel::scores) are this loop.
template <class A, int D, int NK, int QV, class Shape>
HEED_FORCE_INLINE void scores_loop(const float* HEED_RESTRICT qt, const float* kt,
                                   std::int64_t kstride, std::int64_t d, int nk,
                                   float* HEED_RESTRICT st, xsimd::batch<float, A> (&tmax)[QV],
                                   const Shape& shape) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  constexpr int BR = QV * L;
  B tm[QV];
  for (int v = 0; v < QV; ++v) tm[v] = B(neg_inf);
  for (int jb = 0; jb < nk; jb += NK) {
    const float* krows[NK];
    for (int n = 0; n < NK; ++n) krows[n] = kt + std::min(jb + n, nk - 1) * kstride;
    B acc[NK][QV];
    qk_block<A, D, NK, QV>(qt, krows, d, acc);
    for (int n = 0; n < NK; ++n) {
      if (jb + n >= nk) break;
      for (int v = 0; v < QV; ++v) {
        const B sv = shape(acc[n][v], jb + n, v);
        tm[v] = xsimd::max(tm[v], sv);
        sv.store_aligned(st + (jb + n) * BR + v * L);
      }
    }
  }
  for (int v = 0; v < QV; ++v) tmax[v] = tm[v];
}

struct unshaped_logit {
  template <class B>
  HEED_FORCE_INLINE B operator()(const B& s, int, int) const noexcept {
    return s;
  }
};

// scores_loop without shaping, independent of the variant, the observer and the K/V type, and
// not inlined: one copy per (arch, head dim) serves every kernel whose logits are not shaped
// inside the loop. With a copy of the loop in each (variant, observer, K/V type) kernel, the
// loops were most of the prefill's compile time.
template <class A, int D, int NK, int QV>
HEED_NOINLINE void raw_scores(const float* HEED_RESTRICT qt, const float* kt, std::int64_t kstride,
                              std::int64_t d, int nk, float* HEED_RESTRICT st,
                              xsimd::batch<float, A> (&tmax)[QV]) noexcept {
  scores_loop<A, D, NK, QV>(qt, kt, kstride, d, nk, st, tmax, unshaped_logit{});
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
