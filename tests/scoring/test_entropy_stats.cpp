// Entropy statistics against the float64 reference (tests/reference/naive_scores.hpp).
// Tolerance: 1e-6 relative on the mean (summed in double, rounded to f32); min / max exact.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "heed/scoring/entropy_stats.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::status;

std::vector<float> random_entropy(std::int64_t hq, std::int64_t stride, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 8.f);
  std::vector<float> e(std::size_t(hq * stride));
  for (auto& x : e) x = u(rng);
  return e;
}

std::vector<float> head_row(const std::vector<float>& e, std::int64_t h, std::int64_t lq,
                            std::int64_t stride) {
  return std::vector<float>(e.begin() + h * stride, e.begin() + h * stride + lq);
}

class ScoreEntropyStats : public ::testing::TestWithParam<std::tuple<std::int64_t, std::int64_t>> {
};

TEST_P(ScoreEntropyStats, MatchesReference) {
  const auto [hq, lq] = GetParam();
  const std::int64_t stride = lq + 3;
  const auto e = random_entropy(hq, stride, 7);
  std::vector<float> mean(static_cast<std::size_t>(hq)), mn(mean.size()), mx(mean.size());
  ASSERT_EQ(heed::entropy_stats(e.data(), hq, lq, stride, mean.data(), mn.data(), mx.data()),
            status::ok);
  for (std::int64_t h = 0; h < hq; ++h) {
    const auto r = heed_ref::entropy_stats(head_row(e, h, lq, stride));
    EXPECT_NEAR(mean[std::size_t(h)], r.mean, 1e-6 * r.mean) << h;
    EXPECT_EQ(mn[std::size_t(h)], float(r.min)) << h;
    EXPECT_EQ(mx[std::size_t(h)], float(r.max)) << h;
  }
  // Any output may be skipped.
  std::vector<float> mean2(mean.size());
  ASSERT_EQ(heed::entropy_stats(e.data(), hq, lq, stride, mean2.data(), nullptr, nullptr),
            status::ok);
  EXPECT_EQ(mean2, mean);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScoreEntropyStats,
                         ::testing::Combine(::testing::Values(1, 4, 32),
                                            ::testing::Values(1, 5, 1037)));

TEST(ScoreEntropyStatsUnit, Bits) {
  EXPECT_NEAR(heed::nats_to_bits(std::log(2.f)), 1.f, 1e-7);
  EXPECT_NEAR(heed::nats_to_bits(std::log(1024.f)), 10.f, 1e-5);
  std::vector<float> x = {0.f, float(std::log(8.0)), float(std::log(3.0))};
  ASSERT_EQ(heed::nats_to_bits(x.data(), 3), status::ok);
  EXPECT_EQ(x[0], 0.f);
  EXPECT_NEAR(x[1], 3.0, 1e-6);
  EXPECT_NEAR(x[2], std::log2(3.0), 1e-6);
  EXPECT_EQ(heed::nats_to_bits(nullptr, 3), status::null_pointer);
  EXPECT_EQ(heed::nats_to_bits(nullptr, 0), status::ok);
  EXPECT_EQ(heed::nats_to_bits(x.data(), -1), status::invalid_argument);
}

// Over 3 layers, layer 1 fed in two chunks (chunked prefill): the merged statistics equal those
// of the concatenated rows.
TEST(ScoreEntropyStatsUnit, AccumulatorOverLayers) {
  const std::int64_t layers = 3, hq = 4, lq = 37, split = 15;
  std::vector<float> mean(std::size_t(layers * hq)), mn(mean.size()), mx(mean.size());
  std::vector<std::int64_t> rows(std::size_t(layers), 99);
  heed::entropy_accumulator acc;
  acc.layers = layers;
  acc.hq = hq;
  acc.mean = mean.data();
  acc.min = mn.data();
  acc.max = mx.data();
  acc.rows = rows.data();
  ASSERT_EQ(acc.reset(), status::ok);
  EXPECT_EQ(rows[0], 0);
  std::vector<std::vector<float>> e;
  for (std::int64_t l = 0; l < layers; ++l) e.push_back(random_entropy(hq, lq, unsigned(l + 1)));
  ASSERT_EQ(acc.add(0, e[0].data(), lq), status::ok);
  // layer 1 in two chunks: rows [0, split) then [split, lq), each chunk with stride lq
  ASSERT_EQ(acc.add(1, e[1].data(), split, lq), status::ok);
  ASSERT_EQ(acc.add(1, e[1].data() + split, lq - split, lq), status::ok);
  ASSERT_EQ(acc.add(2, e[2].data(), lq), status::ok);
  for (std::int64_t l = 0; l < layers; ++l) {
    EXPECT_EQ(rows[std::size_t(l)], lq);
    for (std::int64_t h = 0; h < hq; ++h) {
      const auto r = heed_ref::entropy_stats(head_row(e[std::size_t(l)], h, lq, lq));
      const std::size_t at = std::size_t(l * hq + h);
      EXPECT_NEAR(mean[at], r.mean, 1e-6 * r.mean) << l << " " << h;
      EXPECT_EQ(mn[at], float(r.min));
      EXPECT_EQ(mx[at], float(r.max));
    }
  }
  EXPECT_EQ(acc.add(3, e[0].data(), lq), status::invalid_argument);
  EXPECT_EQ(acc.add(-1, e[0].data(), lq), status::invalid_argument);
  EXPECT_EQ(acc.add(0, nullptr, lq), status::null_pointer);
  EXPECT_EQ(acc.add(0, e[0].data(), lq, 5), status::invalid_stride);
  EXPECT_EQ(acc.add(0, e[0].data(), 0), status::invalid_argument);
  heed::entropy_accumulator empty;
  EXPECT_EQ(empty.reset(), status::invalid_argument);
  empty.layers = 1;
  empty.hq = 1;
  EXPECT_EQ(empty.add(0, e[0].data(), 1), status::null_pointer);
}

TEST(ScoreEntropyStatsErrors, BadInputs) {
  std::vector<float> e(20, 1.f), out(4);
  EXPECT_EQ(heed::entropy_stats(nullptr, 4, 5, 0, out.data(), nullptr, nullptr),
            status::null_pointer);
  EXPECT_EQ(heed::entropy_stats(e.data(), 0, 5, 0, out.data(), nullptr, nullptr),
            status::invalid_argument);
  EXPECT_EQ(heed::entropy_stats(e.data(), 4, 0, 0, out.data(), nullptr, nullptr),
            status::invalid_argument);
  EXPECT_EQ(heed::entropy_stats(e.data(), 4, 5, 4, out.data(), nullptr, nullptr),
            status::invalid_stride);
  EXPECT_EQ(heed::entropy_stats(e.data(), 4, 5, -5, out.data(), nullptr, nullptr),
            status::invalid_stride);
}

}  // namespace
