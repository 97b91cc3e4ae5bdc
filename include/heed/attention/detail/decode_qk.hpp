// Decode's Q K^T: the logits of key rows against the query heads of their KV head, in registers
// (K rows converted or dequantized as they are loaded).
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/convert.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// Dot products of one key row with G query rows: out[g] = sum_k k[k] * q[g][k].
template <class A, int D, class KV>
HEED_FORCE_INLINE void decode_qk_row(const KV* HEED_RESTRICT krow, const float* HEED_RESTRICT qs,
                                     std::int64_t g_count, simd::row_shape rs_rt,
                                     std::int64_t qstride, float* out,
                                     std::int64_t out_stride) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  const simd::row_shape rs = D ? simd::row_shape(D) : rs_rt;
  const std::int64_t d = rs.d;
  if constexpr (D != 0 && D % L == 0) {
    constexpr int NV = D / L;
    B k[NV];
    simd::col_reader<A, KV> r;
    for (int c = 0; c < NV; ++c) {
      if (c == 0 || r.starts(c * L)) r.at(krow, c * L, D);
      k[c] = r.load(krow, c * L, D);
    }
    std::int64_t g = 0;
    for (; g + 2 <= g_count; g += 2) {
      const float* q0 = qs + g * qstride;
      const float* q1 = q0 + qstride;
      B a0 = k[0] * B::load_aligned(q0), a1 = k[0] * B::load_aligned(q1);
      for (int c = 1; c < NV; ++c) {
        a0 = xsimd::fma(k[c], B::load_aligned(q0 + c * L), a0);
        a1 = xsimd::fma(k[c], B::load_aligned(q1 + c * L), a1);
      }
      out[g * out_stride] = simd::hsum<A>(a0);
      out[(g + 1) * out_stride] = simd::hsum<A>(a1);
    }
    if (g < g_count) {
      const float* q0 = qs + g * qstride;
      B a0 = k[0] * B::load_aligned(q0);
      for (int c = 1; c < NV; ++c) a0 = xsimd::fma(k[c], B::load_aligned(q0 + c * L), a0);
      out[g * out_stride] = simd::hsum<A>(a0);
    }
  } else {
    for (std::int64_t g = 0; g < g_count; ++g) {
      const float* q = qs + g * qstride;
      B a(0.f);
      std::int64_t c = 0;
      for (; c + L <= d; c += L)
        a = xsimd::fma(simd::load_cols<A>(krow, c, rs), B::load_unaligned(q + c), a);
      float sum = simd::hsum<A>(a);
      for (; c < d; ++c) sum += simd::load_col(krow, c, rs) * q[c];
      out[g * out_stride] = sum;
    }
  }
}

// Logits of KB = L / G keys for G query heads with one transpose-reduce: lane n * G + g of the
// result is dot(k_{n}, q_g). Each key row is converted once, in registers. Rows past nvalid
// repeat the last valid row. P keys are scored together (their P * G sums advance side by
// side, each query chunk loaded once for them): with one key at a time G = 4 and 8 had only 4
// and 8 independent FMA chains of D / L steps, and the logits ran at the FMA latency, not its
// throughput. G = 1 and 2 keep one key at a time (more were not faster). Measurements:
// docs/kernel_notes.md.
template <class A, int D, int G, class KV>
HEED_FORCE_INLINE xsimd::batch<float, A> decode_qk_joint(const KV* HEED_RESTRICT krow,
                                                         std::int64_t kstride, int nvalid,
                                                         const float* HEED_RESTRICT qs,
                                                         std::int64_t qstride) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  constexpr int KB = L / G;
  constexpr int NV = D / L;
  static_assert(KB * G == L && D % L == 0, "joint logits need G | L and L | D");
  constexpr int P_want = G == 4 || G == 8 ? KB : 1;
  constexpr int P = P_want < KB ? P_want : KB;  // narrower vectors: fewer keys per reduction
  static_assert(KB % P == 0, "keys scored together divide the keys of one reduction");
  B acc[L];
  for (int n0 = 0; n0 < KB; n0 += P) {
    const KV* kr[P];
    simd::col_reader<A, KV> r[P];
    for (int i = 0; i < P; ++i) kr[i] = krow + std::min(n0 + i, nvalid - 1) * kstride;
    for (int i = 0; i < P; ++i) {
      r[i].at(kr[i], 0, D);
      const B k0 = r[i].load(kr[i], 0, D);
      for (int g = 0; g < G; ++g) acc[(n0 + i) * G + g] = k0 * B::load_aligned(qs + g * qstride);
    }
    for (int c = 1; c < NV; ++c) {
      B kc[P];
      if (r[0].starts(c * L))
        for (int i = 0; i < P; ++i) r[i].at(kr[i], c * L, D);
      for (int i = 0; i < P; ++i) kc[i] = r[i].load(kr[i], c * L, D);
      for (int g = 0; g < G; ++g) {
        const B qg = B::load_aligned(qs + g * qstride + c * L);
        for (int i = 0; i < P; ++i)
          acc[(n0 + i) * G + g] = xsimd::fma(kc[i], qg, acc[(n0 + i) * G + g]);
      }
    }
  }
  return simd::haddp<A>(acc);
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
