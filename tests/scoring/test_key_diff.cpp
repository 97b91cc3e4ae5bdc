// KeyDiff scores against a float64 reference of the definition (heed/scoring/key_diff.hpp):
// every K/V type, both layouts, odd head dims, head strides in the output, zero keys; errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "heed/scoring/key_diff.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::status;

// score_j = -(k_j . a) / (max(|k_j|, eps) max(|a|, eps)), a = mean_j k_j / max(|k_j|, eps).
heed_ref::vec key_diff_ref(const heed_ref::kv_tensor& k) {
  const double eps = 1e-8;
  heed_ref::vec out(std::size_t(k.heads * k.len));
  for (std::int64_t h = 0; h < k.heads; ++h) {
    std::vector<double> a(std::size_t(k.d), 0.0);
    for (std::int64_t j = 0; j < k.len; ++j) {
      const double n = std::max(heed_ref::norm_of(k, j, h), eps);
      for (std::int64_t c = 0; c < k.d; ++c) a[std::size_t(c)] += k.at(j, h, c) / n;
    }
    double an = 0;
    for (double& x : a) {
      x /= double(k.len);
      an += x * x;
    }
    an = std::max(std::sqrt(an), eps);
    for (std::int64_t j = 0; j < k.len; ++j) {
      double dot = 0;
      for (std::int64_t c = 0; c < k.d; ++c) dot += k.at(j, h, c) * a[std::size_t(c)];
      out[std::size_t(h * k.len + j)] = -dot / (std::max(heed_ref::norm_of(k, j, h), eps) * an);
    }
  }
  return out;
}

std::vector<char> scratch(std::int64_t d) {
  return std::vector<char>(heed::key_diff_workspace_size(d));
}

class ScoreKeyDiff
    : public ::testing::TestWithParam<std::tuple<dtype, std::int64_t, std::int64_t, bool>> {};

TEST_P(ScoreKeyDiff, MatchesReference) {
  const auto [t, len, d, head_major] = GetParam();
  const std::int64_t heads = 3, stride = len + 2;
  // A common direction (mean 0.7) plus noise: the scores spread over [-1, 0).
  heed_ref::stored_kv k(len, heads, d, t, 19, head_major, head_major ? 0 : 3, 0.7, 1.0);
  std::vector<float> out(std::size_t(heads * stride), 5.f);
  auto ws = scratch(d);
  ASSERT_EQ(heed::key_diff_scores(k.view, out.data(), stride, {ws.data(), ws.size()}), status::ok);
  const heed_ref::vec ref = key_diff_ref(k.ref);
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t j = 0; j < len; ++j)
      ASSERT_NEAR(out[std::size_t(h * stride + j)], ref[std::size_t(h * len + j)], 2e-5)
          << "head " << h << " key " << j;
    for (std::int64_t j = len; j < stride; ++j)  // the padding between heads is untouched
      ASSERT_EQ(out[std::size_t(h * stride + j)], 5.f);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScoreKeyDiff,
                         ::testing::Combine(::testing::Values(dtype::f32, dtype::f16, dtype::bf16,
                                                              dtype::q8, dtype::q4),
                                            ::testing::Values(1, 6, 777),
                                            ::testing::Values(8, 40, 128), ::testing::Bool()));

TEST(ScoreKeyDiffCases, OddDimsZeroKeysAndOrder) {
  // d = 13 (vector body and scalar tail), a zero key (score 0, not NaN), and the key opposite to
  // all others scoring highest (kept first).
  const std::int64_t len = 9, d = 13;
  heed_ref::kv_tensor ref;
  ref.len = len;
  ref.heads = 1;
  ref.d = d;
  ref.x.assign(std::size_t(len * d), 0.0);
  std::vector<float> k(std::size_t(len * d), 0.f);
  for (std::int64_t j = 0; j < len; ++j)
    for (std::int64_t c = 0; c < d; ++c) {
      float v = 1.f + 0.05f * float((j * 7 + c * 3) % 5);
      if (j == 4) v = 0.f;   // zero key
      if (j == 6) v = -2.f;  // opposite direction
      k[std::size_t(j * d + c)] = v;
      ref.x[std::size_t(j * d + c)] = v;
    }
  const auto view = heed::make_view(k.data(), len, 1, d);
  std::vector<float> out(static_cast<std::size_t>(len));
  auto ws = scratch(d);
  ASSERT_EQ(heed::key_diff_scores(view, out.data(), 0, {ws.data(), ws.size()}), status::ok);
  const heed_ref::vec want = key_diff_ref(ref);
  for (std::int64_t j = 0; j < len; ++j)
    EXPECT_NEAR(out[std::size_t(j)], want[std::size_t(j)], 1e-6);
  EXPECT_EQ(out[4], 0.f);
  EXPECT_EQ(std::max_element(out.begin(), out.end()) - out.begin(), 6);
}

TEST(ScoreKeyDiffArch, EveryCompiledArchAgrees) {
  heed_ref::stored_kv k(37, 2, 72, dtype::f16, 3, false, 0, 0.5, 1.0);
  const auto ref = key_diff_ref(k.ref);
  std::vector<float> out(std::size_t(2 * 37));
  auto ws = scratch(72);
  const heed::workspace w{ws.data(), ws.size()};
  auto check = [&] {
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << i;
  };
#if XSIMD_WITH_SSE2
  ASSERT_EQ(heed::key_diff_scores<xsimd::sse2>(k.view, out.data(), 0, w), status::ok);
  check();
#endif
#if XSIMD_WITH_NEON64
  ASSERT_EQ(heed::key_diff_scores<heed::simd::neon_arch>(k.view, out.data(), 0, w), status::ok);
  check();
#endif
#if XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
  ASSERT_EQ(heed::key_diff_scores<heed::simd::avx2_arch>(k.view, out.data(), 0, w), status::ok);
  check();
#endif
}

TEST(ScoreKeyDiffErrors, BadInputs) {
  heed_ref::stored_kv k(10, 2, 16, dtype::f32, 1);
  std::vector<float> out(40);
  auto ws = scratch(16);
  const heed::workspace w{ws.data(), ws.size()};
  EXPECT_EQ(heed::key_diff_scores(k.view, nullptr, 0, w), status::null_pointer);
  EXPECT_EQ(heed::key_diff_scores(k.view, out.data(), 5, w), status::invalid_stride);
  EXPECT_EQ(heed::key_diff_scores(k.view, out.data(), 0, {ws.data(), ws.size() - 1}),
            status::workspace_too_small);
  EXPECT_EQ(heed::key_diff_scores(k.view, out.data(), 0, {nullptr, ws.size()}),
            status::null_pointer);
  auto bad = k.view;
  bad.type = static_cast<dtype>(7);
  EXPECT_EQ(heed::key_diff_scores(bad, out.data(), 0, w), status::unsupported_dtype);
  bad = k.view;
  bad.seq_stride = 3;  // rows overlap
  EXPECT_EQ(heed::key_diff_scores(bad, out.data(), 0, w), status::invalid_stride);
  EXPECT_EQ(heed::key_diff_workspace_size(-1), 0u);
}

}  // namespace
