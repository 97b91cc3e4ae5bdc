// Horizontal reductions missing from xsimd 8.1's API (it has hadd / haddp only).
#pragma once

#include <algorithm>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"

namespace heed {
namespace simd {

template <class A>
HEED_FORCE_INLINE float hsum(xsimd::batch<float, A> x) noexcept {
  return xsimd::hadd(x);
}

template <class A>
HEED_FORCE_INLINE float hmax(xsimd::batch<float, A> x) noexcept {
  using B = xsimd::batch<float, A>;
  alignas(64) float t[B::size];
  x.store_aligned(t);
  float m = t[0];
  for (std::size_t i = 1; i < B::size; ++i) m = std::max(m, t[i]);
  return m;
}

}  // namespace simd
}  // namespace heed
