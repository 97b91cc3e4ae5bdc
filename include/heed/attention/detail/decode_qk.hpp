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

// Keys whose logits decode_qk_joint scores side by side (their P * G sums advance together,
// each query chunk loaded once for them). KB = L / G keys fill one transpose-reduce. With one key
// at a time G = 4 and 8 had only 4 and 8 independent FMA chains of D / L steps and the logits ran
// at the FMA latency, not its throughput; G = 1 and 2 keep one key at a time (more were not
// faster). On 16-register ISAs the KB keys of G = 4 give 8 chains, just what two FMA pipes of
// latency 4 need, with no slack (AVX2 on Zen 4: 0.79 of the FMA peak in L1); there P rises while
// the accumulators, the key vectors and one query vector fit (AVX2, G = 4: 3 keys, 12 chains,
// 0.94). Only for 16-bit rows, where it measured faster: quantized rows' scales take registers
// too (3 keys were slower), f32 rows were not faster. Measurements: docs/kernel_notes.md.
// Whether a register block of acc accumulators, vecs operand vectors and one more vector (the
// broadcast probability or the query chunk) fits in the ISA's vector registers: the rule that
// sizes decode's logits (decode_qk_keys) and P V (decode_core::pv_cols) blocks.
template <class A>
constexpr bool decode_block_fits(int acc, int vecs) noexcept {
  return acc + vecs + 1 <= simd::vector_registers<A>;
}

template <class A, int G, class KV>
constexpr int decode_qk_keys() noexcept {
  constexpr int L = static_cast<int>(xsimd::batch<float, A>::size);
  constexpr int KB = L / G;
  if (G != 4 && G != 8) return 1;
  int P = KB;
  if (simd::vector_registers<A> == 16 && sizeof(KV) == 2)
    while (P * G < 12 && decode_block_fits<A>((P + 1) * G, P + 1)) ++P;
  return P;
}

// Logits of KC keys (KC = max(decode_qk_keys, KB), or KB) for G query heads into out: out[n * G +
// g] = dot(k_n, q_g). Each key row is converted once, in registers; rows past nvalid repeat the
// last valid row. Each KB keys' sums take one transpose-reduce (their P * G accumulators; a last
// partial reduction is padded with copies). out holds ceil(KC / KB) * L floats, aligned.
template <class A, int D, int G, int KC, class KV>
HEED_FORCE_INLINE void decode_qk_joint(const KV* HEED_RESTRICT krow, std::int64_t kstride,
                                       int nvalid, const float* HEED_RESTRICT qs,
                                       std::int64_t qstride, float* HEED_RESTRICT out) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  constexpr int KB = L / G;
  constexpr int NV = D / L;
  static_assert(KB * G == L && D % L == 0, "joint logits need G | L and L | D");
  static_assert(KC == KB || KC == decode_qk_keys<A, G, KV>(), "KB keys or decode_qk_keys");
  constexpr int P_keys = decode_qk_keys<A, G, KV>();
  constexpr int P = KC > KB ? KC : (P_keys < KB ? P_keys : KB);
  static_assert(KC % P == 0, "keys scored together divide the keys of one call");
  constexpr int R = (KC + KB - 1) / KB;  // transpose-reduces
  B acc[R * L];
  for (int n0 = 0; n0 < KC; n0 += P) {
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
  for (int i = KC * G; i < R * L; ++i) acc[i] = acc[i - KC * G];
  for (int r = 0; r < R; ++r) simd::haddp<A>(acc + r * L).store_aligned(out + r * L);
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
