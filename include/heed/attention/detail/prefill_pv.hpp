// Prefill's P V: O^T = O^T alpha + V^T P^T for a tile (queries in the lanes).
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

// O^T micro-block: ot[c0+n][lanes] = ot[c0+n][lanes] * alpha + sum_j V[j][c0+n] * PT[j][lanes].
template <class A, int NC, int QV>
HEED_FORCE_INLINE void pv_block(float* HEED_RESTRICT ot, const float* HEED_RESTRICT pt,
                                const float* HEED_RESTRICT vbase, std::int64_t vstride,
                                std::int64_t c0, int nk,
                                const xsimd::batch<float, A> (&alpha)[QV]) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  constexpr int BR = QV * L;
  B acc[NC][QV];
  for (int n = 0; n < NC; ++n)
    for (int v = 0; v < QV; ++v) acc[n][v] = B::load_aligned(ot + (c0 + n) * BR + v * L) * alpha[v];
  const float* vrow = vbase + c0;
  // Rows of a head are often 4 KiB apart ([seq, heads, d]): too far for the hardware stride
  // prefetcher, and all in one L1 set. Fetch PF rows ahead; near the end, the next column
  // block's first rows. Addresses are formed as integers (they may lie past the tensor; a
  // prefetch does not fault).
  constexpr int PF = 8;
  const std::uintptr_t row_step = std::uintptr_t(vstride) * sizeof(float);
  const std::uintptr_t pf_ahead = reinterpret_cast<std::uintptr_t>(vrow) + PF * row_step;
  const std::uintptr_t pf_next = reinterpret_cast<std::uintptr_t>(vbase + c0) + NC * sizeof(float);
  for (int j = 0; j < nk; ++j, vrow += vstride) {
    const std::uintptr_t at = j + PF < nk ? pf_ahead + std::uintptr_t(j) * row_step
                                          : pf_next + std::uintptr_t(j + PF - nk) * row_step;
    __builtin_prefetch(reinterpret_cast<const void*>(at));
    B p[QV];
    for (int v = 0; v < QV; ++v) p[v] = B::load_aligned(pt + j * BR + v * L);
    for (int n = 0; n < NC; ++n) {
      const B b(vrow[n]);
      for (int v = 0; v < QV; ++v) acc[n][v] = xsimd::fma(b, p[v], acc[n][v]);
    }
  }
  for (int n = 0; n < NC; ++n)
    for (int v = 0; v < QV; ++v) acc[n][v].store_aligned(ot + (c0 + n) * BR + v * L);
}

// O^T = O^T * alpha + V^T P^T over all d columns. Not inlined on purpose: inside the tile's big
// inlined body the compiler kept the variant's and the observer's loop constants in registers
// and spilled a P vector of this loop to the stack (docs/kernel_notes.md); as its own function the
// micro-block gets all 32 registers.
template <class A, int NC, int QV>
HEED_NOINLINE void pv_all(float* HEED_RESTRICT ot, const float* HEED_RESTRICT pt,
                          const float* HEED_RESTRICT vt, std::int64_t vstride, std::int64_t d,
                          int nk, const xsimd::batch<float, A> (&alpha)[QV]) noexcept {
  std::int64_t c0 = 0;
  for (; c0 + NC <= d; c0 += NC) pv_block<A, NC, QV>(ot, pt, vt, vstride, c0, nk, alpha);
  for (; c0 < d; ++c0) pv_block<A, 1, QV>(ot, pt, vt, vstride, c0, nk, alpha);
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
