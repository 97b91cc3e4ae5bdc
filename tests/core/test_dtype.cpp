// Scalar f16 / bf16 conversions (heed/core/dtype.hpp) against an independent float64 rounding
// model: exhaustive round trips, every rounding midpoint (ties to even), subnormals, overflow,
// infinities and NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

#include "heed/core/dtype.hpp"

namespace {

using heed::bf16;
using heed::f16;

float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// A binary format with `mant` explicit mantissa bits, smallest normal exponent `emin` and
// largest finite value `max_finite`: the nearest value to x, ties to even, overflow to inf.
double round_to_format(double x, int mant, int emin, double max_finite) {
  if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
  const double a = std::fabs(x);
  int e;
  std::frexp(a, &e);  // a = f 2^e, f in [0.5, 1): the leading bit has weight 2^(e-1)
  const int lead = std::max(e - 1, emin);
  const double ulp = std::ldexp(1.0, lead - mant);
  double y = std::nearbyint(a / ulp) * ulp;  // a / ulp is exact; nearbyint rounds half to even
  if (y > max_finite) y = std::numeric_limits<double>::infinity();
  return std::copysign(y, x);
}
double ref_f16(float x) { return round_to_format(x, 10, -14, 65504.0); }
double ref_bf16(float x) {
  return round_to_format(x, 7, -126, std::ldexp(255.0, 127 - 7));  // (2 - 2^-7) 2^127
}

// Same value, same sign of zero, or both NaN.
bool same_value(float got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  return got == static_cast<float>(want) && std::signbit(got) == std::signbit(want);
}

// The value of a half from its fields, computed independently of heed::to_float.
double decode_f16(std::uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
  double v;
  if (exp == 31) {
    v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exp == 0) {
    v = std::ldexp(double(man), -24);
  } else {
    v = std::ldexp(1.0 + man / 1024.0, exp - 15);
  }
  return sign ? -v : v;
}

TEST(Dtype, SizesAndNames) {
  EXPECT_EQ(heed::dtype_size(heed::dtype::f32), 4u);
  EXPECT_EQ(heed::dtype_size(heed::dtype::f16), 2u);
  EXPECT_EQ(heed::dtype_size(heed::dtype::bf16), 2u);
  EXPECT_STREQ(heed::dtype_name(heed::dtype::f32), "f32");
  EXPECT_STREQ(heed::dtype_name(heed::dtype::f16), "f16");
  EXPECT_STREQ(heed::dtype_name(heed::dtype::bf16), "bf16");
  // Quantized rows: strides count bytes.
  EXPECT_EQ(heed::dtype_size(heed::dtype::q8), 1u);
  EXPECT_EQ(heed::dtype_size(heed::dtype::q4), 1u);
  EXPECT_STREQ(heed::dtype_name(heed::dtype::q8), "q8");
  EXPECT_STREQ(heed::dtype_name(heed::dtype::q4), "q4");
  EXPECT_TRUE(heed::is_quantized(heed::dtype::q8) && heed::is_quantized(heed::dtype::q4));
  EXPECT_FALSE(heed::is_quantized(heed::dtype::f32) || heed::is_quantized(heed::dtype::f16) ||
               heed::is_quantized(heed::dtype::bf16));
  static_assert(heed::dtype_of<float>::value == heed::dtype::f32, "");
  static_assert(heed::dtype_of<f16>::value == heed::dtype::f16, "");
  static_assert(heed::dtype_of<bf16>::value == heed::dtype::bf16, "");
  static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2, "16-bit storage types");
}

TEST(Dtype, F16ToFloatIsExactForEveryPattern) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const f16 h{static_cast<std::uint16_t>(b)};
    const float got = heed::to_float(h);
    const double want = decode_f16(h.bits);
    ASSERT_TRUE(same_value(got, want)) << std::hex << "bits 0x" << b << ": " << got;
    if (std::isnan(want)) {
      EXPECT_EQ(std::signbit(got), (b & 0x8000u) != 0) << std::hex << b;
    }
  }
}

TEST(Dtype, F16RoundTripEveryPattern) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const f16 h{static_cast<std::uint16_t>(b)};
    const f16 back = heed::to_f16(heed::to_float(h));
    if (std::isnan(heed::to_float(h))) {
      EXPECT_TRUE(std::isnan(heed::to_float(back))) << std::hex << b;
      EXPECT_EQ(back.bits & 0x8000u, b & 0x8000u) << std::hex << b;
    } else {
      ASSERT_EQ(back.bits, b) << std::hex << "bits 0x" << b;
    }
  }
}

// Every midpoint between consecutive halves (exact in float) goes to the even one; one float
// ulp either side goes to the nearer one. Covers subnormals and the largest finite -> inf step.
TEST(Dtype, F16RoundsToNearestEven) {
  for (std::uint32_t b = 0; b < 0x7c00; ++b) {  // positive finite halves
    const double lo = decode_f16(static_cast<std::uint16_t>(b));
    const double hi = b + 1 < 0x7c00 ? decode_f16(static_cast<std::uint16_t>(b + 1)) : 65536.0;
    const float mid = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(double(mid), (lo + hi) / 2) << "midpoint not exact in float";
    const std::uint16_t even = (b & 1u) ? static_cast<std::uint16_t>(b + 1) : b;
    for (float sign : {1.f, -1.f}) {
      const std::uint16_t s = sign < 0 ? 0x8000 : 0;
      ASSERT_EQ(heed::to_f16(sign * mid).bits, even | s) << "midpoint above 0x" << std::hex << b;
      ASSERT_EQ(heed::to_f16(sign * std::nextafter(mid, 0.f)).bits, b | s) << std::hex << b;
      ASSERT_EQ(heed::to_f16(sign * std::nextafter(mid, 1e30f)).bits, (b + 1) | s) << std::hex << b;
    }
  }
}

TEST(Dtype, F16SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(heed::to_f16(0.f).bits, 0x0000);
  EXPECT_EQ(heed::to_f16(-0.f).bits, 0x8000);
  EXPECT_EQ(heed::to_f16(1.f).bits, 0x3c00);
  EXPECT_EQ(heed::to_f16(-2.f).bits, 0xc000);
  EXPECT_EQ(heed::to_f16(65504.f).bits, 0x7bff);
  EXPECT_EQ(heed::to_f16(65519.f).bits, 0x7bff);  // below the midpoint to 65536
  EXPECT_EQ(heed::to_f16(65520.f).bits, 0x7c00);  // the midpoint: ties to even = inf
  EXPECT_EQ(heed::to_f16(1e10f).bits, 0x7c00);
  EXPECT_EQ(heed::to_f16(-1e10f).bits, 0xfc00);
  EXPECT_EQ(heed::to_f16(inf).bits, 0x7c00);
  EXPECT_EQ(heed::to_f16(-inf).bits, 0xfc00);
  EXPECT_EQ(heed::to_f16(std::ldexp(1.f, -14)).bits, 0x0400);   // smallest normal
  EXPECT_EQ(heed::to_f16(std::ldexp(1.f, -24)).bits, 0x0001);   // smallest subnormal
  EXPECT_EQ(heed::to_f16(std::ldexp(1.f, -25)).bits, 0x0000);   // half of it: tie to even 0
  EXPECT_EQ(heed::to_f16(std::ldexp(3.f, -25)).bits, 0x0002);   // 1.5 of it: tie to even 2
  EXPECT_EQ(heed::to_f16(std::ldexp(1.f, -30)).bits, 0x0000);   // far below: zero
  EXPECT_EQ(heed::to_f16(-std::ldexp(1.f, -30)).bits, 0x8000);  // keeps the sign
  EXPECT_EQ(heed::to_f16(std::numeric_limits<float>::denorm_min()).bits, 0x0000);
  const f16 qnan = heed::to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(qnan.bits & 0x7c00, 0x7c00);
  EXPECT_NE(qnan.bits & 0x03ff, 0);
  const f16 snan = heed::to_f16(std::numeric_limits<float>::signaling_NaN());
  EXPECT_TRUE(std::isnan(heed::to_float(snan)));
  EXPECT_EQ(heed::to_f16(-std::numeric_limits<float>::quiet_NaN()).bits & 0x8000, 0x8000);
  EXPECT_EQ(heed::from_float<f16>(1.5f).bits, heed::to_f16(1.5f).bits);
}

TEST(Dtype, F16MatchesRoundingModelOnRandomFloats) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::uint32_t> mant(0, (1u << 23) - 1);
  std::uniform_int_distribution<int> exp(127 - 30, 127 + 17);  // around the half range
  std::uniform_int_distribution<std::uint32_t> any;
  for (int n = 0; n < 300000; ++n) {
    const std::uint32_t u =
        n % 4 == 0 ? any(rng)
                   : ((any(rng) & 1u) << 31) | (std::uint32_t(exp(rng)) << 23) | mant(rng);
    const float x = bits_float(u);
    const float got = heed::to_float(heed::to_f16(x));
    ASSERT_TRUE(same_value(got, ref_f16(x))) << "x = " << x << " (bits 0x" << std::hex << u
                                             << "): got " << got << " want " << ref_f16(x);
  }
}

TEST(Dtype, Bf16ToFloatIsTheHighHalf) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float got = heed::to_float(bf16{static_cast<std::uint16_t>(b)});
    ASSERT_EQ(float_bits(got), b << 16) << std::hex << b;
  }
}

TEST(Dtype, Bf16RoundTripEveryPattern) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const bf16 h{static_cast<std::uint16_t>(b)};
    const bf16 back = heed::to_bf16(heed::to_float(h));
    if (std::isnan(heed::to_float(h))) {
      EXPECT_TRUE(std::isnan(heed::to_float(back))) << std::hex << b;
      EXPECT_EQ(back.bits & 0x8000u, b & 0x8000u) << std::hex << b;
    } else {
      ASSERT_EQ(back.bits, b) << std::hex << "bits 0x" << b;
    }
  }
}

TEST(Dtype, Bf16RoundsToNearestEven) {
  for (std::uint32_t b = 0; b < 0x7f80; ++b) {  // positive finite bf16 values, subnormals included
    const float lo = bits_float(b << 16);
    const std::uint32_t mid_bits = (b << 16) | 0x8000u;  // exactly halfway to the next one
    const float mid = bits_float(mid_bits);
    ASSERT_GT(mid, lo);
    const std::uint16_t even = (b & 1u) ? static_cast<std::uint16_t>(b + 1) : b;
    for (std::uint32_t s : {0u, 0x8000u}) {
      const float sign = s ? -1.f : 1.f;
      ASSERT_EQ(heed::to_bf16(sign * mid).bits, even | s) << std::hex << b;
      ASSERT_EQ(heed::to_bf16(sign * bits_float(mid_bits - 1)).bits, b | s) << std::hex << b;
      ASSERT_EQ(heed::to_bf16(sign * bits_float(mid_bits + 1)).bits, (b + 1) | s) << std::hex << b;
    }
  }
}

TEST(Dtype, Bf16SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(heed::to_bf16(0.f).bits, 0x0000);
  EXPECT_EQ(heed::to_bf16(-0.f).bits, 0x8000);
  EXPECT_EQ(heed::to_bf16(1.f).bits, 0x3f80);
  EXPECT_EQ(heed::to_bf16(inf).bits, 0x7f80);
  EXPECT_EQ(heed::to_bf16(-inf).bits, 0xff80);
  EXPECT_EQ(heed::to_bf16(std::numeric_limits<float>::max()).bits, 0x7f80);  // rounds to inf
  EXPECT_EQ(heed::to_bf16(std::numeric_limits<float>::denorm_min()).bits, 0x0000);
  EXPECT_EQ(heed::to_bf16(bits_float(0x00018000u)).bits, 0x0002);  // subnormal tie: up to even
  EXPECT_EQ(heed::to_bf16(bits_float(0x00008000u)).bits, 0x0000);  // subnormal tie: down to even
  // NaN stays NaN (a payload only in the low bits must not round to inf), sign kept.
  for (std::uint32_t u : {0x7fc00000u, 0x7f800001u, 0x7f80ffffu, 0xff800001u, 0x7fffffffu}) {
    const bf16 h = heed::to_bf16(bits_float(u));
    EXPECT_TRUE(std::isnan(heed::to_float(h))) << std::hex << u;
    EXPECT_EQ(h.bits & 0x8000u, (u >> 16) & 0x8000u) << std::hex << u;
  }
  EXPECT_EQ(heed::from_float<bf16>(1.5f).bits, heed::to_bf16(1.5f).bits);
  EXPECT_EQ(heed::from_float<float>(1.5f), 1.5f);
}

TEST(Dtype, Bf16MatchesRoundingModelOnRandomFloats) {
  std::mt19937 rng(6789);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int n = 0; n < 300000; ++n) {
    const std::uint32_t u = any(rng);
    const float x = bits_float(u);
    const float got = heed::to_float(heed::to_bf16(x));
    ASSERT_TRUE(same_value(got, ref_bf16(x))) << "x = " << x << " (bits 0x" << std::hex << u
                                              << "): got " << got << " want " << ref_bf16(x);
  }
}

}  // namespace
