// The q8 / q4 row formats (heed/quant/format.hpp, quantize.hpp): sizes, the documented byte
// layout read back independently of the library's dequantizer, error bounds against the float64
// values on random rows of every (head dim, group), zero / constant / saturating groups, f16 and
// bf16 input, and bad input (non-finite, out of the f16 range, bad groups) rejected with the
// output untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "heed/quant/quantize.hpp"
#include "heed/quant/rotation.hpp"

namespace {

using heed::status;
using heed::quant::format;

float f16_at(const std::vector<std::uint8_t>& row, std::size_t off) {
  heed::f16 h;
  std::memcpy(&h.bits, row.data() + off, 2);
  return heed::to_float(h);
}

std::vector<std::uint8_t> quantize(format f, const std::vector<float>& x, int g) {
  std::vector<std::uint8_t> row(heed::quant::row_bytes(f, std::int64_t(x.size()), g), 0xcd);
  EXPECT_EQ(heed::quant::quantize_row(f, x.data(), std::int64_t(x.size()), g, row.data()),
            status::ok);
  return row;
}

TEST(QuantFormat, RowBytesAndOffsets) {
  EXPECT_EQ(heed::quant::row_bytes(format::q8, 128, 32), 128u + 8u);
  EXPECT_EQ(heed::quant::row_bytes(format::q4, 128, 32), 64u + 16u);
  EXPECT_EQ(heed::quant::row_bytes(format::q8, 80, 16), 80u + 10u);
  EXPECT_EQ(heed::quant::row_bytes(format::q4, 8, 8), 4u + 4u);
  EXPECT_EQ(heed::quant::scales_offset(format::q8, 128), 128u);
  EXPECT_EQ(heed::quant::scales_offset(format::q4, 128), 64u);
  EXPECT_EQ(heed::quant::mins_offset(128, 32), 64u + 8u);
  const std::pair<std::int64_t, int> bad[] = {{96, 0},  {96, 4},   {96, 6},   {96, 7}, {96, 9},
                                              {96, 10}, {100, 12}, {104, 48}, {-8, 8}, {96, 192}};
  for (const auto& [d, g] : bad) {
    EXPECT_FALSE(heed::quant::valid_group(d, g)) << d << " " << g;
    EXPECT_EQ(heed::quant::row_bytes(format::q8, d, g), 0u) << d << " " << g;
    EXPECT_EQ(heed::quant::row_bytes(format::q4, d, g), 0u) << d << " " << g;
  }
  EXPECT_TRUE(heed::quant::valid_group(96, 12));
  EXPECT_TRUE(heed::quant::valid_group(96, 48));
  EXPECT_TRUE(heed::quant::valid_group(80, 10));
  EXPECT_FALSE(heed::quant::valid_group(0, 8));
}

// Exact values: one q8 group with max |x| = 127 has scale 1, so q is x rounded half to even.
TEST(QuantQ8, LayoutAndRoundingOfAKnownGroup) {
  const std::vector<float> x = {127.f, -127.f, 63.5f, 62.5f, -0.5f, 1.5f, -2.5f, 0.f};
  const auto row = quantize(format::q8, x, 8);
  ASSERT_EQ(row.size(), 10u);
  const int expect[8] = {127, -127, 64, 62, 0, 2, -2, 0};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(static_cast<std::int8_t>(row[i]), expect[i]) << i;
  EXPECT_EQ(f16_at(row, 8), 1.f);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(heed::quant::dequantize_value(format::q8, row.data(), 8, 8, i), float(expect[i]));
}

// One q4 group 0, 1, ..., 15 (scale 1, min 0): byte b holds value b and value b + 8.
TEST(QuantQ4, NibbleLayoutOfAKnownGroup) {
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[i] = float(i);
  const auto row = quantize(format::q4, x, 16);
  ASSERT_EQ(row.size(), 8u + 4u);
  for (int b = 0; b < 8; ++b) {
    EXPECT_EQ(row[b] & 0xf, b) << b;
    EXPECT_EQ(row[b] >> 4, b + 8) << b;
  }
  EXPECT_EQ(f16_at(row, 8), 1.f);   // scale
  EXPECT_EQ(f16_at(row, 10), 0.f);  // min
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(heed::quant::dequantize_value(format::q4, row.data(), 16, 16, i), float(i));
}

TEST(QuantQ8, ZeroAndConstantGroups) {
  std::vector<float> x(64, 0.f);
  for (int i = 32; i < 64; ++i) x[i] = -3.25f;
  const auto row = quantize(format::q8, x, 32);
  EXPECT_EQ(f16_at(row, 64), 0.f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(row[i], 0u);
  const float s = f16_at(row, 66);
  EXPECT_EQ(s, heed::to_float(heed::to_f16(3.25f / 127.f)));
  std::vector<float> y(64);
  ASSERT_EQ(heed::quant::dequantize_row(format::q8, row.data(), 64, 32, y.data()), status::ok);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.f);
  for (int i = 32; i < 64; ++i) {
    EXPECT_EQ(static_cast<std::int8_t>(row[i]), -127);
    EXPECT_NEAR(y[i], -3.25, 3.25 * 1e-3);
  }
}

TEST(QuantQ4, ConstantGroupStoresItsValueAsTheOffset) {
  std::vector<float> x(32, 0.3f);
  const auto row = quantize(format::q4, x, 32);
  EXPECT_EQ(f16_at(row, 16), 0.f);  // scale
  for (int b = 0; b < 16; ++b) EXPECT_EQ(row[b], 0u);
  std::vector<float> y(32);
  ASSERT_EQ(heed::quant::dequantize_row(format::q4, row.data(), 32, 32, y.data()), status::ok);
  for (float v : y) EXPECT_EQ(v, heed::to_float(heed::to_f16(0.3f)));
}

// Tiny groups: the f16 scale underflows to 0 and the group dequantizes to 0 (documented).
TEST(QuantQ8, ScaleUnderflowGivesZeros) {
  std::vector<float> x(8, 1e-7f);
  x[3] = -2e-7f;
  const auto row = quantize(format::q8, x, 8);
  EXPECT_EQ(f16_at(row, 8), 0.f);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(heed::quant::dequantize_value(format::q8, row.data(), 8, 8, i), 0.f);
}

// Random rows of every specialized head dim and group: the error of each value against the
// float64 input is at most half a step of its group (plus f32 rounding), the extremes of a group
// map to the ends of the code range, and dequantize_row agrees with dequantize_value.
TEST(QuantRoundTrip, ErrorWithinHalfAStepForEveryShape) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (std::int64_t d : {8, 16, 64, 80, 96, 128, 256}) {
    for (int g = 8; g <= d; g += 2) {
      if (!heed::quant::valid_group(d, g)) continue;
      for (format f : {format::q8, format::q4}) {
        std::vector<float> x(static_cast<std::size_t>(d));
        for (auto& v : x) v = nd(rng) * (f == format::q8 ? 4.f : 1.f);
        x[0] = 40.f;  // an outlier channel
        const auto row = quantize(f, x, g);
        std::vector<float> y(x.size());
        ASSERT_EQ(heed::quant::dequantize_row(f, row.data(), d, g, y.data()), status::ok);
        for (std::int64_t k = 0, grp = 0; k < d; k += g, ++grp) {
          double lo = x[k], hi = x[k], a = 0;
          for (std::int64_t i = k; i < k + g; ++i) {
            lo = std::min<double>(lo, x[i]);
            hi = std::max<double>(hi, x[i]);
            a = std::max<double>(a, std::fabs(x[i]));
          }
          const double s = f16_at(row, heed::quant::scales_offset(f, d) + 2 * grp);
          const double want_s = f == format::q8 ? a / 127 : (hi - lo) / 15;
          EXPECT_NEAR(s, want_s, want_s * 1e-3 + 1e-7);
          // q4's offset is the f16 minimum: its rounding (2^-11 relative) adds to the bound.
          const double slack = f == format::q8 ? 0 : std::fabs(lo) * std::ldexp(1.0, -11);
          for (std::int64_t i = k; i < k + g; ++i) {
            EXPECT_LE(std::fabs(double(y[i]) - x[i]), 0.5 * s * (1 + 1e-5) + slack + 1e-6)
                << heed::dtype_name(f) << " d=" << d << " g=" << g << " i=" << i;
            EXPECT_EQ(y[i], heed::quant::dequantize_value(f, row.data(), d, g, i));
          }
        }
        if (f == format::q8) {
          EXPECT_EQ(static_cast<std::int8_t>(row[0]), 127);
        }
      }
    }
  }
}

TEST(QuantRoundTrip, F16AndBf16InputQuantizeAsTheirF32Values) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  const std::int64_t d = 128;
  std::vector<heed::f16> h(d);
  std::vector<heed::bf16> b(d);
  std::vector<float> xh(d), xb(d);
  for (std::int64_t i = 0; i < d; ++i) {
    const float v = nd(rng);
    h[i] = heed::to_f16(v);
    b[i] = heed::to_bf16(v);
    xh[i] = heed::to_float(h[i]);
    xb[i] = heed::to_float(b[i]);
  }
  for (format f : {format::q8, format::q4}) {
    std::vector<std::uint8_t> rh(heed::quant::row_bytes(f, d, 32)), rb(rh.size());
    ASSERT_EQ(heed::quant::quantize_row(f, h.data(), d, 32, rh.data()), status::ok);
    ASSERT_EQ(heed::quant::quantize_row(f, b.data(), d, 32, rb.data()), status::ok);
    EXPECT_EQ(rh, quantize(f, xh, 32));
    EXPECT_EQ(rb, quantize(f, xb, 32));
  }
}

TEST(QuantErrors, BadInputIsRejectedAndTheOutputUntouched) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (format f : {format::q8, format::q4}) {
    for (float bad : {nan, inf, -inf}) {
      std::vector<float> x(64, 1.f);
      x[40] = bad;
      std::vector<std::uint8_t> row(heed::quant::row_bytes(f, 64, 32), 0xab);
      EXPECT_EQ(heed::quant::quantize_row(f, x.data(), 64, 32, row.data()),
                status::invalid_argument);
      for (auto byte : row) EXPECT_EQ(byte, 0xab);
    }
    std::vector<float> x(64, 1.f);
    std::vector<std::uint8_t> row(heed::quant::row_bytes(f, 64, 32), 0xab);
    EXPECT_EQ(heed::quant::quantize_row(f, x.data(), 64, 12, row.data()), status::invalid_argument);
    EXPECT_EQ(heed::quant::quantize_row(f, x.data(), 64, 48, row.data()), status::invalid_argument);
    EXPECT_EQ(heed::quant::quantize_row(f, x.data(), 0, 8, row.data()), status::invalid_argument);
    EXPECT_EQ(heed::quant::quantize_row(f, x.data(), 64, 32, nullptr), status::null_pointer);
    EXPECT_EQ(heed::quant::quantize_row<float>(f, nullptr, 64, 32, row.data()),
              status::null_pointer);
    EXPECT_EQ(heed::quant::dequantize_row(f, row.data(), 64, 12, x.data()),
              status::invalid_argument);
    for (auto byte : row) EXPECT_EQ(byte, 0xab);
  }
  // A dtype that is not a quantized format.
  {
    std::vector<float> x(64, 1.f), y(64, -1.f);
    std::vector<std::uint8_t> row(256, 0xab);
    EXPECT_EQ(heed::quant::row_bytes(heed::dtype::f16, 64, 32), 0u);
    EXPECT_EQ(heed::quant::quantize_row(heed::dtype::f16, x.data(), 64, 32, row.data()),
              status::unsupported_dtype);
    EXPECT_EQ(heed::quant::dequantize_row(heed::dtype::f32, row.data(), 64, 32, y.data()),
              status::unsupported_dtype);
    for (auto byte : row) EXPECT_EQ(byte, 0xab);
    for (float v : y) EXPECT_EQ(v, -1.f);
  }
  // Out of the f16 range: q4's offset beyond 65504, q8's scale beyond 65504 (|x| > 127 * 65504).
  std::vector<float> x(32, 1.f);
  std::vector<std::uint8_t> row(heed::quant::row_bytes(format::q8, 32, 32), 0xab);
  x[5] = 70000.f;
  EXPECT_EQ(heed::quant::quantize_row(format::q4, x.data(), 32, 32, row.data()),
            status::invalid_argument);
  EXPECT_EQ(heed::quant::quantize_row(format::q8, x.data(), 32, 32, row.data()), status::ok);
  x[5] = 1e7f;
  EXPECT_EQ(heed::quant::quantize_row(format::q8, x.data(), 32, 32, row.data()),
            status::invalid_argument);
}

}  // namespace

// The normalized Hadamard rotation: against H_d / sqrt(d) built by the Sylvester recursion in
// float64, dot products kept, twice gives the row back, bad arguments refused.
TEST(QuantRotation, MatchesTheMatrixAndKeepsDotProducts) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (std::int64_t d : {2, 8, 64, 128, 256}) {
    // H[i][j] = (-1)^popcount(i & j) / sqrt(d)
    std::vector<float> x(std::size_t(3 * (d + 5))), y;
    for (auto& e : x) e = nd(rng);
    y = x;
    ASSERT_EQ(heed::quant::hadamard_rotate(y.data(), 3, d, d + 5), status::ok);
    for (int r = 0; r < 3; ++r) {
      const float* a = x.data() + r * (d + 5);
      const float* b = y.data() + r * (d + 5);
      for (std::int64_t i = 0; i < d; ++i) {
        double want = 0;
        for (std::int64_t j = 0; j < d; ++j)
          want += (__builtin_popcountll(std::uint64_t(i & j)) % 2 ? -1.0 : 1.0) * a[j];
        want /= std::sqrt(double(d));
        EXPECT_NEAR(b[i], want, 1e-5 * (1 + std::fabs(want))) << d << " " << i;
      }
      for (std::int64_t i = d; i < d + 5; ++i) EXPECT_EQ(b[i], a[i]);  // the stride's gap
    }
    // q.k is kept, and the rotation is its own inverse.
    double before = 0, after = 0;
    for (std::int64_t i = 0; i < d; ++i) {
      before += double(x[std::size_t(i)]) * x[std::size_t(d + 5 + i)];
      after += double(y[std::size_t(i)]) * y[std::size_t(d + 5 + i)];
    }
    EXPECT_NEAR(after, before, 1e-5 * d);
    ASSERT_EQ(heed::quant::hadamard_rotate(y.data(), 3, d, d + 5), status::ok);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-5f);
  }
  std::vector<float> z(64);
  EXPECT_EQ(heed::quant::hadamard_rotate(z.data(), 1, 48, 48), status::invalid_argument);
  EXPECT_EQ(heed::quant::hadamard_rotate(z.data(), 1, 32, 16), status::invalid_argument);
  EXPECT_EQ(heed::quant::hadamard_rotate(nullptr, 1, 32, 32), status::null_pointer);
  EXPECT_FALSE(heed::quant::rotatable(1));
  EXPECT_TRUE(heed::quant::rotatable(8));
}
