// Key / value norm scores against the float64 reference (tests/reference/naive_scores.hpp).
// Tolerance: 2e-6 relative (an f32 sum of d squares, then a square root).
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "heed/scoring/key_norm.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::status;

void expect_rel(const std::vector<float>& got, const heed_ref::vec& ref, std::int64_t heads,
                std::int64_t len, std::int64_t stride, double tol) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < len; ++j) {
      const double r = ref[std::size_t(h * len + j)];
      ASSERT_NEAR(got[std::size_t(h * stride + j)], r, tol * std::max(1.0, std::fabs(r)))
          << "head " << h << " key " << j;
    }
}

class ScoreKeyNorm
    : public ::testing::TestWithParam<std::tuple<dtype, std::int64_t, std::int64_t, bool>> {};

TEST_P(ScoreKeyNorm, MatchesReference) {
  const auto [t, len, d, head_major] = GetParam();
  const std::int64_t heads = 4, stride = len + 3;
  heed_ref::stored_kv k(len, heads, d, t, 11, head_major, head_major ? 0 : 5);
  std::vector<float> out(std::size_t(heads * stride), -7.f);
  ASSERT_EQ(heed::key_norm_scores(k.view, out.data(), stride), status::ok);
  expect_rel(out, heed_ref::key_norm(k.ref), heads, len, stride, 2e-6);
  for (std::int64_t h = 0; h < heads; ++h)  // the padding between heads is untouched
    for (std::int64_t j = len; j < stride; ++j) ASSERT_EQ(out[std::size_t(h * stride + j)], -7.f);

  std::vector<float> vn(std::size_t(heads * len));
  ASSERT_EQ(heed::value_norm_scores(k.view, vn.data()), status::ok);
  expect_rel(vn, heed_ref::value_norm(k.ref), heads, len, len, 2e-6);

  // weight_by_value_norm multiplies existing scores in place.
  std::vector<float> sc(std::size_t(heads * len));
  heed_ref::vec want(sc.size());
  const heed_ref::vec norms = heed_ref::value_norm(k.ref);
  for (std::size_t i = 0; i < sc.size(); ++i) {
    sc[i] = 0.5f + float(i % 7);
    want[i] = double(sc[i]) * norms[i];
  }
  ASSERT_EQ(heed::weight_by_value_norm(k.view, sc.data()), status::ok);
  expect_rel(sc, want, heads, len, len, 2e-6);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScoreKeyNorm,
                         ::testing::Combine(::testing::Values(dtype::f32, dtype::f16, dtype::bf16,
                                                              dtype::q8, dtype::q4),
                                            ::testing::Values(1, 5, 1037),
                                            ::testing::Values(64, 128, 40), ::testing::Bool()));

TEST(ScoreKeyNormArch, EveryCompiledArchAgrees) {
  heed_ref::stored_kv k(37, 2, 72, dtype::f16, 3);
  const auto ref = heed_ref::key_norm(k.ref);
  std::vector<float> out(std::size_t(2 * 37));
#if XSIMD_WITH_SSE2
  ASSERT_EQ(heed::key_norm_scores<xsimd::sse2>(k.view, out.data()), status::ok);
  expect_rel(out, ref, 2, 37, 37, 2e-6);
#endif
#if XSIMD_WITH_NEON64
  ASSERT_EQ(heed::key_norm_scores<heed::simd::neon_arch>(k.view, out.data()), status::ok);
  expect_rel(out, ref, 2, 37, 37, 2e-6);
#endif
#if XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
  ASSERT_EQ(heed::key_norm_scores<heed::simd::avx2_arch>(k.view, out.data()), status::ok);
  expect_rel(out, ref, 2, 37, 37, 2e-6);
#endif
}

TEST(ScoreKeyNormErrors, BadInputs) {
  heed_ref::stored_kv k(10, 2, 16, dtype::f32, 1);
  std::vector<float> out(40);
  EXPECT_EQ(heed::key_norm_scores(k.view, nullptr), status::null_pointer);
  EXPECT_EQ(heed::key_norm_scores(k.view, out.data(), 5), status::invalid_stride);
  EXPECT_EQ(heed::key_norm_scores(k.view, out.data(), -1), status::invalid_stride);
  auto bad = k.view;
  bad.data = nullptr;
  EXPECT_EQ(heed::value_norm_scores(bad, out.data()), status::null_pointer);
  bad = k.view;
  bad.dim = 0;
  EXPECT_EQ(heed::key_norm_scores(bad, out.data()), status::invalid_argument);
  bad = k.view;
  bad.type = static_cast<dtype>(7);
  EXPECT_EQ(heed::weight_by_value_norm(bad, out.data()), status::unsupported_dtype);
  bad = k.view;
  bad.seq_stride = 3;  // rows overlap
  EXPECT_EQ(heed::key_norm_scores(bad, out.data()), status::invalid_stride);
}

}  // namespace
