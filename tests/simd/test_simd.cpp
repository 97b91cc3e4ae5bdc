// SIMD pieces for the default arch (the compiled ISAs are covered through the kernel tests):
// load_as_float / convert_row for f16 and bf16 against the scalar conversions, fast_exp2 /
// fast_exp / fast_tanh relative error bounds, soft_cap's absolute error on sweeps of inputs,
// horizontal reductions (haddp lane order), the column loads of quantized rows (kv_row.hpp)
// against quant::dequantize_value.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "heed/core/dtype.hpp"
#include "heed/quant/quantize.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/convert.hpp"
#include "heed/simd/kv_row.hpp"
#include "heed/simd/math.hpp"
#include "heed/simd/reduce.hpp"

namespace {

using Arch = xsimd::default_arch;
using B = xsimd::batch<float, Arch>;
constexpr std::size_t L = B::size;

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// f(x) on every lane of a batch filled with consecutive inputs.
template <class F>
std::vector<float> map_lanes(F f, const std::vector<float>& x) {
  std::vector<float> y(x.size());
  std::size_t i = 0;
  for (; i + L <= x.size(); i += L)
    f(B::load_unaligned(x.data() + i)).store_unaligned(y.data() + i);
  if (i < x.size()) {
    alignas(64) float in[L], out[L];
    for (std::size_t j = 0; j < L; ++j) in[j] = x[std::min(i + j, x.size() - 1)];
    f(B::load_aligned(in)).store_aligned(out);
    for (std::size_t j = 0; i + j < x.size(); ++j) y[i + j] = out[j];
  }
  return y;
}

TEST(SimdArch, IsaNamesAndTags) {
  EXPECT_STREQ(heed::isa_name(heed::isa::sse2), "sse2");
  EXPECT_STREQ(heed::isa_name(heed::isa::avx2), "avx2");
  EXPECT_STREQ(heed::isa_name(heed::isa::avx512), "avx512");
  EXPECT_STREQ(heed::isa_name(heed::isa::neon), "neon");
  EXPECT_STREQ(heed::isa_name(heed::isa::automatic), "automatic");
  static_assert(heed::simd::isa_of<heed::simd::sse2_arch>() == heed::isa::sse2, "");
  static_assert(heed::simd::isa_of<heed::simd::avx2_arch>() == heed::isa::avx2, "");
  static_assert(heed::simd::isa_of<heed::simd::avx512_arch>() == heed::isa::avx512, "");
  static_assert(heed::simd::isa_of<heed::simd::neon_arch>() == heed::isa::neon, "");
  static_assert(!heed::simd::is_avx2<heed::simd::avx512_arch>, "avx512 is not the avx2 path");
}

// Every half / bfloat pattern through the vector load matches the scalar conversion (NaN: NaN).
template <class T>
void check_load_every_pattern() {
  std::vector<T> src(65536 + L);
  for (std::uint32_t b = 0; b < 65536 + L; ++b) src[b].bits = static_cast<std::uint16_t>(b);
  alignas(64) float out[L];
  for (std::size_t b0 = 0; b0 < 65536; b0 += L) {
    heed::simd::load_as_float<Arch>(src.data() + b0).store_aligned(out);
    for (std::size_t j = 0; j < L; ++j) {
      const float want = heed::to_float(src[b0 + j]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(out[j])) << std::hex << src[b0 + j].bits;
      } else {
        ASSERT_EQ(float_bits(out[j]), float_bits(want)) << std::hex << src[b0 + j].bits;
      }
    }
  }
  // Unaligned source addresses.
  for (std::size_t off = 1; off < L; ++off) {
    heed::simd::load_as_float<Arch>(src.data() + 1000 + off).store_aligned(out);
    for (std::size_t j = 0; j < L; ++j) ASSERT_EQ(out[j], heed::to_float(src[1000 + off + j]));
  }
}

TEST(SimdConvert, LoadF16MatchesScalar) { check_load_every_pattern<heed::f16>(); }
TEST(SimdConvert, LoadBf16MatchesScalar) { check_load_every_pattern<heed::bf16>(); }

TEST(SimdConvert, LoadF32) {
  alignas(64) float src[2 * L], out[L];
  for (std::size_t i = 0; i < 2 * L; ++i) src[i] = 0.5f * float(i) - 3.f;
  heed::simd::load_as_float<Arch>(static_cast<const float*>(src + 1)).store_aligned(out);
  for (std::size_t j = 0; j < L; ++j) EXPECT_EQ(out[j], src[1 + j]);
}

template <class T>
void check_convert_row() {
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> dist(-100.f, 100.f);
  std::vector<T> src(4 * L + 8);
  for (auto& x : src) x = heed::from_float<T>(dist(rng));
  for (std::size_t off = 0; off < 3; ++off) {
    for (std::int64_t n = 0; n <= static_cast<std::int64_t>(3 * L + 3); ++n) {
      std::vector<float> dst(static_cast<std::size_t>(n) + 2, -1234.f);
      heed::simd::convert_row<Arch>(src.data() + off, dst.data() + 1, n);
      EXPECT_EQ(dst[0], -1234.f);
      EXPECT_EQ(dst[static_cast<std::size_t>(n) + 1], -1234.f) << "wrote past n = " << n;
      for (std::int64_t i = 0; i < n; ++i)
        ASSERT_EQ(dst[static_cast<std::size_t>(i) + 1], heed::to_float(src[off + std::size_t(i)]))
            << "n " << n << " i " << i;
    }
  }
}

// Every finite f16 pattern (the scales and offsets of quantized rows) converts exactly.
TEST(SimdKvRow, HalfBitsToFloatIsExactForEveryFinitePattern) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00u) == 0x7c00u) continue;
    const float want = heed::to_float(heed::f16{std::uint16_t(h)});
    ASSERT_EQ(float_bits(heed::simd::half_bits_to_float(std::uint16_t(h))), float_bits(want))
        << std::hex << h;
  }
}

// load_cols / load_col of q8 and q4 rows of group G (several head dims, rows at odd addresses)
// give the definition's values: bitwise, except SSE2's q4 (no FMA: u * scale + min rounded twice,
// within one f32 ulp of the fused result). Groups smaller than a vector (or, for q4, than two)
// take the value-by-value path. G = 0: the group g known at run time (the generic path's rows).
template <heed::dtype F, int G>
void check_quant_row_loads(int g = G) {
  using KV = heed::quant::row_byte<F, G>;
  constexpr bool fused = !std::is_same<Arch, xsimd::sse2>::value || F == heed::dtype::q8;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (std::int64_t d : {8, 16, 32, 64, 96, 128, 160, 256}) {
    if (!heed::quant::valid_group(d, g)) continue;
    const heed::simd::row_shape rs(d, g);
    const std::size_t rb = heed::quant::row_bytes(F, d, g);
    ASSERT_EQ(heed::simd::kv_storage<KV>::row_bytes(rs), std::int64_t(rb));
    std::vector<unsigned char> buf(rb + 3);
    std::vector<float> x(static_cast<std::size_t>(d));
    for (int rep = 0; rep < 20; ++rep) {
      for (auto& v : x) v = nd(rng) + (rep % 3 == 0 ? 5.f : 0.f);
      unsigned char* row = buf.data() + rep % 3;
      ASSERT_EQ(heed::quant::quantize_row(F, x.data(), d, g, row), heed::status::ok);
      const KV* r = reinterpret_cast<const KV*>(row);
      std::vector<float> whole(static_cast<std::size_t>(d));
      heed::simd::row_to_float<Arch>(r, whole.data(), rs);
      for (std::int64_t c = 0; c < d; ++c) {
        const float want = heed::quant::dequantize_value(F, row, d, g, c);
        EXPECT_EQ(heed::simd::load_col(r, c, rs), want);
        const float got = whole[static_cast<std::size_t>(c)];
        if (fused)
          ASSERT_EQ(float_bits(got), float_bits(want)) << "g " << g << " d " << d << " col " << c;
        else
          ASSERT_LE(std::fabs(got - want), std::fabs(want) * 1.2e-7f + 1e-30f)
              << "g " << g << " d " << d << " col " << c;
      }
      for (std::int64_t c = 0; c + std::int64_t(L) <= d; c += static_cast<std::int64_t>(L)) {
        alignas(64) float got[L];
        heed::simd::load_cols<Arch>(r, c, rs).store_aligned(got);
        for (std::size_t j = 0; j < L; ++j)
          ASSERT_EQ(float_bits(got[j]), float_bits(whole[static_cast<std::size_t>(c) + j]));
      }
    }
  }
}

TEST(SimdKvRow, Q8ColumnsMatchTheDefinition) {
  check_quant_row_loads<heed::dtype::q8, 8>();
  check_quant_row_loads<heed::dtype::q8, 16>();
  check_quant_row_loads<heed::dtype::q8, 32>();
  check_quant_row_loads<heed::dtype::q8, 64>();
  for (int g : {8, 16, 32, 64, 128, 256}) check_quant_row_loads<heed::dtype::q8, 0>(g);
}
TEST(SimdKvRow, Q4ColumnsMatchTheDefinition) {
  check_quant_row_loads<heed::dtype::q4, 8>();
  check_quant_row_loads<heed::dtype::q4, 16>();
  check_quant_row_loads<heed::dtype::q4, 32>();
  check_quant_row_loads<heed::dtype::q4, 64>();
  for (int g : {8, 16, 32, 64, 128, 256}) check_quant_row_loads<heed::dtype::q4, 0>(g);
}

TEST(SimdKvRow, RowBytes) {
  using Q8 = heed::quant::row_byte<heed::dtype::q8, 32>;
  using Q4 = heed::quant::row_byte<heed::dtype::q4, 32>;
  static_assert(heed::simd::kv_storage<Q8>::row_bytes(128) == 136, "");
  static_assert(heed::simd::kv_storage<Q4>::row_bytes(128) == 80, "");
  static_assert(heed::simd::kv_storage<heed::f16>::row_bytes(128) == 256, "");
  static_assert(sizeof(Q8) == 1 && sizeof(Q4) == 1, "strides of quantized rows count bytes");
  EXPECT_TRUE(heed::simd::kv_storage<Q8>::quantized);
  EXPECT_FALSE(heed::simd::kv_storage<float>::quantized);
}

TEST(SimdConvert, ConvertRowF16) { check_convert_row<heed::f16>(); }
TEST(SimdConvert, ConvertRowBf16) { check_convert_row<heed::bf16>(); }
TEST(SimdConvert, ConvertRowF32) { check_convert_row<float>(); }

// fast_exp2: relative error on [-126, 127]. math.hpp states below 1e-7 for the degree-5 minimax
// polynomial (9.2e-8 at its equioscillation points); fp32 Horner rounding adds up to about
// 1.2e-7 more, so the bound checked is 2.5e-7.
constexpr double kExp2RelTol = 2.5e-7;

TEST(SimdMath, FastExp2RelativeError) {
  std::vector<float> x;
  for (double v = -126.0; v <= 127.0; v += 1.0 / 1024 + 1e-7) x.push_back(static_cast<float>(v));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> any(-126.f, 127.f);
  for (int n = 0; n < 100000; ++n) x.push_back(any(rng));
  const std::vector<float> y = map_lanes([](B v) { return heed::simd::fast_exp2<Arch>(v); }, x);
  double worst = 0, worst_x = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp2(double(x[i]));
    const double rel = std::fabs(y[i] - want) / want;
    if (!(rel <= worst)) {
      worst = rel;
      worst_x = x[i];
    }
  }
  EXPECT_LE(worst, kExp2RelTol) << "at x = " << worst_x;
}

TEST(SimdMath, FastExp2SpecialInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.f,     1.f,    -1.f,   10.f,   -126.f, 127.f,
                          -126.5f, -127.f, -200.f, -1e30f, -inf};
  const std::vector<float> y = map_lanes([](B v) { return heed::simd::fast_exp2<Arch>(v); }, x);
  EXPECT_EQ(y[0], 1.f);  // integers are exact: the polynomial is 1 at f = 0
  EXPECT_EQ(y[1], 2.f);
  EXPECT_EQ(y[2], 0.5f);
  EXPECT_EQ(y[3], 1024.f);
  EXPECT_EQ(y[4], std::ldexp(1.f, -126));
  EXPECT_EQ(y[5], std::ldexp(1.f, 127));
  for (std::size_t i = 6; i < x.size(); ++i) EXPECT_EQ(y[i], 0.f) << "x = " << x[i];
  // Every integer in range is exact.
  std::vector<float> ints;
  for (int n = -126; n <= 127; ++n) ints.push_back(float(n));
  const std::vector<float> yi = map_lanes([](B v) { return heed::simd::fast_exp2<Arch>(v); }, ints);
  for (std::size_t i = 0; i < ints.size(); ++i) EXPECT_EQ(yi[i], std::ldexp(1.f, int(ints[i])));
}

// fast_exp(x) = fast_exp2(x log2 e): the fp32 product x * log2e adds a relative error of up to
// |x| 2^-24 (plus the rounding of the constant), on top of exp2's.
TEST(SimdMath, FastExpRelativeError) {
  std::vector<float> x;
  for (double v = -87.0; v <= 88.0; v += 1.0 / 512 + 1e-7) x.push_back(static_cast<float>(v));
  const std::vector<float> y = map_lanes([](B v) { return heed::simd::fast_exp<Arch>(v); }, x);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(double(x[i]));
    const double tol = kExp2RelTol + 1.5 * std::fabs(x[i]) * std::ldexp(1.0, -24);
    ASSERT_LE(std::fabs(y[i] - want) / want, tol) << "x = " << x[i];
  }
}

// fast_tanh: "accurate to a few ulp of 1". Checked: absolute error <= 2e-7 (about 2 ulp of 1)
// and relative error <= 1e-6 everywhere (the small-|x| series keeps tiny inputs accurate);
// odd symmetry exact; saturates to +-1.
TEST(SimdMath, FastTanhError) {
  std::vector<float> x;
  for (double v = -20.0; v <= 20.0; v += 1.0 / 4096 + 1e-8) x.push_back(static_cast<float>(v));
  for (int e = -40; e <= 0; ++e) {
    x.push_back(std::ldexp(1.f, e));
    x.push_back(std::ldexp(1.3f, e));
  }
  x.push_back(0.0625f);
  x.push_back(std::nextafter(0.0625f, 0.f));
  const std::vector<float> y = map_lanes([](B v) { return heed::simd::fast_tanh<Arch>(v); }, x);
  std::vector<float> neg(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) neg[i] = -x[i];
  const std::vector<float> yn = map_lanes([](B v) { return heed::simd::fast_tanh<Arch>(v); }, neg);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double want = std::tanh(double(x[i]));
    const double err = std::fabs(y[i] - want);
    ASSERT_LE(err, 2e-7) << "x = " << x[i];
    if (want != 0.0) {
      ASSERT_LE(err / std::fabs(want), 1e-6) << "x = " << x[i];
    }
    ASSERT_EQ(yn[i], -y[i]) << "x = " << x[i];
  }
  const std::vector<float> big =
      map_lanes([](B v) { return heed::simd::fast_tanh<Arch>(v); }, {30.f, -30.f, 1e6f, 0.f});
  EXPECT_EQ(big[0], 1.f);
  EXPECT_EQ(big[1], -1.f);
  EXPECT_EQ(big[2], 1.f);
  EXPECT_EQ(big[3], 0.f);
}

// soft_cap(v, c) = c tanh(v / c): absolute error <= 6e-7 c on sweeps that run through both of
// its forms (all lanes below 0.625 c: the polynomial; any lane above: the exp2 form), for caps
// on both sides of the 1/64 cut-off; lanes of mixed magnitude; saturation to +-c.
TEST(SimdMath, SoftCapError) {
  for (const float c : {0.01f, 1.f, 30.f, 50.f * heed::simd::log2e, 1000.f}) {
    std::vector<float> x;
    for (double t = -40.0; t <= 40.0; t += 1.0 / 2048 + 1e-8) x.push_back(float(t * c));
    for (int e = -40; e <= 0; ++e) {
      x.push_back(std::ldexp(c, e));
      x.push_back(-std::ldexp(1.3f * c, e));
    }
    std::vector<float> mixed;  // one large lane in every batch forces the general form
    for (std::size_t i = 0; i < 4096; ++i) mixed.push_back(i % L == 3 ? 5.f * c : x[i * 7]);
    x.insert(x.end(), mixed.begin(), mixed.end());
    const std::vector<float> y =
        map_lanes([c](B v) { return heed::simd::soft_cap<Arch>(v, c); }, x);
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double err = std::fabs(y[i] - c * std::tanh(double(x[i]) / c)) / c;
      worst = std::max(worst, err);
      ASSERT_LE(err, 6e-7) << "c = " << c << ", x = " << x[i];
    }
    EXPECT_GT(worst, 0.0);  // the check compares real values
    const std::vector<float> big = map_lanes([c](B v) { return heed::simd::soft_cap<Arch>(v, c); },
                                             {100.f * c, -100.f * c, 1e30f});
    EXPECT_NEAR(big[0], c, 6e-7 * c);
    EXPECT_NEAR(big[1], -c, 6e-7 * c);
    EXPECT_NEAR(big[2], c, 6e-7 * c);
  }
}

TEST(SimdReduce, SumAndMax) {
  alignas(64) float v[L];
  double sum = 0;
  for (std::size_t i = 0; i < L; ++i) {
    v[i] = float(i) * 1.5f - 2.f;
    sum += v[i];
  }
  EXPECT_EQ(heed::simd::hsum<Arch>(B::load_aligned(v)), float(sum));
  EXPECT_EQ(heed::simd::hmax<Arch>(B::load_aligned(v)), v[L - 1]);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < L; ++i) v[i] = ninf;
  EXPECT_EQ(heed::simd::hmax<Arch>(B::load_aligned(v)), ninf);
  v[L / 2] = -5.f;
  EXPECT_EQ(heed::simd::hmax<Arch>(B::load_aligned(v)), -5.f);
}

// haddp: lane i is the sum of row i, in order, on the arch this file is built for (heed_tests
// builds it for the baseline, heed_tests_native for the host's best: the AVX-512 tree).
TEST(SimdReduce, TransposingSumKeepsLaneOrder) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int round = 0; round < 20; ++round) {
    alignas(64) float v[L][L];
    B rows[L];
    double want[L];
    for (std::size_t i = 0; i < L; ++i) {
      want[i] = 0;
      // Row i sums to about 1000 * i, so a lane holding another row's sum is far off.
      for (std::size_t l = 0; l < L; ++l) {
        v[i][l] = 1000.f * float(i) / float(L) + u(rng);
        want[i] += v[i][l];
      }
      rows[i] = B::load_aligned(v[i]);
    }
    alignas(64) float got[L];
    heed::simd::haddp<Arch>(rows).store_aligned(got);
    for (std::size_t i = 0; i < L; ++i)
      EXPECT_NEAR(got[i], want[i], 1e-6 * (std::abs(want[i]) + 16)) << "lane " << i;
  }
}

}  // namespace
