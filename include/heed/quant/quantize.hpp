// Quantizing and dequantizing rows in the q8 / q4 formats (heed/quant/format.hpp): the scalar
// definition of the formats' arithmetic, which the vectorized paths must reproduce bit for bit.
//
//   q8, per group: a = max |x|, scale = f16(a / 127); q = clamp(rne(x * (1 / scale)), -127, 127)
//       (scale 0: q = 0); value = q * scale.
//   q4, per group: lo = min x, hi = max x, min = f16(lo), scale = f16((hi - lo) / 15);
//       u = clamp(rne((x - min) * (1 / scale)), 0, 15) (scale 0: u = 0); value = fma(u, scale,
//       min).
//
// f16(.) rounds to nearest even, rne(.) is round half to even, products and quotients are f32.
// The quantizers check the whole row before writing: non-finite input, or a scale or offset that
// does not fit an f16 (|x| beyond 65504 for q4, beyond 127 * 65504 for q8), returns
// status::invalid_argument and leaves the output untouched. A group whose range underflows the
// f16 scale (all |x| below about 7.6e-6 for q8) stores scale 0 and dequantizes to 0 (q8) or to
// its f16 minimum (q4).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"
#include "heed/quant/format.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace quant {

namespace detail {
inline float load_f16(const std::uint8_t* at) noexcept {
  f16 h;
  std::memcpy(&h.bits, at, 2);
  return to_float(h);
}
inline void store_f16(std::uint8_t* at, float x) noexcept {
  const f16 h = to_f16(x);
  std::memcpy(at, &h.bits, 2);
}
// Round half to even, whatever the floating-point environment's rounding mode.
inline float round_even(float t) noexcept {
  const float r = std::floor(t);
  const float diff = t - r;
  if (diff > 0.5f) return r + 1.f;
  if (diff < 0.5f) return r;
  return std::fmod(r, 2.f) == 0.f ? r : r + 1.f;
}
constexpr float f16_max = 65504.f;

// The f16 scale of a q8 group with max |x| = a.
inline float q8_scale(float a) noexcept { return to_float(to_f16(a / 127.f)); }
}  // namespace detail

// Checks that x[0 .. d) can be quantized in format f with groups of g.
template <class T>
status check_row(format f, const T* x, std::int64_t d, int g) noexcept {
  if (x == nullptr) return status::null_pointer;
  if (!is_quantized(f)) return status::unsupported_dtype;
  if (!valid_group(d, g)) return status::invalid_argument;
  for (std::int64_t k = 0; k < d; k += g) {
    float a = 0.f;
    for (std::int64_t i = k; i < k + g; ++i) {
      const float v = to_float(x[i]);
      if (!std::isfinite(v)) return status::invalid_argument;
      a = std::max(a, std::fabs(v));
    }
    if (f == format::q8) {
      if (!std::isfinite(detail::q8_scale(a))) return status::invalid_argument;
    } else {
      // The offset must fit an f16; the scale then does ((hi - lo) / 15 <= 2 * 65504 / 15).
      if (a > detail::f16_max) return status::invalid_argument;
    }
  }
  return status::ok;
}

namespace detail {
// quantize_row's body, for a row that check_row accepted (callers that checked many rows first,
// such as kv_cache::append, skip the second scan).
template <class T>
void quantize_checked_row(format f, const T* x, std::int64_t d, int g, void* out) noexcept {
  auto* row = static_cast<std::uint8_t*>(out);
  std::uint8_t* scales = row + scales_offset(f, d);
  for (std::int64_t k = 0, grp = 0; k < d; k += g, ++grp) {
    if (f == format::q8) {
      float a = 0.f;
      for (std::int64_t i = k; i < k + g; ++i) a = std::max(a, std::fabs(to_float(x[i])));
      const float s = detail::q8_scale(a);
      const float inv = s > 0.f ? 1.f / s : 0.f;
      for (std::int64_t i = k; i < k + g; ++i) {
        const float q = std::clamp(detail::round_even(to_float(x[i]) * inv), -127.f, 127.f);
        row[i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
      }
      detail::store_f16(scales + 2 * grp, s);
    } else {
      float lo = to_float(x[k]), hi = lo;
      for (std::int64_t i = k; i < k + g; ++i) {
        lo = std::min(lo, to_float(x[i]));
        hi = std::max(hi, to_float(x[i]));
      }
      const float m = to_float(to_f16(lo));
      const float s = to_float(to_f16((hi - lo) / 15.f));
      const float inv = s > 0.f ? 1.f / s : 0.f;
      std::uint8_t* nib = row + k / 2;
      const std::int64_t half = g / 2;
      for (std::int64_t b = 0; b < half; ++b) {
        const float u0 = std::clamp(detail::round_even((to_float(x[k + b]) - m) * inv), 0.f, 15.f);
        const float u1 =
            std::clamp(detail::round_even((to_float(x[k + half + b]) - m) * inv), 0.f, 15.f);
        nib[b] = static_cast<std::uint8_t>(int(u0) | (int(u1) << 4));
      }
      detail::store_f16(scales + 2 * grp, s);
      detail::store_f16(row + mins_offset(d, g) + 2 * grp, m);
    }
  }
}
}  // namespace detail

// Quantizes x[0 .. d) (f32, f16 or bf16) into one row of row_bytes(f, d, g) bytes at out.
template <class T>
status quantize_row(format f, const T* x, std::int64_t d, int g, void* out) noexcept {
  if (out == nullptr) return status::null_pointer;
  HEED_RETURN_IF_ERROR(check_row(f, x, d, g));
  detail::quantize_checked_row(f, x, d, g, out);
  return status::ok;
}

// Value i of a quantized row (the definition every kernel reproduces).
inline float dequantize_value(format f, const void* in, std::int64_t d, int g,
                              std::int64_t i) noexcept {
  const auto* row = static_cast<const std::uint8_t*>(in);
  const std::int64_t grp = i / g;
  const float s = detail::load_f16(row + scales_offset(f, d) + 2 * grp);
  if (f == format::q8) return float(static_cast<std::int8_t>(row[i])) * s;
  const std::int64_t k = grp * g, half = g / 2, j = i - k;
  const std::uint8_t byte = row[k / 2 + (j < half ? j : j - half)];
  const int u = j < half ? (byte & 0xf) : (byte >> 4);
  return std::fma(float(u), s, detail::load_f16(row + mins_offset(d, g) + 2 * grp));
}

// Dequantizes one row into out[0 .. d). The row must have been written by quantize_row with the
// same (f, d, g) (status::invalid_argument for a group that is not valid for d,
// status::unsupported_dtype for a dtype that is not a quantized format).
inline status dequantize_row(format f, const void* in, std::int64_t d, int g, float* out) noexcept {
  if (in == nullptr || out == nullptr) return status::null_pointer;
  if (!is_quantized(f)) return status::unsupported_dtype;
  if (!valid_group(d, g)) return status::invalid_argument;
  for (std::int64_t i = 0; i < d; ++i) out[i] = dequantize_value(f, in, d, g, i);
  return status::ok;
}

}  // namespace quant
HEED_ISA_END
}  // namespace heed
