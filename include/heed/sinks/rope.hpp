// Rotary position embedding (RoPE): rotate a head vector to a position, and move an already
// rotated key from one position to another.
//
// The first rotary_dim channels of a head form rotary_dim / 2 pairs; pair i turns by the angle
// pos * theta^(-2i / rotary_dim). Channels from rotary_dim on are left alone (partial rotary).
//   interleaved: pair i is channels (2i, 2i + 1)                (llama2.c, GPT-J, Meta's Llama)
//   half:        pair i is channels (i, i + rotary_dim / 2)     (GPT-NeoX, Hugging Face Llama)
// For a pair (a, b) and angle w: a' = a cos w - b sin w, b' = a sin w + b cos w.
//
// Rotations compose: rotating by w1 then w2 is rotating by w1 + w2. So a key stored at position p
// moves to p' by one rotation of angle (p' - p) * freq (rope_rerotate), with no need for the
// unrotated key. Angles are computed in double (accurate at positions of 10^5 and beyond), cos and
// sin rounded to float once per pair, the rotation itself done in float. f16 / bf16 rows are
// converted to float, rotated and rounded back (each re-rotation adds one rounding of the storage
// type; see docs/sinks.md).
//
// Entry points validate and return a status; none allocates. The cos / sin of a batch of rows
// that share an angle are computed once per pair, in tiles of rope_tile pairs kept on the stack.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {

enum class rope_style : int {
  interleaved = 0,  // pairs (2i, 2i + 1): llama2.c, GPT-J, Meta's Llama reference code
  half = 1,         // pairs (i, i + rotary_dim / 2): GPT-NeoX, Hugging Face Llama
};

struct rope_config {
  std::int64_t head_dim = 0;
  std::int64_t rotary_dim = 0;  // leading channels rotated: 0 = head_dim; even and <= head_dim
  float theta = 10000.f;        // base of the frequencies, finite and > 0
  rope_style style = rope_style::interleaved;
};

constexpr std::int64_t rope_max_head_dim = std::int64_t(1) << 16;

// The rotary dimension in effect (rotary_dim, or head_dim when rotary_dim is 0).
constexpr std::int64_t rope_rotary_dim(const rope_config& c) noexcept {
  return c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
}

inline status validate(const rope_config& c) noexcept {
  if (c.head_dim <= 0 || c.head_dim > rope_max_head_dim) return status::invalid_argument;
  if (c.rotary_dim < 0 || c.rotary_dim > c.head_dim) return status::invalid_argument;
  if (rope_rotary_dim(c) % 2 != 0) return status::invalid_argument;
  if (!(c.theta > 0.f) || !std::isfinite(c.theta)) return status::invalid_argument;
  if (c.style != rope_style::interleaved && c.style != rope_style::half)
    return status::invalid_argument;
  return status::ok;
}

// Frequency of pair i, in radians per position: theta^(-2i / rotary_dim).
inline double rope_frequency(const rope_config& c, std::int64_t pair) noexcept {
  return std::pow(double(c.theta), -2.0 * double(pair) / double(rope_rotary_dim(c)));
}

namespace detail {

constexpr std::int64_t rope_tile = 32;  // pairs whose cos / sin are computed at once

template <class T>
constexpr bool is_rope_storage_v =
    std::is_same<T, float>::value || std::is_same<T, f16>::value || std::is_same<T, bf16>::value;

// Rotates the rows x + a * stride_a + b * stride_b (a < n_a, b < n_b) by the angle of `delta`
// positions. Arguments are checked by the caller.
// a * c - b * s rounded the same way wherever it is compiled. Where the target has a fast
// fused multiply-add (aarch64, x86 with FMA), GCC contracts the expression into one, and which
// product it fuses depended on the code path the vectorizer chose (on aarch64 a batch and a
// single row came out one ulp apart); written as an explicit fma, the choice is fixed. Without a
// fast fma nothing is contracted and the plain expression is exact the same everywhere.
HEED_FORCE_INLINE float rope_mul_sub(float a, float c, float b, float s) noexcept {
#if defined(__FP_FAST_FMAF) || defined(FP_FAST_FMAF)
  return std::fma(a, c, -(b * s));
#else
  return a * c - b * s;
#endif
}

template <class T>
void rope_rotate(const rope_config& c, T* x, std::int64_t n_a, std::int64_t stride_a,
                 std::int64_t n_b, std::int64_t stride_b, std::int64_t delta) noexcept {
  if (delta == 0 || n_a == 0 || n_b == 0) return;  // the identity
  const std::int64_t half = rope_rotary_dim(c) / 2;
  const bool interleaved = c.style == rope_style::interleaved;
  float cs[rope_tile], sn[rope_tile];
  for (std::int64_t i0 = 0; i0 < half; i0 += rope_tile) {
    const std::int64_t m = half - i0 < rope_tile ? half - i0 : rope_tile;
    for (std::int64_t i = 0; i < m; ++i) {
      const double w = double(delta) * rope_frequency(c, i0 + i);
      cs[i] = float(std::cos(w));
      sn[i] = float(std::sin(w));
    }
    // Pair i of a row is (row[first + i * step], row[first + i * step + other]).
    const std::int64_t first = interleaved ? 2 * i0 : i0;
    const std::int64_t step = interleaved ? 2 : 1;
    const std::int64_t other = interleaved ? 1 : half;
    for (std::int64_t a = 0; a < n_a; ++a) {
      for (std::int64_t b = 0; b < n_b; ++b) {
        T* HEED_RESTRICT row = x + a * stride_a + b * stride_b + first;
        for (std::int64_t i = 0; i < m; ++i) {
          T* p0 = row + i * step;
          T* p1 = p0 + other;
          const float x0 = to_float(*p0), x1 = to_float(*p1);
          *p0 = from_float<T>(rope_mul_sub(x0, cs[i], x1, sn[i]));
          *p1 = from_float<T>(rope_mul_sub(x0, sn[i], -x1, cs[i]));
        }
      }
    }
  }
}

template <class T>
status rope_rows(const rope_config& c, T* x, std::int64_t n, std::int64_t row_stride,
                 std::int64_t from_pos, std::int64_t to_pos) noexcept {
  static_assert(is_rope_storage_v<T>, "rope rows are float, heed::f16 or heed::bf16");
  HEED_RETURN_IF_ERROR(validate(c));
  if (n < 0 || from_pos < 0 || to_pos < 0) return status::invalid_argument;
  if (n == 0) return status::ok;
  if (x == nullptr) return status::null_pointer;
  if (n > 1 && row_stride < c.head_dim) return status::invalid_stride;  // rows would overlap
  rope_rotate(c, x, n, row_stride, 1, 0, to_pos - from_pos);
  return status::ok;
}

// Row (s, h) of the view turns by the angle of delta0 + s * delta_step positions.
inline status rope_view(const rope_config& c, const mutable_tensor_view& x, std::int64_t delta0,
                        std::int64_t delta_step) noexcept {
  HEED_RETURN_IF_ERROR(validate(c));
  if (x.data == nullptr) return status::null_pointer;
  HEED_RETURN_IF_ERROR(validate_view(x));
  if (x.dim != c.head_dim) return status::shape_mismatch;
  auto run = [&](auto* p) {
    if (delta_step == 0) {  // one angle: cos / sin once for every row
      rope_rotate(c, p, x.seq, x.seq_stride, x.heads, x.head_stride, delta0);
      return;
    }
    for (std::int64_t s = 0; s < x.seq; ++s)
      rope_rotate(c, p + s * x.seq_stride, 1, 0, x.heads, x.head_stride, delta0 + s * delta_step);
  };
  switch (x.type) {
    case dtype::f32:
      run(static_cast<float*>(x.data));
      break;
    case dtype::f16:
      run(static_cast<f16*>(x.data));
      break;
    case dtype::bf16:
      run(static_cast<bf16*>(x.data));
      break;
    case dtype::q8:
    case dtype::q4:
      break;  // refused by validate_view above
  }
  return status::ok;
}

}  // namespace detail

// Rotates one head vector x[0, head_dim) (unrotated) to position pos >= 0.
template <class T>
status rope_apply(const rope_config& c, T* x, std::int64_t pos) noexcept {
  return detail::rope_rows(c, x, 1, c.head_dim, 0, pos);
}

// Rotates n rows x + r * row_stride (r < n) to the same position pos (e.g. every head of one
// token: row_stride = head_dim). row_stride >= head_dim when n > 1.
template <class T>
status rope_apply(const rope_config& c, T* x, std::int64_t n, std::int64_t row_stride,
                  std::int64_t pos) noexcept {
  return detail::rope_rows(c, x, n, row_stride, 0, pos);
}

// Moves one key rotated at from_pos so that it is rotated at to_pos (both >= 0): one rotation by
// the angle of (to_pos - from_pos). T is float, heed::f16 or heed::bf16.
template <class T>
status rope_rerotate(const rope_config& c, T* x, std::int64_t from_pos,
                     std::int64_t to_pos) noexcept {
  return detail::rope_rows(c, x, 1, c.head_dim, from_pos, to_pos);
}

// The same for n rows x + r * row_stride that all move from from_pos to to_pos (the shift is what
// matters: rows at p + r move to p + r + (to_pos - from_pos) as well).
template <class T>
status rope_rerotate(const rope_config& c, T* x, std::int64_t n, std::int64_t row_stride,
                     std::int64_t from_pos, std::int64_t to_pos) noexcept {
  return detail::rope_rows(c, x, n, row_stride, from_pos, to_pos);
}

// Views [seq, heads, head_dim] of f32 / f16 / bf16 (any strides): row (s, h) is rotated to
// position first_pos + s (a chunk of consecutive tokens; seq 1 for one decode token).
inline status rope_apply(const rope_config& c, const mutable_tensor_view& x,
                         std::int64_t first_pos) noexcept {
  if (first_pos < 0) return status::invalid_argument;
  return detail::rope_view(c, x, first_pos, 1);
}

// Every row of the view moves by (to_pos - from_pos) positions (from_pos, to_pos >= 0).
inline status rope_rerotate(const rope_config& c, const mutable_tensor_view& x,
                            std::int64_t from_pos, std::int64_t to_pos) noexcept {
  if (from_pos < 0 || to_pos < 0) return status::invalid_argument;
  return detail::rope_view(c, x, to_pos - from_pos, 0);
}

}  // namespace heed
