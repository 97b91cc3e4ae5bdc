// Decode's P V: one register block of output columns for a few query heads over a block of keys.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "heed/attention/detail/decode_layout.hpp"
#include "heed/attention/detail/dense_common.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// o[g][c0 .. c0 + CB*L) += sum_j p[g][j] * v[j][...] for GB query heads and nb keys (rows of D
// values); vf.next() once per key (the pass's share of the V prefetches, decode_core::v_part).
template <class A, int D, int GB, int CB, class KV, class PartFetch>
HEED_FORCE_INLINE void decode_pv_block(float* HEED_RESTRICT o, std::int64_t o_stride,
                                       const float* HEED_RESTRICT pb, const KV* vrow0,
                                       std::int64_t vstride, std::int64_t c0, int nb,
                                       PartFetch vf) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  B acc[GB][CB];
  for (int g = 0; g < GB; ++g)
    for (int c = 0; c < CB; ++c) acc[g][c] = B::load_aligned(o + g * o_stride + c0 + c * L);
  const KV* vrow = vrow0;
  for (int j = 0; j < nb; ++j, vrow += vstride) {
    vf.next();
    B vv[CB];
    simd::col_reader<A, KV> r;
    for (int c = 0; c < CB; ++c) {
      if (c == 0 || r.starts(c0 + c * L)) r.at(vrow, c0 + c * L, D);
      vv[c] = r.load(vrow, c0 + c * L, D);
    }
    for (int g = 0; g < GB; ++g) {
      const B pj(pb[g * decode_cfg::NB + j]);
      for (int c = 0; c < CB; ++c) acc[g][c] = xsimd::fma(pj, vv[c], acc[g][c]);
    }
  }
  for (int g = 0; g < GB; ++g)
    for (int c = 0; c < CB; ++c) acc[g][c].store_aligned(o + g * o_stride + c0 + c * L);
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
