// LagKV scores against the float64 reference (tests/reference/naive_scores.hpp).
// Tolerance: 1e-5 relative per score (5e-5 when the follower has under 4 tokens) (f32 min-max
// normalization and std of O(1) values, then a softmax); +inf exactly where the reference has it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "heed/scoring/lagkv.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::status;

struct lag_case {
  std::int64_t lk, hkv, d, n_sink, lag;
  dtype tk, tv;
  float eps;
};

void PrintTo(const lag_case& c, std::ostream* os) {
  *os << "lk " << c.lk << " hkv " << c.hkv << " d " << c.d << " sink " << c.n_sink << " lag "
      << c.lag << " " << heed::dtype_name(c.tk) << "/" << heed::dtype_name(c.tv) << " eps "
      << c.eps;
}

class ScoreLagKV : public ::testing::TestWithParam<lag_case> {};

TEST_P(ScoreLagKV, MatchesReference) {
  const lag_case c = GetParam();
  heed_ref::stored_kv k(c.lk, c.hkv, c.d, c.tk, 21, /*head_major=*/true, 0, 0.2, 1.5);
  heed_ref::stored_kv v(c.lk, c.hkv, c.d, c.tv, 22, false, 4);
  heed::lagkv_options opt;
  opt.n_sink = c.n_sink;
  opt.lag = c.lag;
  opt.eps = c.eps;
  std::vector<char> ws(heed::lagkv_workspace_size(c.d, opt));
  std::vector<float> out(std::size_t(c.hkv * c.lk));
  ASSERT_EQ(heed::lagkv_scores(k.view, v.view, opt, out.data(), 0, {ws.data(), ws.size()}),
            status::ok);
  const auto ref = heed_ref::lagkv(k.ref, v.ref, c.n_sink, c.lag, c.eps);
  std::int64_t finite = 0;
  for (std::int64_t h = 0; h < c.hkv; ++h) {
    double sum = 0;  // over the scored partitions: each contributes (1 + 1) / 2
    for (std::int64_t j = 0; j < c.lk; ++j) {
      const double r = ref[std::size_t(h * c.lk + j)];
      const float g = out[std::size_t(h * c.lk + j)];
      if (std::isinf(r)) {
        ASSERT_TRUE(std::isinf(g) && g > 0) << "kv head " << h << " key " << j;
        continue;
      }
      ++finite;
      sum += g;
      // A follower of a few tokens has narrow channel ranges: x' grows and so does the f32
      // error of the std (relative 1e-7 of its size): allow 5e-5 there.
      const std::int64_t part_end = c.n_sink + ((j - c.n_sink) / c.lag + 1) * c.lag;
      const double rel = c.lk - part_end < 4 ? 5e-5 : 1e-5;
      ASSERT_NEAR(g, r, rel * r + 1e-9) << "kv head " << h << " key " << j;
    }
    const std::int64_t scored =
        c.lk > c.n_sink ? (c.lk - c.n_sink - 1) / c.lag : 0;  // partitions with a follower
    EXPECT_NEAR(sum, double(scored), 1e-4 * double(scored + 1));
  }
  if (c.lk > c.n_sink + c.lag) {
    EXPECT_GT(finite, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ScoreLagKV,
    ::testing::Values(lag_case{1, 4, 64, 4, 128, dtype::f32, dtype::f32, 1e-6f},
                      lag_case{5, 4, 64, 4, 128, dtype::f16, dtype::f16, 1e-6f},
                      lag_case{100, 2, 128, 4, 128, dtype::bf16, dtype::bf16, 1e-6f},
                      lag_case{100, 2, 40, 4, 16, dtype::f32, dtype::f16, 1e-6f},
                      lag_case{100, 4, 64, 0, 7, dtype::f32, dtype::f32, 1e-6f},
                      lag_case{103, 2, 40, 2, 10, dtype::f16, dtype::f32, 0.5f},  // 1-token tail
                      lag_case{1037, 4, 128, 4, 128, dtype::f16, dtype::f16, 1e-6f},
                      lag_case{1037, 2, 64, 4, 128, dtype::bf16, dtype::f32, 1e-6f},
                      lag_case{4100, 2, 40, 4, 128, dtype::f32, dtype::bf16, 1e-6f},
                      lag_case{4100, 1, 64, 4, 64, dtype::f32, dtype::f32, 1e-6f},
                      // Quantized K / V rows (read dequantized, as in a quantized cache).
                      lag_case{100, 2, 128, 4, 128, dtype::q8, dtype::q4, 1e-6f},
                      lag_case{1037, 2, 40, 4, 64, dtype::q4, dtype::q8, 1e-6f}));

// A hand-built partition: the follower spans [0, 1] on every channel, so x' = x. The token whose
// channels are spread (std 0.5) beats the constant one (std 0).
TEST(ScoreLagKVUnit, HandComputed) {
  const std::int64_t d = 2;
  // n_sink 1, lag 2: sink | tokens 1, 2 | follower 3, 4 | last 5, 6
  std::vector<float> k = {9, 9, 0, 1, 0.5f, 0.5f, 0, 1, 1, 0, 7, 7, 3, 3};
  heed::lagkv_options opt;
  opt.n_sink = 1;
  opt.lag = 2;
  opt.eps = 1e-6f;
  std::vector<char> ws(heed::lagkv_workspace_size(d, opt));
  std::vector<float> out(7);
  const auto kv = heed::make_view(k.data(), 7, 1, d);
  ASSERT_EQ(heed::lagkv_scores(kv, kv, opt, out.data(), 0, {ws.data(), ws.size()}), status::ok);
  EXPECT_TRUE(std::isinf(out[0]));
  const double e = std::exp(0.5 / (1 + 1e-6)), p1 = e / (e + 1.0);
  EXPECT_NEAR(out[1], p1, 1e-6);
  EXPECT_NEAR(out[2], 1.0 - p1, 1e-6);
  // tokens 3, 4 are normalized by tokens 5, 6 (range 3..7 on both channels)
  for (int j = 5; j < 7; ++j) EXPECT_TRUE(std::isinf(out[std::size_t(j)]));
  EXPECT_NEAR(out[3] + out[4], 1.0, 1e-6);
}

TEST(ScoreLagKVErrors, BadInputs) {
  heed_ref::stored_kv k(40, 2, 16, dtype::f32, 1), v(40, 2, 16, dtype::bf16, 2);
  heed::lagkv_options opt;
  opt.lag = 8;
  std::vector<char> ws(heed::lagkv_workspace_size(16, opt));
  const heed::workspace w{ws.data(), ws.size()};
  std::vector<float> out(80);
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, opt, out.data(), 0, w), status::ok);
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, opt, nullptr, 0, w), status::null_pointer);
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, opt, out.data(), 39, w), status::invalid_stride);
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, opt, out.data(), 0, {ws.data(), 8}),
            status::workspace_too_small);
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, opt, out.data(), 0, {nullptr, ws.size()}),
            status::null_pointer);
  heed_ref::stored_kv v2(39, 2, 16, dtype::f32, 2);
  EXPECT_EQ(heed::lagkv_scores(k.view, v2.view, opt, out.data(), 0, w), status::shape_mismatch);
  auto o = opt;
  o.lag = 0;
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, o, out.data(), 0, w), status::invalid_argument);
  o = opt;
  o.n_sink = -1;
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, o, out.data(), 0, w), status::invalid_argument);
  o = opt;
  o.eps = 0.f;
  EXPECT_EQ(heed::lagkv_scores(k.view, v.view, o, out.data(), 0, w), status::invalid_argument);
  auto bad = k.view;
  bad.head_stride = -16;
  EXPECT_EQ(heed::lagkv_scores(bad, v.view, opt, out.data(), 0, w), status::invalid_stride);
}

}  // namespace
