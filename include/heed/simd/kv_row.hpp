// Reading K/V rows of any storage type as f32, in registers: vectors of consecutive columns and
// single values. Plain rows (f32, f16, bf16) are arrays of elements; quantized rows
// (quant::row_byte: q8, q4, heed/quant/format.hpp) are bytes, their values dequantized exactly
// as quant::dequantize_value defines them (SSE2 has no FMA: its q4 values, u * scale + min, are
// rounded twice instead of once, at most one f32 ulp apart).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/quant/format.hpp"
#include "heed/quant/quantize.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/convert.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace heed {
HEED_ISA_BEGIN
namespace simd {

// The shape of a K/V row as the loads need it: d values and, for quantized rows whose group is a
// run-time value (quant::row_byte<F, 0>: the generic head-dim path), the group g. Every other
// type ignores g (a compile-time group, or none), so a head dim converts to a shape.
struct row_shape {
  std::int64_t d;
  int g = 0;
  constexpr row_shape(std::int64_t d_, int g_ = 0) noexcept : d(d_), g(g_) {}  // NOLINT
};

// What a kernel needs to know of a storage type: whether its rows are quantized, and the bytes
// of one row (strides count sizeof(KV) bytes per unit either way).
template <class KV>
struct kv_storage {
  static constexpr bool quantized = false;
  static constexpr std::int64_t row_bytes(row_shape s) noexcept {
    return s.d * std::int64_t(sizeof(KV));
  }
};
template <dtype F, int G>
struct kv_storage<quant::row_byte<F, G>> {
  static constexpr bool quantized = true;
  static constexpr int group(row_shape s) noexcept { return G ? G : s.g; }
  static constexpr std::int64_t row_bytes(row_shape s) noexcept {
    return std::int64_t(quant::row_bytes(F, s.d, group(s)));
  }
};

// An f16 held in 16 bits as f32: F16C where the arch has it, else exponent and mantissa moved to
// their f32 places and scaled by 2^112 (exact for normal and subnormal halves; scales and
// offsets of quantized rows are finite).
HEED_FORCE_INLINE float half_bits_to_float(std::uint16_t h) noexcept {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  if (em > 0x7bffu) return to_float(f16{h});                          // inf / nan
  const float mag = bits_to_float(em << 13) * 5.192296858534828e33f;  // 2^112
  return bits_to_float(float_to_bits(mag) | sign);
#endif
}

HEED_FORCE_INLINE float load_half(const std::uint8_t* at) noexcept {
  std::uint16_t h;
  std::memcpy(&h, at, 2);
  return half_bits_to_float(h);
}

namespace detail {

// n <= 16 consecutive bytes widened to n int32 lanes (signed or unsigned), n = the batch size.
template <class A, bool Signed>
HEED_FORCE_INLINE xsimd::batch<std::int32_t, A> widen_bytes(const std::uint8_t* p) noexcept {
  using I = xsimd::batch<std::int32_t, A>;
  constexpr std::size_t L = I::size;
#if defined(__AVX512F__)
  if constexpr (L == 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return I(Signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));
  }
#endif
#if defined(__AVX2__)
  if constexpr (L == 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return I(Signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b));
  }
#endif
#if defined(__aarch64__)
  if constexpr (is_neon<A>) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    const uint8x8_t b = vreinterpret_u8_u32(vdup_n_u32(w));
    if constexpr (Signed) {
      return I(vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u8(b)))));
    } else {
      return I(vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(b)))));
    }
  }
#endif
#if defined(__SSE2__)
  if constexpr (L == 4) {
    std::int32_t w;
    std::memcpy(&w, p, 4);
    const __m128i b = _mm_cvtsi32_si128(w);
    if constexpr (Signed) {
      // Each byte into the top of its 32-bit lane, then an arithmetic shift down.
      const __m128i x = _mm_unpacklo_epi16(_mm_unpacklo_epi8(b, b), _mm_unpacklo_epi8(b, b));
      return I(_mm_srai_epi32(x, 24));
    } else {
      const __m128i z = _mm_setzero_si128();
      return I(_mm_unpacklo_epi16(_mm_unpacklo_epi8(b, z), z));
    }
  }
#endif
  alignas(64) std::int32_t tmp[L];
  for (std::size_t i = 0; i < L; ++i)
    tmp[i] = Signed ? std::int32_t(static_cast<std::int8_t>(p[i])) : std::int32_t(p[i]);
  return I::load_aligned(tmp);
}

// Whether vectors of L columns of a quantized row in groups of g lie in one group (q8: L divides
// g) or in one half of a group (q4: L divides g / 2, the nibbles of a vector are then in
// consecutive bytes): then they are dequantized in registers.
template <dtype F>
constexpr bool vectors_in_group(int g, int L) noexcept {
  return F == dtype::q8 ? g % L == 0 : (g / 2) % L == 0;
}

// The dequantization constants of group grp of a quantized row of d values in groups of g.
template <class A, dtype F>
struct group_constants {
  xsimd::batch<float, A> scale, min;  // min: q4 only
  std::int64_t grp;
};
template <class A, dtype F>
HEED_FORCE_INLINE group_constants<A, F> load_group(const std::uint8_t* row, std::int64_t d, int g,
                                                   std::int64_t grp) noexcept {
  using B = xsimd::batch<float, A>;
  group_constants<A, F> k;
  k.grp = grp;
  k.scale = B(load_half(row + quant::scales_offset(F, d) + 2 * grp));
  if constexpr (F == dtype::q4) k.min = B(load_half(row + quant::mins_offset(d, g) + 2 * grp));
  return k;
}

// Columns [c, c + L) of group k.grp (vectors_in_group), dequantized with its constants.
template <class A, dtype F>
HEED_FORCE_INLINE xsimd::batch<float, A> dequantize_cols(const std::uint8_t* row, std::int64_t c,
                                                         int g,
                                                         const group_constants<A, F>& k) noexcept {
  using I = xsimd::batch<std::int32_t, A>;
  if constexpr (F == dtype::q8) {
    (void)g;
    return xsimd::to_float(widen_bytes<A, true>(row + c)) * k.scale;
  } else {
    const std::int64_t half = g / 2;
    const std::int64_t in = c - k.grp * g;  // column within the group
    const I bytes = widen_bytes<A, false>(row + k.grp * half + (in < half ? in : in - half));
    const I u = in < half ? (bytes & I(0xf)) : (bytes >> 4);
    return xsimd::fma(xsimd::to_float(u), k.scale, k.min);
  }
}

// Columns [c, c + L) of a quantized row of d values in groups of g (c a multiple of L): in
// registers where vectors_in_group, otherwise (small groups) value by value through the
// definition. G is the compile-time group, or 0 for a run-time g.
template <class A, dtype F, int G>
HEED_FORCE_INLINE xsimd::batch<float, A> load_quant_cols(const std::uint8_t* row, std::int64_t c,
                                                         std::int64_t d, int g) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  if constexpr (G != 0) g = G;
  if (!vectors_in_group<F>(g, L)) {
    alignas(64) float tmp[L];
    for (int i = 0; i < L; ++i) tmp[i] = quant::dequantize_value(F, row, d, g, c + i);
    return B::load_aligned(tmp);
  }
  return dequantize_cols<A, F>(row, c, g, load_group<A, F>(row, d, g, c / g));
}

}  // namespace detail

// Columns [c, c + L) of a row as f32 (L the batch size, c a multiple of L).
template <class A, class KV>
HEED_FORCE_INLINE xsimd::batch<float, A> load_cols(const KV* row, std::int64_t c,
                                                   row_shape s) noexcept {
  if constexpr (kv_storage<KV>::quantized) {
    return detail::load_quant_cols<A, KV::type, KV::group>(
        reinterpret_cast<const std::uint8_t*>(row), c, s.d, s.g);
  } else {
    (void)s;
    return load_as_float<A>(row + c);
  }
}

// Value c of a row as f32.
template <class KV>
HEED_FORCE_INLINE float load_col(const KV* row, std::int64_t c, row_shape s) noexcept {
  if constexpr (kv_storage<KV>::quantized) {
    return quant::dequantize_value(KV::type, row, s.d, kv_storage<KV>::group(s), c);
  } else {
    (void)s;
    return to_float(row[c]);
  }
}

// Vectors of one row loaded in column order: load_cols, except that quantized rows with a
// compile-time group whose vectors lie in one group (every specialized head dim) read each
// group's scale (and q4 offset) once, not once per vector. Call at(row, c, s) for the first
// vector and wherever starts(c) says a new group begins, then load(row, c, s) for each vector:
//   col_reader<A, KV> r;  r.at(row, 0, s);
//   for (c = 0; c < d; c += L) { if (c > 0 && r.starts(c)) r.at(row, c, s); v = r.load(row, c, s);
//   }
// Measured: q8 decode on AVX2 had converted the f16 scale of its group for every 8 values.
template <class A, class KV, class = void>
struct col_reader {
  static constexpr bool starts(std::int64_t) noexcept { return false; }
  HEED_FORCE_INLINE void at(const KV*, std::int64_t, row_shape) noexcept {}
  HEED_FORCE_INLINE xsimd::batch<float, A> load(const KV* row, std::int64_t c,
                                                row_shape s) const noexcept {
    return load_cols<A>(row, c, s);
  }
};
template <class A, class KV>
struct col_reader<
    A, KV,
    std::enable_if_t<kv_storage<KV>::quantized && KV::group != 0 &&
                     detail::vectors_in_group<KV::type>(KV::group, xsimd::batch<float, A>::size)>> {
  static constexpr dtype F = KV::type;
  static constexpr int G = KV::group;
  detail::group_constants<A, F> k;
  static constexpr bool starts(std::int64_t c) noexcept { return c % G == 0; }
  HEED_FORCE_INLINE void at(const KV* row, std::int64_t c, row_shape s) noexcept {
    k = detail::load_group<A, F>(reinterpret_cast<const std::uint8_t*>(row), s.d, G, c / G);
  }
  HEED_FORCE_INLINE xsimd::batch<float, A> load(const KV* row, std::int64_t c,
                                                row_shape) const noexcept {
    return detail::dequantize_cols<A, F>(reinterpret_cast<const std::uint8_t*>(row), c, G, k);
  }
};

// A row of s.d values as f32 into dst[0 .. s.d): vectors of columns, then the tail one by one.
template <class A, class KV>
HEED_FORCE_INLINE void row_to_float(const KV* HEED_RESTRICT row, float* HEED_RESTRICT dst,
                                    row_shape s) noexcept {
  constexpr std::int64_t L = xsimd::batch<float, A>::size;
  col_reader<A, KV> r;
  std::int64_t c = 0;
  for (; c + L <= s.d; c += L) {
    if (c == 0 || r.starts(c)) r.at(row, c, s);
    r.load(row, c, s).store_unaligned(dst + c);
  }
  for (; c < s.d; ++c) dst[c] = load_col(row, c, s);
}

// A pointer to the rows of a quantized view (format F, the view's group g): what the score
// functions get for q8 / q4 K/V from detail::with_typed, where a plain view gives a typed
// pointer. `+ n` moves it by n stride units (bytes), as it moves a typed pointer by n elements,
// and load_cols / load_col / row_to_float read its rows with their group.
template <dtype F>
struct quant_ptr {
  const std::uint8_t* p;
  int g;
  quant_ptr operator+(std::int64_t n) const noexcept { return {p + n, g}; }
};

template <class A, dtype F>
HEED_FORCE_INLINE xsimd::batch<float, A> load_cols(quant_ptr<F> row, std::int64_t c,
                                                   row_shape s) noexcept {
  return detail::load_quant_cols<A, F, 0>(row.p, c, s.d, row.g);
}
template <dtype F>
HEED_FORCE_INLINE float load_col(quant_ptr<F> row, std::int64_t c, row_shape s) noexcept {
  return quant::dequantize_value(F, row.p, s.d, row.g, c);
}
template <class A, dtype F>
HEED_FORCE_INLINE void row_to_float(quant_ptr<F> row, float* HEED_RESTRICT dst,
                                    row_shape s) noexcept {
  constexpr std::int64_t L = xsimd::batch<float, A>::size;
  std::int64_t c = 0;
  for (; c + L <= s.d; c += L) load_cols<A>(row, c, s).store_unaligned(dst + c);
  for (; c < s.d; ++c) dst[c] = load_col(row, c, s);
}

}  // namespace simd
HEED_ISA_END
}  // namespace heed
