// Element types of K/V storage (f32, f16, bf16; the quantized row formats q8 and q4) and scalar
// conversions.
//
// The vectorized conversions live in simd/convert.hpp. The scalar ones here are exact
// (round-to-nearest-even on the way down) and are used by references, packing and tails. The
// quantized formats' bit layouts are in heed/quant/format.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "heed/config.hpp"

namespace heed {

// q8 and q4 are whole-row formats (values in groups, each group with its f16 scale; see
// heed/quant/format.hpp): a view of them counts its strides in bytes.
enum class dtype : int { f32 = 0, f16 = 1, bf16 = 2, q8 = 3, q4 = 4 };

HEED_ISA_BEGIN
constexpr bool is_quantized(dtype t) noexcept { return t == dtype::q8 || t == dtype::q4; }

// Bytes of one stride unit of a view of this type: an element of f32 / f16 / bf16, one byte of
// the rows of a quantized format.
constexpr std::size_t dtype_size(dtype t) noexcept {
  return t == dtype::f32 ? 4 : is_quantized(t) ? 1 : 2;
}

constexpr const char* dtype_name(dtype t) noexcept {
  return t == dtype::f32    ? "f32"
         : t == dtype::f16  ? "f16"
         : t == dtype::bf16 ? "bf16"
         : t == dtype::q8   ? "q8"
         : t == dtype::q4   ? "q4"
                            : "?";
}

// Storage types: distinct 16-bit wrappers so overloads can tell f16 from bf16.
struct f16 {
  std::uint16_t bits;
};
struct bf16 {
  std::uint16_t bits;
};

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr dtype value = dtype::f32;
};
template <>
struct dtype_of<f16> {
  static constexpr dtype value = dtype::f16;
};
template <>
struct dtype_of<bf16> {
  static constexpr dtype value = dtype::bf16;
};

HEED_FORCE_INLINE float bits_to_float(std::uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
HEED_FORCE_INLINE std::uint32_t float_to_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

HEED_FORCE_INLINE float to_float(float x) noexcept { return x; }
HEED_FORCE_INLINE float to_float(bf16 x) noexcept {
  return bits_to_float(std::uint32_t(x.bits) << 16);
}
HEED_FORCE_INLINE float to_float(f16 x) noexcept {
  const std::uint32_t h = x.bits;
  const std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // subnormal: normalize
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400u) == 0);
    man &= 0x3ffu;
    return bits_to_float(sign | (std::uint32_t(127 - 15 - e) << 23) | (man << 13));
  }
  return bits_to_float(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

HEED_FORCE_INLINE bf16 to_bf16(float f) noexcept {
  std::uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{std::uint16_t((u >> 16) | 0x40u)};  // quiet nan
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return bf16{std::uint16_t(u >> 16)};
}

HEED_FORCE_INLINE f16 to_f16(float f) noexcept {
  const std::uint32_t u = float_to_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16{std::uint16_t(sign | 0x7e00u)};   // nan
  if (a >= 0x477ff000u) return f16{std::uint16_t(sign | 0x7c00u)};  // overflow -> inf
  if (a < 0x38800000u) {  // result is subnormal or zero: scale into integer mantissa
    if (a < 0x33000000u) return f16{std::uint16_t(sign)};
    const std::uint32_t e = a >> 23;
    const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - e;  // 14 + (112 - e) ... places the value in 2^-24 units
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return f16{std::uint16_t(sign | r)};
  }
  std::uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);     // round to nearest even on the 13 dropped bits
  return f16{std::uint16_t(sign | (r >> 13))};
}

template <class T>
HEED_FORCE_INLINE T from_float(float x) noexcept;
template <>
HEED_FORCE_INLINE float from_float<float>(float x) noexcept {
  return x;
}
template <>
HEED_FORCE_INLINE f16 from_float<f16>(float x) noexcept {
  return to_f16(x);
}
template <>
HEED_FORCE_INLINE bf16 from_float<bf16>(float x) noexcept {
  return to_bf16(x);
}
HEED_ISA_END

}  // namespace heed
