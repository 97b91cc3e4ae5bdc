// Top-theta: calibrated thresholds against a float64 recomputation, and the logit_threshold
// variant through the header-only dense kernel against the float64 reference that drops the
// same keys (thresholds placed in gaps between the reference logits, so fp32 rounding cannot
// flip a key).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/dense.hpp"
#include "heed/attention/variants/logit_threshold.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/sparse/top_theta.hpp"

namespace heed_test {
namespace {

double ref_logit(const heed_ref::attention_problem& p, std::int64_t h, std::int64_t i,
                 std::int64_t j) {
  double dot = 0;
  for (std::int64_t c = 0; c < p.d; ++c)
    dot += p.q[std::size_t((i * p.hq + h) * p.d + c)] *
           p.k[std::size_t((j * p.hkv + h / (p.hq / p.hkv)) * p.d + c)];
  return dot / std::sqrt(double(p.d));
}

TEST(TopTheta, CalibrationMatchesNaive) {
  dense_case c;
  c.lq = 150;
  c.lk = 200;
  c.hq = 4;
  c.hkv = 2;
  c.d = 32;
  c.kv = heed::dtype::bf16;
  dense_setup s(c);
  heed::top_theta_options opt;
  opt.keep = 20;
  opt.row_stride = 7;
  std::vector<float> theta(4);
  heed::thread_pool_executor pool(2);
  ASSERT_EQ(heed::calibrate_top_theta(s.params.q, s.params.k, -1, opt, theta.data(), pool),
            heed::status::ok);
  const std::int64_t off = c.lk - c.lq;
  for (std::int64_t h = 0; h < c.hq; ++h) {
    double sum = 0;
    int n = 0;
    for (std::int64_t i = 0; i < c.lq; i += 7) {
      const std::int64_t seen = std::min(c.lk, off + i + 1);
      if (seen < 20) continue;
      std::vector<double> l;
      for (std::int64_t j = 0; j < seen; ++j) l.push_back(ref_logit(s.ref, h, i, j));
      std::sort(l.rbegin(), l.rend());
      sum += l[19];
      ++n;
    }
    EXPECT_NEAR(theta[std::size_t(h)], sum / n, 1e-4) << "head " << h;
  }
  EXPECT_EQ(heed::calibrate_top_theta(s.params.q, s.params.k, -1, opt, nullptr),
            heed::status::null_pointer);
  opt.keep = 0;
  EXPECT_EQ(heed::calibrate_top_theta(s.params.q, s.params.k, -1, opt, theta.data()),
            heed::status::invalid_argument);
}

TEST(TopTheta, VariantDropsKeysBelowTheta) {
  dense_case c;
  c.lq = c.lk = 64;
  c.hq = 2;
  c.hkv = 1;
  c.d = 16;
  c.want_entropy = false;  // no observer here
  dense_setup s(c);
  // Per head: the midpoint of the widest gap between sorted reference logits in the 60-95%
  // quantile range.
  std::vector<float> theta(2);
  for (std::int64_t h = 0; h < 2; ++h) {
    std::vector<double> l;
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t j = 0; j <= i; ++j) l.push_back(ref_logit(s.ref, h, i, j));
    std::sort(l.begin(), l.end());
    double best = 0, at = 0;
    for (std::size_t e = l.size() * 6 / 10; e + 1 < l.size() * 95 / 100; ++e)
      if (l[e + 1] - l[e] > best) {
        best = l[e + 1] - l[e];
        at = 0.5 * (l[e] + l[e + 1]);
      }
    ASSERT_GT(best, 1e-4);
    theta[std::size_t(h)] = static_cast<float>(at);
  }
  s.ref.keep = [&](int h, std::int64_t qp, std::int64_t kp) {
    return ref_logit(s.ref, h, qp, kp) >= double(theta[std::size_t(h)]);
  };
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  heed::null_observer obs;
  std::vector<char> ws(heed::dense_workspace_size_t(s.params, 1));
  heed::thread_pool_executor pool(1);
  ASSERT_EQ(heed::dense_attention_t(s.params, heed::logit_threshold(theta.data()), obs,
                                    {ws.data(), ws.size()}, pool),
            heed::status::ok);
  expect_matches_reference(s, r);
}

}  // namespace
}  // namespace heed_test
