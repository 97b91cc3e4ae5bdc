// Decode's Q K^T over q8 keys: the query row quantized to q8 once per step, and the logits of 16
// keys at a time in 8-bit integer dot products (AVX-512 VNNI).
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"
#include "heed/quant/format.hpp"
#include "heed/quant/quantize.hpp"
#include "heed/simd/integer_dot.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HEED_HAVE_VNNI_KERNEL 1
#endif

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// Where the parts of one quantized query row lie in its scratch (bytes from the row's start):
// the q8 row itself (values, then f16 scales: quant::quantize_row's layout), then per group the
// f32 scale times the row's logit factor and the correction 128 * sum(values of the group) of the
// integer path (which reads the keys as unsigned bytes, k + 128).
struct query_q8_layout {
  std::int64_t d;
  int g;
  std::int64_t groups() const noexcept { return d / g; }
  std::size_t scaled_offset() const noexcept {  // f32 [groups]
    return (quant::row_bytes(dtype::q8, d, g) + 15) / 16 * 16;
  }
  std::size_t correction_offset() const noexcept {  // int32 [groups]
    return scaled_offset() + 4 * std::size_t(groups());
  }
  std::size_t bytes() const noexcept { return correction_offset() + 4 * std::size_t(groups()); }
};

// Quantizes query row q[0 .. d) to q8 in groups of g into qi (query_q8_layout) and writes the
// f32 query the float paths use: qs[c] = dequantized value c * f (f: the row's logit factor). A
// row the format cannot hold (a non-finite value, or |q| beyond 127 * 65504), which
// validate_dense refuses before any kernel runs, gets NaN scales here: NaN logits on every path.
inline void quantize_query_q8(const float* HEED_RESTRICT q, std::int64_t d, int g, float f,
                              std::uint8_t* HEED_RESTRICT qi, float* HEED_RESTRICT qs) noexcept {
  const query_q8_layout lay{d, g};
  const std::int64_t ng = lay.groups();
  if (quant::check_row(dtype::q8, q, d, g) == status::ok) {
    quant::detail::quantize_checked_row(dtype::q8, q, d, g, qi);
  } else {
    std::memset(qi, 0, std::size_t(d));
    const f16 nan = to_f16(std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t k = 0; k < ng; ++k) std::memcpy(qi + d + 2 * k, &nan.bits, 2);
  }
  float* scaled = reinterpret_cast<float*>(qi + lay.scaled_offset());
  std::int32_t* corr = reinterpret_cast<std::int32_t*>(qi + lay.correction_offset());
  for (std::int64_t k = 0; k < ng; ++k) {
    f16 h;
    std::memcpy(&h.bits, qi + d + 2 * k, 2);
    const float s = to_float(h);
    scaled[k] = s * f;
    std::int32_t sum = 0;
    for (std::int64_t c = k * g; c < (k + 1) * g; ++c) {
      const std::int8_t v = static_cast<std::int8_t>(qi[c]);
      sum += v;
      qs[c] = (float(v) * s) * f;  // quant::dequantize_value(q8, ...) * f
    }
    corr[k] = 128 * sum;
  }
}

// Whether the VNNI logits can read rows kstride bytes apart (their scales are gathered with
// 32-bit offsets of up to 15 rows).
inline bool vnni_stride_ok(std::int64_t kstride) noexcept {
  return kstride > 0 && kstride <= std::numeric_limits<std::int32_t>::max() / 16;
}

#if defined(HEED_HAVE_VNNI_KERNEL)

// GCC 12 warns that its own intrinsics' placeholder operands are uninitialized when they are
// inlined into a function with a target attribute (GCC bug 105593); nothing here is.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// 16 x 16 32-bit transpose: r[n] (row n, dwords 0..15) becomes r[c] (dword c of rows 0..15).
__attribute__((target("avx512f"))) inline void transpose_16x16_epi32(__m512i* r) noexcept {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4 i + k], 128-bit lane l: dword 4 l + k of rows 4 i .. 4 i + 3.
  __m512i u[16];
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // Dword 4 l + k of all rows: lane l of u[k], u[4 + k], u[8 + k], u[12 + k].
  for (int k = 0; k < 4; ++k) {
    const __m512i p0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
    const __m512i p1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xee);
    const __m512i p2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
    const __m512i p3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xee);
    r[0 + k] = _mm512_shuffle_i32x4(p0, p2, 0x88);
    r[4 + k] = _mm512_shuffle_i32x4(p0, p2, 0xdd);
    r[8 + k] = _mm512_shuffle_i32x4(p1, p3, 0x88);
    r[12 + k] = _mm512_shuffle_i32x4(p1, p3, 0xdd);
  }
}

// Logits of up to 16 keys (rows kstride bytes apart from krow; rows past nvalid repeat the last
// valid one) for the G query heads whose quantized rows are qstride bytes apart from qi
// (quantize_query_q8): out[g * out_stride + n] for n < 16. Head dim D (a multiple of 64), groups
// of 32: each 64-byte piece of a row holds two groups. Per piece, the 16 keys' bytes are
// transposed so that a 32-bit lane holds one key (four bytes of it), and each head's dot products
// accumulate in int32, exactly, per group: vpdpbusd multiplies unsigned by signed bytes, so keys
// are read as k + 128 and the accumulator starts at -128 * (sum of the group's query values).
// Then logit += float(int sum) * key scale * query scale (with the logit factor), group by group.
template <int D>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) HEED_NOINLINE void decode_qk_q8_vnni(
    const std::uint8_t* HEED_RESTRICT krow, std::int64_t kstride, int nvalid,
    const std::uint8_t* HEED_RESTRICT qi, std::int64_t qstride, std::int64_t G,
    float* HEED_RESTRICT out, std::int64_t out_stride) noexcept {
  static_assert(D % 64 == 0, "64-byte pieces of two groups of 32");
  constexpr int pieces = D / 64;
  const query_q8_layout ql{D, 32};
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const std::uint8_t* rows[16];
  for (int n = 0; n < 16; ++n) rows[n] = krow + std::min(n, nvalid - 1) * kstride;
  const __m512i last = _mm512_set1_epi32(nvalid - 1);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i offs = _mm512_mullo_epi32(_mm512_min_epi32(iota, last),
                                          _mm512_set1_epi32(static_cast<std::int32_t>(kstride)));
  for (int piece = 0; piece < pieces; ++piece) {
    __m512i t[16];
    for (int n = 0; n < 16; ++n)
      t[n] = _mm512_xor_si512(_mm512_loadu_si512(rows[n] + 64 * piece), flip);
    transpose_16x16_epi32(t);
    // The f16 scales of groups 2 piece and 2 piece + 1 of each key: one 32-bit word per row.
    const __m512i sw = _mm512_i32gather_epi32(offs, krow + D + 4 * piece, 1);
    const __m512 ks0 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw));
    const __m512 ks1 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(sw, 16)));
    for (std::int64_t g = 0; g < G; ++g) {
      const std::uint8_t* q = qi + g * qstride + 64 * piece;
      const float* qscaled = reinterpret_cast<const float*>(qi + g * qstride + ql.scaled_offset());
      const std::int32_t* corr =
          reinterpret_cast<const std::int32_t*>(qi + g * qstride + ql.correction_offset());
      __m512i a0 = _mm512_set1_epi32(-corr[2 * piece]);
      __m512i a1 = _mm512_set1_epi32(-corr[2 * piece + 1]);
      for (int c = 0; c < 8; ++c) {
        std::int32_t w0, w1;
        std::memcpy(&w0, q + 4 * c, 4);
        std::memcpy(&w1, q + 32 + 4 * c, 4);
        a0 = _mm512_dpbusd_epi32(a0, t[c], _mm512_set1_epi32(w0));
        a1 = _mm512_dpbusd_epi32(a1, t[8 + c], _mm512_set1_epi32(w1));
      }
      float* o = out + g * out_stride;
      __m512 l = piece == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(o);
      l = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0),
                          _mm512_mul_ps(ks0, _mm512_set1_ps(qscaled[2 * piece])), l);
      l = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1),
                          _mm512_mul_ps(ks1, _mm512_set1_ps(qscaled[2 * piece + 1])), l);
      _mm512_storeu_ps(o, l);
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // HEED_HAVE_VNNI_KERNEL

}  // namespace detail
HEED_ISA_END
}  // namespace heed
