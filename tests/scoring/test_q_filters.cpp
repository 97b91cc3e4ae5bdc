// Q-Filters (heed/scoring/q_filters.hpp, heed/policy/q_filters.hpp) against a float64 reference
// of the definition: the calibration (top eigenvector of the uncentered query Gram matrix by
// power iteration in double, majority sign, group mean), the scores on every K type and layout,
// GQA ratios, head dims, the policy with and without given filters; errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "heed/policy/evict.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/q_filters.hpp"
#include "heed/scoring/q_filters.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::status;

// Reference calibration: v1 by power iteration on G = sum q q^T (double, many iterations from a
// fixed start), sign by the majority of q . v1 (then the sum), group mean of s v1.
std::vector<double> calibrate_ref(const heed_ref::vec& q, std::int64_t n, std::int64_t hq,
                                  std::int64_t hkv, std::int64_t d) {
  std::vector<double> f(std::size_t(hkv * d), 0.0);
  const std::int64_t group = hq / hkv;
  for (std::int64_t h = 0; h < hq; ++h) {
    auto at = [&](std::int64_t i, std::int64_t c) { return q[std::size_t((i * hq + h) * d + c)]; };
    std::vector<double> g(std::size_t(d * d), 0.0);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t r = 0; r < d; ++r)
        for (std::int64_t c = 0; c < d; ++c) g[std::size_t(r * d + c)] += at(i, r) * at(i, c);
    std::vector<double> v(static_cast<std::size_t>(d), 1.0), w(static_cast<std::size_t>(d));
    for (std::int64_t c = 0; c < d; ++c) v[std::size_t(c)] = 1.0 + 0.01 * double(c);
    for (int it = 0; it < 1000; ++it) {
      double norm = 0;
      for (std::int64_t r = 0; r < d; ++r) {
        double s = 0;
        for (std::int64_t c = 0; c < d; ++c) s += g[std::size_t(r * d + c)] * v[std::size_t(c)];
        w[std::size_t(r)] = s;
        norm += s * s;
      }
      norm = std::sqrt(norm);
      for (std::int64_t r = 0; r < d; ++r) v[std::size_t(r)] = w[std::size_t(r)] / norm;
    }
    std::int64_t pos = 0, neg = 0;
    double sum = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      double p = 0;
      for (std::int64_t c = 0; c < d; ++c) p += at(i, c) * v[std::size_t(c)];
      pos += p > 0;
      neg += p < 0;
      sum += p;
    }
    const double s = pos != neg ? (pos > neg ? 1.0 : -1.0) : (sum < 0 ? -1.0 : 1.0);
    for (std::int64_t c = 0; c < d; ++c)
      f[std::size_t((h / group) * d + c)] += s * v[std::size_t(c)] / double(group);
  }
  return f;
}

heed_ref::vec scores_ref(const heed_ref::kv_tensor& k, const std::vector<double>& f) {
  heed_ref::vec out(std::size_t(k.heads * k.len));
  for (std::int64_t h = 0; h < k.heads; ++h)
    for (std::int64_t j = 0; j < k.len; ++j) {
      double s = 0;
      for (std::int64_t c = 0; c < k.d; ++c) s += f[std::size_t(h * k.d + c)] * k.at(j, h, c);
      out[std::size_t(h * k.len + j)] = s;
    }
  return out;
}

// Queries with one dominant direction (a mean offset), so v1 is well separated.
heed_ref::stored_q make_queries(std::int64_t n, std::int64_t hq, std::int64_t d, unsigned seed,
                                double mean) {
  return heed_ref::stored_q(n, hq, d, seed, mean, 1.0);
}

class QFiltersCalibrate
    : public ::testing::TestWithParam<std::tuple<std::int64_t, std::int64_t, std::int64_t>> {};

TEST_P(QFiltersCalibrate, MatchesReference) {
  const auto [d, hq, hkv] = GetParam();
  for (double mean : {0.8, -0.8}) {  // the sign follows the queries, whichever way they point
    const std::int64_t n = 300;
    auto q = make_queries(n, hq, d, unsigned(d * 7 + hq), mean);
    std::vector<float> f(std::size_t(hkv * d), 9.f);
    std::vector<char> ws(heed::q_filters_calibration_workspace_size(d));
    ASSERT_EQ(heed::q_filters_calibrate(q.view, int(hkv), f.data(), {ws.data(), ws.size()}),
              status::ok);
    const auto ref = calibrate_ref(q.ref, n, hq, hkv, d);
    for (std::size_t i = 0; i < f.size(); ++i) ASSERT_NEAR(f[i], ref[i], 2e-5) << i;
    // The mean query projects positively on each query head's direction, so on the filter.
    for (std::int64_t h = 0; h < hkv; ++h) {
      double p = 0;
      for (std::int64_t c = 0; c < d; ++c) p += mean * f[std::size_t(h * d + c)];
      EXPECT_GT(p, 0.0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, QFiltersCalibrate,
                         ::testing::Values(std::make_tuple(8, 8, 4), std::make_tuple(8, 4, 4),
                                           std::make_tuple(13, 6, 2), std::make_tuple(64, 8, 1),
                                           std::make_tuple(128, 4, 2)));

class QFiltersScores
    : public ::testing::TestWithParam<std::tuple<dtype, std::int64_t, std::int64_t, bool>> {};

TEST_P(QFiltersScores, MatchesReference) {
  const auto [t, len, d, head_major] = GetParam();
  const std::int64_t heads = 3, stride = len + 2;
  heed_ref::stored_kv k(len, heads, d, t, 23, head_major, head_major ? 0 : 3, 0.3, 1.0);
  std::vector<float> f(std::size_t(heads * d));
  std::vector<double> fd(f.size());
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.f, 1.f);
  for (std::size_t i = 0; i < f.size(); ++i) fd[i] = f[i] = g(rng);
  std::vector<float> out(std::size_t(heads * stride), 5.f);
  ASSERT_EQ(heed::q_filters_scores(k.view, f.data(), out.data(), stride), status::ok);
  const auto ref = scores_ref(k.ref, fd);
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t j = 0; j < len; ++j)
      ASSERT_NEAR(out[std::size_t(h * stride + j)], ref[std::size_t(h * len + j)],
                  1e-5 * (1 + std::fabs(ref[std::size_t(h * len + j)])))
          << h << " " << j;
    for (std::int64_t j = len; j < stride; ++j) ASSERT_EQ(out[std::size_t(h * stride + j)], 5.f);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, QFiltersScores,
                         ::testing::Combine(::testing::Values(dtype::f32, dtype::f16, dtype::bf16,
                                                              dtype::q8, dtype::q4),
                                            ::testing::Values(1, 6, 777),
                                            ::testing::Values(8, 40, 128), ::testing::Bool()));

TEST(QFiltersErrors, BadInputs) {
  auto q = make_queries(10, 4, 8, 1, 0.5);
  std::vector<float> f(32);
  std::vector<char> ws(heed::q_filters_calibration_workspace_size(8));
  const heed::workspace w{ws.data(), ws.size()};
  EXPECT_EQ(heed::q_filters_calibrate(q.view, 3, f.data(), w), status::shape_mismatch);
  EXPECT_EQ(heed::q_filters_calibrate(q.view, 0, f.data(), w), status::shape_mismatch);
  EXPECT_EQ(heed::q_filters_calibrate(q.view, 2, nullptr, w), status::null_pointer);
  EXPECT_EQ(heed::q_filters_calibrate(q.view, 2, f.data(), {ws.data(), ws.size() - 1}),
            status::workspace_too_small);
  EXPECT_EQ(heed::q_filters_calibrate(q.view, 2, f.data(), {nullptr, ws.size()}),
            status::null_pointer);
  auto bad = q.view;
  bad.type = dtype::f16;
  EXPECT_EQ(heed::q_filters_calibrate(bad, 2, f.data(), w), status::unsupported_dtype);
  bad = q.view;
  bad.seq = 0;
  EXPECT_EQ(heed::q_filters_calibrate(bad, 2, f.data(), w), status::invalid_argument);
  EXPECT_EQ(heed::q_filters_calibration_workspace_size(0), 0u);
  heed_ref::stored_kv k(5, 2, 8, dtype::f32, 1);
  std::vector<float> out(10);
  EXPECT_EQ(heed::q_filters_scores(k.view, nullptr, out.data()), status::null_pointer);
  EXPECT_EQ(heed::q_filters_scores(k.view, f.data(), nullptr), status::null_pointer);
  EXPECT_EQ(heed::q_filters_scores(k.view, f.data(), out.data(), 3), status::invalid_stride);
}

// All-zero queries: G = 0, a deterministic direction (the first axis) and sign +1, no NaN.
TEST(QFiltersCases, ZeroQueriesGiveAFiniteFilter) {
  std::vector<float> q(std::size_t(5 * 2 * 8), 0.f), f(8);
  std::vector<char> ws(heed::q_filters_calibration_workspace_size(8));
  ASSERT_EQ(heed::q_filters_calibrate(heed::make_view(q.data(), 5, 2, 8), 1, f.data(),
                                      {ws.data(), ws.size()}),
            status::ok);
  for (float x : f) EXPECT_TRUE(std::isfinite(x));
}

// The policy: with calibrated filters it scores f[layer][head] . k (the loop's selection keeps
// the top ones); with none it calibrates on the loop's recent queries of the group.
TEST(QFiltersPolicy, GivenFiltersAndSelfCalibration) {
  const int layers = 2, hq = 4, hkv = 2;
  const std::int64_t d = 8, n = 40, budget = 10;
  heed_ref::stored_q q(n * layers, hq, d, 3, 0.5);
  heed_ref::stored_kv k(n * layers, hkv, d, dtype::f32, 4), v(n * layers, hkv, d, dtype::f32, 5);
  for (bool given : {true, false}) {
    heed::q_filters_policy p;
    std::vector<float> filters(std::size_t(layers * hkv * d));
    std::mt19937 rng(9);
    std::normal_distribution<float> g(0.f, 1.f);
    for (auto& x : filters) x = g(rng);
    if (given) p.filters = filters;
    p.window = 16;
    heed::kv_cache cache;
    heed::kv_cache_config cc;
    cc.layers = layers;
    cc.kv_heads = hkv;
    cc.head_dim = d;
    ASSERT_EQ(cache.init(cc), status::ok);
    heed::eviction_loop loop;
    heed::eviction_config ec;
    ec.budget = budget;
    ASSERT_EQ(loop.init(&cache, p, ec, hq), status::ok);
    std::vector<float> o(std::size_t(hq * d));
    for (std::int64_t t = 0; t < n; ++t)
      for (int l = 0; l < layers; ++l) {
        const std::int64_t row = l * n + t;
        auto qv = q.view, kv = k.view, vv = v.view;
        qv.data = q.f.data() + row * hq * d;
        qv.seq = 1;
        kv.data = k.f32.data() + row * hkv * d;
        kv.seq = 1;
        vv.data = v.f32.data() + row * hkv * d;
        vv.seq = 1;
        // Before the step: what the policy keeps, by the reference.
        std::vector<std::vector<std::int64_t>> want(hkv);
        if (cache.length(l, 0) + 1 > budget) {
          for (int h = 0; h < hkv; ++h) {
            std::vector<double> f(static_cast<std::size_t>(d));
            if (given) {
              for (std::int64_t c = 0; c < d; ++c)
                f[std::size_t(c)] = filters[std::size_t((l * hkv + h) * d + c)];
            } else {  // the last min(16, t) queries of this layer, this head's group
              const std::int64_t w = std::min<std::int64_t>(16, t);
              heed_ref::vec qg(std::size_t(w * 2 * d));
              for (std::int64_t i = 0; i < w; ++i)
                for (int gq = 0; gq < 2; ++gq)
                  for (std::int64_t c = 0; c < d; ++c)
                    qg[std::size_t((i * 2 + gq) * d + c)] =
                        q.ref[std::size_t(((l * n + t - w + i) * hq + h * 2 + gq) * d + c)];
              const auto fr = calibrate_ref(qg, w, 2, 1, d);
              f.assign(fr.begin(), fr.end());
            }
            const std::int64_t len = cache.length(l, h);
            std::vector<std::pair<double, std::int64_t>> s;
            for (std::int64_t j = 0; j < len; ++j) {
              const std::int64_t pos = cache.positions(l, h)[j];
              double x = 0;
              for (std::int64_t c = 0; c < d; ++c)
                x += f[std::size_t(c)] * k.ref.at(l * n + pos, h, c);
              s.push_back({x, pos});
            }
            std::sort(s.begin(), s.end(), [](auto a, auto b) {
              return a.first > b.first || (a.first == b.first && a.second > b.second);
            });
            for (std::int64_t i = 0; i < budget - 1; ++i)
              want[h].push_back(s[std::size_t(i)].second);
            want[h].push_back(t);
            std::sort(want[h].begin(), want[h].end());
          }
        }
        ASSERT_EQ(loop.step(l, qv, kv, vv, heed::make_mutable_view(o.data(), 1, hq, d)),
                  status::ok);
        for (int h = 0; h < hkv && !want[0].empty(); ++h) {
          std::vector<std::int64_t> got(cache.positions(l, h),
                                        cache.positions(l, h) + cache.length(l, h));
          // Positions are layer-local here: the stream's rows l * n + pos.
          EXPECT_EQ(got, want[h]) << "given " << given << " step " << t << " layer " << l;
        }
      }
  }
}

// A key with a NaN scores NaN and goes first; equal scores keep the later entry.
TEST(QFiltersPolicy, NaNFirstThenTiesToTheLater) {
  const std::int64_t d = 8, n = 6;
  heed::kv_cache cache;
  heed::kv_cache_config cc;
  cc.head_dim = d;
  ASSERT_EQ(cache.init(cc), status::ok);
  std::vector<float> k(std::size_t(n * d), 1.f);
  k[std::size_t(2 * d + 3)] = std::nanf("");
  ASSERT_EQ(cache.append(0, heed::make_view(k.data(), n, 1, d), heed::make_view(k.data(), n, 1, d)),
            status::ok);
  heed::q_filters_policy p;
  p.filters.assign(std::size_t(d), 0.5f);  // every finite key scores 4
  heed::policy_input in;
  in.cache = &cache;
  in.q_heads = 1;
  heed::eviction_scratch scratch;
  const std::int64_t target = 4;
  ASSERT_EQ(heed::evict_layer(cache, p, in, &target, scratch), status::ok);
  const std::vector<std::int64_t> kept(cache.positions(0, 0), cache.positions(0, 0) + 4);
  EXPECT_EQ(kept, (std::vector<std::int64_t>{1, 3, 4, 5}));  // NaN (2) out, then the oldest (0)
}

TEST(QFiltersPolicy, WrongFilterSizeIsAStatus) {
  heed::q_filters_policy p;
  p.filters.assign(7, 1.f);
  heed::kv_cache cache;
  heed::kv_cache_config cc;
  cc.head_dim = 8;
  ASSERT_EQ(cache.init(cc), status::ok);
  std::vector<float> k(8 * 4, 1.f);
  ASSERT_EQ(cache.append(0, heed::make_view(k.data(), 4, 1, 8), heed::make_view(k.data(), 4, 1, 8)),
            status::ok);
  heed::policy_input in;
  in.cache = &cache;
  in.q_heads = 1;
  std::vector<float> out(4);
  EXPECT_EQ(p.score(in, 0, out.data(), {}), status::shape_mismatch);
}

}  // namespace
