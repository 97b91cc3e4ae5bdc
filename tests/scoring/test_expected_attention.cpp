// Expected Attention against the float64 reference (tests/reference/naive_scores.hpp).
// Both ways of computing k^T Sigma k are covered: n >= d forms Sigma, n < d uses the centered
// queries.
// Tolerance: 2e-5 relative per score (f32 logits of magnitude ~1, a fast exp of 2e-7 relative
// error, then the softmax normalization), with an absolute floor of 1e-7 of the row maximum.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "heed/scoring/expected_attention.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::head_reduce;
using heed::status;

struct ea_case {
  std::int64_t lk, hq, hkv, d, n;
  dtype t;
  bool cov, weight;
  head_reduce reduce;
};

void PrintTo(const ea_case& c, std::ostream* os) {
  *os << "lk " << c.lk << " hq " << c.hq << " hkv " << c.hkv << " d " << c.d << " n " << c.n << " "
      << heed::dtype_name(c.t) << (c.cov ? " cov" : " mean") << (c.weight ? " |v|" : "")
      << (c.reduce == head_reduce::max ? " max" : " mean");
}

class ScoreExpectedAttention : public ::testing::TestWithParam<ea_case> {};

TEST_P(ScoreExpectedAttention, MatchesReference) {
  const ea_case c = GetParam();
  heed_ref::stored_q q(c.n, c.hq, c.d, 5, 0.3, 1.0);
  heed_ref::stored_kv k(c.lk, c.hkv, c.d, c.t, 6, /*head_major=*/c.lk % 2 == 1, 0);
  heed_ref::stored_kv v(c.lk, c.hkv, c.d, c.t, 7, false, 3);
  heed::expected_attention_options opt;
  opt.use_covariance = c.cov;
  opt.weight_by_value_norm = c.weight;
  opt.reduce = c.reduce;
  std::vector<char> ws(heed::expected_attention_workspace_size(c.n, c.lk, c.d, opt));
  const std::int64_t stride = c.lk + 2;
  std::vector<float> out(std::size_t(c.hkv * stride), -3.f);
  ASSERT_EQ(heed::expected_attention_scores(q.view, k.view, v.view, opt, out.data(), stride,
                                            heed::workspace{ws.data(), ws.size()}),
            status::ok);
  const auto ref = heed_ref::expected_attention(q.ref, c.n, c.hq, k.ref, v.ref, 0.0, c.cov,
                                                c.weight, c.reduce == head_reduce::max);
  for (std::int64_t h = 0; h < c.hkv; ++h) {
    double top = 0;
    for (std::int64_t j = 0; j < c.lk; ++j) top = std::max(top, ref[std::size_t(h * c.lk + j)]);
    for (std::int64_t j = 0; j < c.lk; ++j) {
      const double r = ref[std::size_t(h * c.lk + j)];
      ASSERT_NEAR(out[std::size_t(h * stride + j)], r, 2e-5 * std::fabs(r) + 1e-7 * top)
          << "kv head " << h << " key " << j;
    }
    for (std::int64_t j = c.lk; j < stride; ++j) ASSERT_EQ(out[std::size_t(h * stride + j)], -3.f);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ScoreExpectedAttention,
    ::testing::Values(ea_case{1, 4, 4, 64, 8, dtype::f32, true, true, head_reduce::mean},
                      ea_case{5, 4, 4, 40, 1, dtype::f16, true, true, head_reduce::mean},
                      ea_case{100, 8, 2, 64, 16, dtype::bf16, true, true, head_reduce::max},
                      ea_case{100, 8, 2, 40, 3, dtype::f32, false, true, head_reduce::mean},
                      ea_case{1037, 4, 4, 128, 32, dtype::f16, true, false, head_reduce::mean},
                      ea_case{1037, 8, 2, 64, 200, dtype::f32, true, true, head_reduce::mean},
                      ea_case{100, 4, 4, 40, 40, dtype::f16, true, true, head_reduce::mean},
                      ea_case{100, 32, 8, 128, 16, dtype::bf16, true, true, head_reduce::max},
                      ea_case{4100, 8, 2, 40, 16, dtype::f32, true, true, head_reduce::mean},
                      ea_case{4100, 4, 4, 64, 4, dtype::bf16, false, false, head_reduce::max},
                      ea_case{100, 8, 2, 64, 16, dtype::q8, true, true, head_reduce::mean},
                      ea_case{1037, 4, 4, 40, 8, dtype::q4, true, true, head_reduce::max}));

// With one recent query Sigma is 0: the covariance option must not matter, and the scores are
// exactly the softmax of scale * q.k.
TEST(ScoreExpectedAttentionUnit, OneQueryIsPlainAttention) {
  heed_ref::stored_q q(1, 2, 16, 1);
  heed_ref::stored_kv k(9, 2, 16, dtype::f32, 2);
  heed::expected_attention_options opt;
  opt.weight_by_value_norm = false;
  opt.scale = 0.5f;
  std::vector<char> ws(heed::expected_attention_workspace_size(1, 9, 16, opt));
  std::vector<float> out(18);
  ASSERT_EQ(heed::expected_attention_scores(q.view, k.view, heed::tensor_view{}, opt, out.data(), 0,
                                            {ws.data(), ws.size()}),
            status::ok);
  for (int h = 0; h < 2; ++h) {
    heed_ref::vec z(9);
    for (int j = 0; j < 9; ++j) {
      double dot = 0;
      for (int c = 0; c < 16; ++c) dot += q.ref[std::size_t(h * 16 + c)] * k.ref.at(j, h, c);
      z[std::size_t(j)] = 0.5 * dot;
    }
    const auto p = heed_ref::softmax(z);
    double sum = 0;
    for (int j = 0; j < 9; ++j) {
      EXPECT_NEAR(out[std::size_t(h * 9 + j)], p[std::size_t(j)], 1e-6);
      sum += out[std::size_t(h * 9 + j)];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

// The covariance term favours keys along the queries' spread: two keys with the same mu.k, the
// one aligned with the variance direction must score higher.
TEST(ScoreExpectedAttentionUnit, CovarianceFavoursHighVarianceDirection) {
  const std::int64_t d = 4;
  std::vector<float> q = {1, 2, 0, 0, 1, -2, 0, 0};  // mean (1, 0, 0, 0), variance along axis 1
  std::vector<float> k = {0, 1, 0, 0, 0, 0, 1, 0};   // both orthogonal to mu
  heed::expected_attention_options opt;
  opt.weight_by_value_norm = false;
  std::vector<char> ws(heed::expected_attention_workspace_size(2, 2, d, opt));
  std::vector<float> out(2);
  ASSERT_EQ(heed::expected_attention_scores(heed::make_view(q.data(), 2, 1, d),
                                            heed::make_view(k.data(), 2, 1, d), {}, opt, out.data(),
                                            0, {ws.data(), ws.size()}),
            status::ok);
  // z0 = 4 / (2 * 4) = 0.5, z1 = 0
  EXPECT_NEAR(out[0], 1.0 / (1.0 + std::exp(-0.5)), 1e-6);
  EXPECT_GT(out[0], out[1]);
  opt.use_covariance = false;
  ASSERT_EQ(heed::expected_attention_scores(heed::make_view(q.data(), 2, 1, d),
                                            heed::make_view(k.data(), 2, 1, d), {}, opt, out.data(),
                                            0, {ws.data(), ws.size()}),
            status::ok);
  EXPECT_NEAR(out[0], 0.5, 1e-6);
  EXPECT_NEAR(out[1], 0.5, 1e-6);
}

TEST(ScoreExpectedAttentionErrors, BadInputs) {
  heed_ref::stored_q q(4, 4, 16, 1);
  heed_ref::stored_kv k(10, 2, 16, dtype::f16, 2), v(10, 2, 16, dtype::f16, 3);
  heed::expected_attention_options opt;
  std::vector<char> ws(heed::expected_attention_workspace_size(4, 10, 16, opt));
  const heed::workspace w{ws.data(), ws.size()};
  std::vector<float> out(20);
  auto run = [&](const heed::tensor_view& qq, const heed::tensor_view& kk,
                 const heed::tensor_view& vv, const heed::expected_attention_options& o, float* dst,
                 std::int64_t stride, heed::workspace wk) {
    return heed::expected_attention_scores(qq, kk, vv, o, dst, stride, wk);
  };
  EXPECT_EQ(run(q.view, k.view, v.view, opt, out.data(), 0, w), status::ok);
  // The size without the query count bounds every count.
  std::vector<char> any(heed::expected_attention_workspace_size(10, 16, opt));
  EXPECT_GE(any.size(), ws.size());
  EXPECT_EQ(run(q.view, k.view, v.view, opt, out.data(), 0, {any.data(), any.size()}), status::ok);
  EXPECT_EQ(run(q.view, k.view, v.view, opt, nullptr, 0, w), status::null_pointer);
  EXPECT_EQ(run(q.view, k.view, v.view, opt, out.data(), 9, w), status::invalid_stride);
  EXPECT_EQ(run(q.view, k.view, v.view, opt, out.data(), 0, {ws.data(), ws.size() - 1}),
            status::workspace_too_small);
  EXPECT_EQ(run(q.view, k.view, v.view, opt, out.data(), 0, {nullptr, ws.size()}),
            status::null_pointer);
  EXPECT_EQ(run(k.view, k.view, v.view, opt, out.data(), 0, w), status::unsupported_dtype);
  heed_ref::stored_q q3(4, 3, 16, 1);  // 3 query heads over 2 KV heads
  EXPECT_EQ(run(q3.view, k.view, v.view, opt, out.data(), 0, w), status::shape_mismatch);
  heed_ref::stored_q q8(4, 4, 8, 1);
  EXPECT_EQ(run(q8.view, k.view, v.view, opt, out.data(), 0, w), status::shape_mismatch);
  heed_ref::stored_kv v9(9, 2, 16, dtype::f16, 3);
  EXPECT_EQ(run(q.view, k.view, v9.view, opt, out.data(), 0, w), status::shape_mismatch);
  EXPECT_EQ(run(q.view, k.view, heed::tensor_view{}, opt, out.data(), 0, w),
            status::invalid_argument);  // v needed for the value weighting
  auto o2 = opt;
  o2.scale = -1.f;
  EXPECT_EQ(run(q.view, k.view, v.view, o2, out.data(), 0, w), status::invalid_argument);
  o2 = opt;
  o2.scale = NAN;
  EXPECT_EQ(run(q.view, k.view, v.view, o2, out.data(), 0, w), status::invalid_argument);
  o2 = opt;
  o2.reduce = static_cast<head_reduce>(5);
  EXPECT_EQ(run(q.view, k.view, v.view, o2, out.data(), 0, w), status::invalid_argument);
}

}  // namespace
