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

// Lane i of the result is the sum of rows[i] (rows: B::size batches).
// xsimd 8.1's AVX-512 haddp returns lanes 2-5 and 10-13 swapped in pairs
// ([0 1 4 5 2 3 6 7 8 9 12 13 10 11 14 15]); the permutation is its own inverse, so feeding the
// rows in that order gives ordered lanes. tests/simd check the lane order on every ISA.
template <class A>
HEED_FORCE_INLINE xsimd::batch<float, A> haddp(const xsimd::batch<float, A>* rows) noexcept {
  using B = xsimd::batch<float, A>;
#if XSIMD_VERSION_MAJOR == 8
  if constexpr (B::size == 16) {
    const B r[16] = {rows[0], rows[1], rows[4],  rows[5],  rows[2],  rows[3],  rows[6],  rows[7],
                     rows[8], rows[9], rows[12], rows[13], rows[10], rows[11], rows[14], rows[15]};
    return xsimd::haddp(r);
  }
#endif
  return xsimd::haddp(rows);
}

}  // namespace simd
}  // namespace heed
