// Per-head calibration: records (majority kind, mean density, mean sqrt-JSD) from FlexPrefill
// runs, the text file round trip, malformed files give a status, and the calibrated inputs
// steer the estimators (forced branch per head, per-head pooled density).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "heed/sparse/calibration.hpp"
#include "heed/sparse/minference.hpp"

namespace {

using heed::flex_kind;
using heed::status;

struct inputs {
  std::vector<float> q, k;
  heed::tensor_view qv, kv;
  inputs(std::int64_t L, std::int64_t hq, std::int64_t hkv, std::int64_t d, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.5f);
    q.resize(std::size_t(L * hq * d));
    k.resize(std::size_t(L * hkv * d));
    for (float& x : q) x = nd(rng);
    for (float& x : k) x = nd(rng);
    qv = heed::make_view(q.data(), L, hq, d);
    kv = heed::make_view(k.data(), L, hkv, d);
  }
};

TEST(Calibration, RecordsRoundTripsAndSteersEstimators) {
  const std::int64_t L = 400, hq = 3, d = 16;
  heed::sparse_calibration cal;
  ASSERT_EQ(cal.init(2, hq), status::ok);
  std::vector<double> want_density(std::size_t(2 * hq), 0.0), want_jsd(want_density.size(), 0.0);
  // Layer 0: two query-aware runs and one vertical-slash run; layer 1: vertical-slash only.
  const double taus[2][3] = {{1.0, 1.0, 0.0}, {0.0, 0.0, 0.0}};
  for (int layer = 0; layer < 2; ++layer)
    for (int run = 0; run < 3; ++run) {
      inputs in(L, hq, 1, d, unsigned(10 * layer + run));
      heed::flexprefill_options opt;
      opt.block = 64;
      opt.tau = taus[layer][run];
      opt.min_budget = 0;
      heed::block_pattern pat;
      heed::flexprefill_report rep;
      heed::estimate_scratch sc;
      ASSERT_EQ(heed::flexprefill_estimate(in.qv, in.kv, -1, opt, pat, rep, sc), status::ok);
      ASSERT_EQ(cal.record(layer, pat, rep), status::ok);
      for (std::int64_t h = 0; h < hq; ++h) {
        want_density[std::size_t(layer * hq + h)] += heed::block_density_head(pat, h, true) / 3;
        want_jsd[std::size_t(layer * hq + h)] += rep.sqrt_jsd[std::size_t(h)] / 3;
      }
    }
  for (std::int64_t l = 0; l < 2; ++l)
    for (std::int64_t h = 0; h < hq; ++h) {
      const auto& r = cal.at(l, h);
      EXPECT_EQ(r.samples, 3);
      EXPECT_EQ(r.kind(), l == 0 ? flex_kind::query_aware : flex_kind::vertical_slash);
      EXPECT_NEAR(r.density(), want_density[std::size_t(l * hq + h)], 1e-12);
      EXPECT_NEAR(r.mean_sqrt_jsd(), want_jsd[std::size_t(l * hq + h)], 1e-6);
      EXPECT_GT(r.density(), 0.0);
      EXPECT_LE(r.density(), 1.0);
    }

  // Text and file round trips.
  heed::sparse_calibration back;
  ASSERT_EQ(heed::sparse_calibration::parse(cal.to_text(), back), status::ok);
  const std::string path = ::testing::TempDir() + "heed_calibration.txt";
  ASSERT_EQ(cal.save(path), status::ok);
  heed::sparse_calibration loaded;
  ASSERT_EQ(heed::sparse_calibration::load(path, loaded), status::ok);
  for (const heed::sparse_calibration* c : {&back, &loaded}) {
    ASSERT_EQ(c->layers, 2);
    ASSERT_EQ(c->heads, hq);
    for (std::int64_t l = 0; l < 2; ++l)
      for (std::int64_t h = 0; h < hq; ++h) {
        EXPECT_EQ(c->at(l, h).kind(), cal.at(l, h).kind());
        EXPECT_EQ(c->at(l, h).samples, cal.at(l, h).samples);
        EXPECT_NEAR(c->at(l, h).density(), cal.at(l, h).density(), 1e-15);
      }
  }

  // Steering: layer 0's kinds force FlexPrefill's branch; per-head densities size pooled blocks.
  inputs in(L, hq, 1, d, 99);
  std::vector<flex_kind> kinds(hq);
  loaded.kinds(0, kinds.data());
  kinds[1] = flex_kind::vertical_slash;  // one head overridden by hand
  heed::flexprefill_options fo;
  fo.block = 64;
  fo.head_kind = kinds.data();
  heed::block_pattern pat;
  heed::flexprefill_report rep;
  heed::estimate_scratch sc;
  ASSERT_EQ(heed::flexprefill_estimate(in.qv, in.kv, -1, fo, pat, rep, sc), status::ok);
  for (std::int64_t h = 0; h < hq; ++h) EXPECT_EQ(rep.kind[std::size_t(h)], kinds[std::size_t(h)]);
  const double dens[hq] = {0.1, 0.5, 1.0};
  heed::pooled_block_options po;
  po.head_density = dens;
  ASSERT_EQ(heed::pooled_block_estimate(in.qv, in.kv, -1, po, pat, sc), status::ok);
  for (std::int64_t h = 0; h < hq; ++h)
    for (std::int64_t qb = 0; qb < pat.q_blocks; ++qb) {
      const std::int64_t visible = std::min(pat.k_blocks, qb + 1);
      const auto want = std::max<std::int64_t>(1, std::int64_t(std::ceil(dens[h] * visible)));
      const std::int64_t r = h * pat.q_blocks + qb;
      EXPECT_EQ(pat.row_ptr[r + 1] - pat.row_ptr[r], want) << "head " << h << " block " << qb;
    }
}

TEST(Calibration, MalformedFilesGiveStatus) {
  const std::string good =
      "heed-sparse-calibration 1 1 2\n"
      "# comment\n"
      "0 0 query_aware 0.25 4 3 0.05\n"
      "0 1 vertical_slash 0.5 4 1 0.3\n";
  heed::sparse_calibration c;
  ASSERT_EQ(heed::sparse_calibration::parse(good, c), status::ok);
  EXPECT_EQ(c.at(0, 0).kind(), flex_kind::query_aware);
  EXPECT_DOUBLE_EQ(c.at(0, 1).density(), 0.5);
  const char* bad[] = {
      "",
      "heed-sparse-calibration 2 1 2\n0 0 query_aware 0.25 4 3 0.05\n0 1 vertical_slash 0.5 4 1 "
      "0.3\n",
      "other 1 1 2\n0 0 query_aware 0.25 4 3 0.05\n0 1 vertical_slash 0.5 4 1 0.3\n",
      "heed-sparse-calibration 1 1 2\n0 0 query_aware 0.25 4 3 0.05\n",  // missing head 1
      "heed-sparse-calibration 1 1 2\n0 0 query_aware 0.25 4 3 0.05\n0 0 query_aware 0.25 4 3 "
      "0.05\n0 1 vertical_slash 0.5 4 1 0.3\n",  // duplicate
      "heed-sparse-calibration 1 1 2\n0 0 query_aware 1.5 4 3 0.05\n0 1 vertical_slash 0.5 4 1 "
      "0.3\n",  // density out of range
      "heed-sparse-calibration 1 1 2\n0 0 vertical_slash 0.25 4 3 0.05\n0 1 vertical_slash 0.5 4 "
      "1 0.3\n",  // kind disagrees with the votes
      "heed-sparse-calibration 1 1 2\n0 0 query_aware 0.25 4 3 0.05\n0 2 vertical_slash 0.5 4 1 "
      "0.3\n",  // head out of range
      "heed-sparse-calibration 1 1 2\n0 0 query_aware 0.25 four 3 0.05\n0 1 vertical_slash 0.5 4 "
      "1 0.3\n",  // not a number
  };
  for (const char* text : bad) {
    heed::sparse_calibration out = c;
    EXPECT_EQ(heed::sparse_calibration::parse(text, out), status::invalid_argument) << text;
    EXPECT_EQ(out.layers, 1);  // unchanged
    EXPECT_EQ(out.at(0, 0).samples, 4);
  }
  heed::sparse_calibration x;
  EXPECT_EQ(heed::sparse_calibration::load("/nonexistent/dir/file", x), status::invalid_argument);
  EXPECT_EQ(x.init(0, 3), status::invalid_argument);
  ASSERT_EQ(x.init(1, 2), status::ok);
  heed::block_pattern pat;
  heed::flexprefill_report rep;
  EXPECT_EQ(x.record(0, pat, rep), status::invalid_argument);
  EXPECT_EQ(x.record(5, pat, rep), status::invalid_argument);
}

}  // namespace
