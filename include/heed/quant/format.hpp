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

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace quant {

// A quantized format is the heed::dtype that names it (dtype::q8, dtype::q4); functions here
// treat any other dtype as no format (row_bytes 0, status::unsupported_dtype).
using format = dtype;

// The default group: 32 values per scale (llama.cpp's q8_0 / q4_1 blocks are 32 values too).
constexpr int default_group = 32;
// The smallest group: 8 values (an f16 scale per 8 int8 values is already 25% overhead).
constexpr int min_group = 8;

// The group the kernels of the specialized head dims are compiled for (the default). Quantized
// K/V of any other valid group run the generic head-dim path, which takes the group at run time.
constexpr int kernel_group = 32;

// A row of d values can be stored in format f with groups of g: g >= 8, g even, g divides d.
constexpr bool valid_group(std::int64_t d, int g) noexcept {
  return d > 0 && g >= min_group && g % 2 == 0 && d % g == 0;
}

// Bytes of one quantized row (0 if f is not a quantized format or the group is not valid for d).
constexpr std::size_t row_bytes(format f, std::int64_t d, int g) noexcept {
  if (!is_quantized(f) || !valid_group(d, g)) return 0;
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

// One byte of a row in format F with groups of G (0: a group known at run time only): the K/V
// storage type the kernels are instantiated with for quantized rows (pointers to it step through
// a row's bytes; the values' loads are in heed/simd/kv_row.hpp).
template <dtype F, int G>
struct row_byte {
  static_assert(is_quantized(F) && (G == 0 || (G >= min_group && G % 2 == 0)),
                "a quantized format and group");
  static constexpr dtype type = F;
  static constexpr int group = G;
  std::uint8_t bits;
};

}  // namespace quant
HEED_ISA_END
}  // namespace heed
