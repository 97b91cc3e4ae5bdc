// Quantized K/V row formats: int8 (q8) and int4 (q4) with one f16 scale (and, for q4, one f16
// offset) per group of `group` consecutive values of a row. Groups never span rows, so a row is
// self-contained: eviction and compaction move it as bytes, with its scales.
//
// Byte layout of one row of d values (d a multiple of the group g; all f16 little-endian):
//
//   q8: [ q[0] .. q[d-1] : int8 ] [ scale[0] .. scale[d/g-1] : f16 ]         d + 2 d/g bytes
//       value i = q[i] * scale[i / g]                          (symmetric, q in [-127, 127])
//   q4: [ nib[0] .. nib[d/2-1] : uint8 ] [ scale[..] : f16 ] [ min[..] : f16 ]  d/2 + 4 d/g bytes
//       group k's bytes are nib[k g/2 .. (k+1) g/2): byte b holds value k g + b in its low
//       nibble and value k g + g/2 + b in its high nibble (so unpacking a group is one AND and
//       one shift, no interleave); value i = fma(u[i], scale[i / g], min[i / g]), u in [0, 15]
//
// The values of a row come first, at offset 0, so SIMD loads of them are as aligned as the row;
// the scales follow as one small contiguous vector. See docs/quantization.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heed {
namespace quant {

enum class format : int { q8 = 0, q4 = 1 };

constexpr const char* format_name(format f) noexcept { return f == format::q8 ? "q8" : "q4"; }

// The default group: 32 values per scale (llama.cpp's q8_0 / q4_1 blocks are 32 values too).
constexpr int default_group = 32;
// The smallest group: 8 values (an f16 scale per 8 int8 values is already 25% overhead).
constexpr int min_group = 8;

// A row of d values can be stored in format f with groups of g: g >= 8, g even, g divides d.
constexpr bool valid_group(std::int64_t d, int g) noexcept {
  return d > 0 && g >= min_group && g % 2 == 0 && d % g == 0;
}

// Bytes of one quantized row (0 if the group is not valid for d).
constexpr std::size_t row_bytes(format f, std::int64_t d, int g) noexcept {
  if (!valid_group(d, g)) return 0;
  const std::size_t n = std::size_t(d), groups = std::size_t(d / g);
  return f == format::q8 ? n + 2 * groups : n / 2 + 4 * groups;
}

// Where the parts of a row start, in bytes from the row's first byte.
constexpr std::size_t scales_offset(format f, std::int64_t d) noexcept {
  return f == format::q8 ? std::size_t(d) : std::size_t(d) / 2;
}
// q4 only: the per-group offsets (mins).
constexpr std::size_t mins_offset(std::int64_t d, int g) noexcept {
  return std::size_t(d) / 2 + 2 * std::size_t(d / g);
}

}  // namespace quant
}  // namespace heed
