// CriticalKV and CriticalAdaKV (heed/policy/critical_kv.hpp) against a float64 reference of the
// definition: value norms through the output projection (L1, averaged over the query group) or
// ||v||_1 without one, the two stages, and the keep-sets (CriticalAdaKV: AdaKV's head budgets from
// the inner scores, filled in critical order); shapes, GQA ratios, budgets, ties, NaN, K/V types,
// paged caches; errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "heed/policy/critical_kv.hpp"
#include "heed/policy/evict.hpp"
#include "reference/naive_select.hpp"
#include "wrapper_fixture.hpp"

namespace {

using heed::status;
constexpr float kMax = std::numeric_limits<float>::max();

struct projection {
  std::vector<float> w;  // [hidden][stride]
  std::vector<const float*> layers;
  heed::output_projection wo;
};

projection random_projection(int layers, std::int64_t hidden, std::int64_t stride, unsigned seed) {
  projection p;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 0.3f);
  p.w.resize(std::size_t(layers * hidden * stride));
  for (auto& x : p.w) x = g(rng);
  for (int l = 0; l < layers; ++l) p.layers.push_back(p.w.data() + l * hidden * stride);
  p.wo.weights = p.layers.data();
  p.wo.hidden = hidden;
  p.wo.row_stride = stride;
  return p;
}

// n_j in double: (1/G) sum_g sum_i |sum_c v_jc W[i][(hG+g) d + c]|, or sum_c |v_jc| without W.
std::vector<double> norms_ref(const wrapper_test::filled_cache& f, int layer, int h, int group,
                              const projection* p) {
  std::vector<double> out;
  for (std::int64_t j = 0; j < f.n; ++j) {
    double total = 0;
    if (p == nullptr) {
      for (std::int64_t c = 0; c < f.d; ++c) total += std::fabs(f.value(layer, j, h, c));
    } else {
      const float* w = p->layers[std::size_t(layer)];
      for (int g = 0; g < group; ++g) {
        for (std::int64_t i = 0; i < p->wo.hidden; ++i) {
          double dot = 0;
          for (std::int64_t c = 0; c < f.d; ++c)
            dot += f.value(layer, j, h, c) *
                   double(w[i * p->wo.row_stride + (std::int64_t(h) * group + g) * f.d + c]);
          total += std::fabs(dot);
        }
      }
      total /= group;
    }
    out.push_back(total);
  }
  return out;
}

// The critical scores in double: stage 1 (the best floor(ratio * n_keep) by raw, never NaN) at
// FLT_MAX, the others (raw + eps) * n_j.
std::vector<double> critical_ref(const std::vector<float>& raw, const std::vector<double>& norms,
                                 std::int64_t n_keep, double eps, double ratio) {
  const std::int64_t n = std::int64_t(raw.size());
  std::vector<double> out(raw.size());
  for (std::int64_t j = 0; j < n; ++j)
    out[std::size_t(j)] = (double(raw[std::size_t(j)]) + eps) * norms[std::size_t(j)];
  const auto first =
      heed_ref::select_top_k(raw, std::int64_t(std::floor(ratio * double(n_keep))), 0, 0);
  for (auto j : first)
    if (!std::isnan(raw[std::size_t(j)])) out[std::size_t(j)] = kMax;
  return out;
}

std::vector<float> to_float(const std::vector<double>& x) {
  return std::vector<float>(x.begin(), x.end());
}

TEST(CriticalKV, ScoresMatchTheReference) {
  std::mt19937 rng(7);
  for (heed::dtype t : {heed::dtype::f32, heed::dtype::f16, heed::dtype::q8})
    for (int heads : {1, 2, 4})
      for (int group : {1, 2, 4})
        for (bool with_wo : {false, true}) {
          const std::int64_t n = 5 + std::int64_t(rng() % 60), d = t == heed::dtype::q8 ? 32 : 12;
          const std::int64_t budget = 1 + std::int64_t(rng() % std::uint64_t(n + 3));
          wrapper_test::filled_cache f;
          ASSERT_EQ(f.fill(2, heads, d, n, t, unsigned(rng())), status::ok);
          if (t != heed::dtype::f32) {  // the reference reads the stored (rounded) values
            std::vector<float> row(std::size_t(n * d));
            for (int l = 0; l < 2; ++l)
              for (int h = 0; h < heads; ++h) {
                ASSERT_EQ(f.cache.gather_float(l, h, 1, row.data(), row.size()), status::ok);
                for (std::int64_t j = 0; j < n; ++j)
                  for (std::int64_t c = 0; c < d; ++c)
                    f.v[std::size_t(((l * n + j) * heads + h) * d + c)] =
                        row[std::size_t(j * d + c)];
              }
          }
          const std::int64_t hidden = 9, stride = heads * group * d + 3;
          const projection p = random_projection(2, hidden, stride, unsigned(rng()));
          const int layer = int(rng() % 2);
          std::vector<std::vector<float>> raw(static_cast<std::size_t>(heads));
          for (int h = 0; h < heads; ++h) {
            for (std::int64_t j = 0; j < n; ++j) {
              const unsigned r = rng() % 10;
              raw[std::size_t(h)].push_back(r == 0   ? std::nanf("")
                                            : r == 1 ? 0.5f  // ties
                                                     : float(rng() % 1000) / 1000.f);
            }
            std::copy(raw[std::size_t(h)].begin(), raw[std::size_t(h)].end(),
                      f.cache.scores(layer, h, 0));
          }
          const float eps = 1e-3f;
          const double ratio = with_wo ? 0.5 : 0.3;
          auto policy = heed::critical(wrapper_test::channel_scores{}, eps, ratio,
                                       with_wo ? p.wo : heed::output_projection{});
          const auto in = wrapper_test::input_of(f.cache, layer, heads * group, budget);
          std::vector<unsigned char> ws(policy.score_workspace_size(in));
          std::vector<float> out(static_cast<std::size_t>(n));
          for (int h = 0; h < heads; ++h) {
            ASSERT_EQ(policy.score(in, h, out.data(), {ws.data(), ws.size()}), status::ok);
            const auto norms = norms_ref(f, layer, h, group, with_wo ? &p : nullptr);
            const auto want =
                critical_ref(raw[std::size_t(h)], norms, std::min(n, budget), eps, ratio);
            for (std::int64_t j = 0; j < n; ++j) {
              const double w = want[std::size_t(j)], g = out[std::size_t(j)];
              if (std::isnan(w)) {
                ASSERT_TRUE(std::isnan(g)) << j;
              } else if (w == kMax) {
                ASSERT_EQ(g, kMax) << j;
              } else {
                ASSERT_NEAR(g, w, 2e-5 * std::fabs(w) + 1e-6)
                    << "head " << h << " entry " << j << " type " << int(t);
              }
            }
          }
        }
}

// Ties: stage 1 takes the newest of equal scores (select.hpp's rule) and never a NaN score.
TEST(CriticalKV, StageOneTiesAndNaN) {
  wrapper_test::filled_cache f;
  ASSERT_EQ(f.fill(1, 1, 8, 10, heed::dtype::f32, 3), status::ok);
  const std::vector<float> raw = {1, 1, 1, 1, 1, 1, std::nanf(""), std::nanf(""), 1, 1};
  std::copy(raw.begin(), raw.end(), f.cache.scores(0, 0, 0));
  auto policy = heed::critical(wrapper_test::channel_scores{}, 1e-4f, 1.0);
  auto in = wrapper_test::input_of(f.cache, 0, 1, 10);
  std::vector<unsigned char> ws(policy.score_workspace_size(in));
  std::vector<float> out(10);
  ASSERT_EQ(policy.score(in, 0, out.data(), {ws.data(), ws.size()}), status::ok);
  for (int j : {0, 1, 2, 3, 4, 5, 8, 9}) EXPECT_EQ(out[std::size_t(j)], kMax) << j;
  EXPECT_TRUE(std::isnan(out[6]) && std::isnan(out[7]));
  in.budget = 4;  // k1 = 4: the four newest of the ties
  ASSERT_EQ(policy.score(in, 0, out.data(), {ws.data(), ws.size()}), status::ok);
  for (int j = 0; j < 10; ++j)
    EXPECT_EQ(out[std::size_t(j)] == kMax, j == 4 || j == 5 || j == 8 || j == 9) << j;
}

// Keep-sets of one eviction: CriticalKV keeps the inner selection over the critical scores;
// CriticalAdaKV gives each head the count AdaKV gives it over the inner scores, filled with the
// head's best by critical score. Contiguous and paged caches keep the same sets.
TEST(CriticalKV, KeepSetsMatchTheReference) {
  std::mt19937 rng(9);
  for (int heads : {1, 2, 4})
    for (int group : {1, 4})
      for (std::int64_t n : {9, 50, 130})
        for (std::int64_t page_rows : {0, 16})
          for (bool adaptive : {false, true}) {
            const std::int64_t budget = 2 + std::int64_t(rng() % std::uint64_t(n));
            wrapper_test::filled_cache f;
            ASSERT_EQ(f.fill(1, heads, 16, n, heed::dtype::f32, unsigned(rng()), page_rows),
                      status::ok);
            std::vector<std::vector<float>> raw(static_cast<std::size_t>(heads));
            for (int h = 0; h < heads; ++h) {
              for (std::int64_t j = 0; j < n; ++j)
                raw[std::size_t(h)].push_back(float(rng() % 10000000) / 100000.f + float(h));
              std::copy(raw[std::size_t(h)].begin(), raw[std::size_t(h)].end(),
                        f.cache.scores(0, h, 0));
            }
            wrapper_test::channel_scores cs;
            // (CriticalAdaKV: no protection, as in kvpress; a protected entry would carry a
            // re-assigned score into AdaKV's floors.)
            const std::int64_t sinks = adaptive ? 0 : 1;
            cs.n_sink = sinks;
            const auto in = wrapper_test::input_of(f.cache, 0, heads * group, budget);
            std::vector<std::int64_t> targets(std::size_t(heads), budget);
            heed::eviction_scratch scratch;
            std::vector<std::vector<float>> crit;
            for (int h = 0; h < heads; ++h)
              crit.push_back(
                  to_float(critical_ref(raw[std::size_t(h)], norms_ref(f, 0, h, group, nullptr),
                                        std::min(n, budget), 1e-4, 0.5)));
            std::vector<std::vector<std::int64_t>> want(static_cast<std::size_t>(heads));
            if (adaptive) {
              auto policy = heed::critical_adaptive(cs, 0.2);
              ASSERT_EQ(heed::evict_layer(f.cache, policy, in, targets.data(), scratch),
                        status::ok);
              const auto ada = heed_ref::select_global_top_k(raw, budget * heads, 0.2, 0, 0);
              for (int h = 0; h < heads; ++h)
                want[std::size_t(h)] = heed_ref::select_top_k(
                    crit[std::size_t(h)], std::int64_t(ada[std::size_t(h)].size()), 0, 0);
            } else {
              auto policy = heed::critical(cs);
              ASSERT_EQ(heed::evict_layer(f.cache, policy, in, targets.data(), scratch),
                        status::ok);
              for (int h = 0; h < heads; ++h)
                want[std::size_t(h)] =
                    heed_ref::select_top_k(crit[std::size_t(h)], budget, sinks, 0);
            }
            for (int h = 0; h < heads; ++h) {
              const auto& keep = want[std::size_t(h)];
              ASSERT_EQ(f.cache.length(0, h), std::int64_t(keep.size()))
                  << "head " << h << " adaptive " << adaptive;
              for (std::size_t r = 0; r < keep.size(); ++r)
                ASSERT_EQ(f.cache.positions(0, h)[r], keep[r]) << "head " << h;
            }
          }
}

// CriticalAdaKV's ranking (a radix sort) orders entries as select.hpp's rule does: ties to the
// higher index, NaN last, -0 = +0, infinities.
TEST(CriticalKV, RankOrderIsTheSelectionRanking) {
  std::mt19937 rng(17);
  for (std::int64_t n : {0, 1, 2, 7, 100, 5000}) {
    std::vector<float> s(static_cast<std::size_t>(n));
    for (auto& x : s) {
      const unsigned r = rng() % 12;
      x = r == 0   ? std::nanf("")
          : r == 1 ? -0.f
          : r == 2 ? 0.f
          : r == 3 ? INFINITY
          : r == 4 ? -INFINITY
                   : float(int(rng() % 50) - 25) * 0.5f;
    }
    std::vector<std::int64_t> want(static_cast<std::size_t>(n));
    for (std::int64_t j = 0; j < n; ++j) want[std::size_t(j)] = j;
    std::sort(want.begin(), want.end(), [&](std::int64_t a, std::int64_t b) {
      return heed_ref::select_ranks_above(s[std::size_t(a)], a, s[std::size_t(b)], b);
    });
    std::vector<std::uint32_t> got(static_cast<std::size_t>(n)), tmp(got.size());
    heed::detail::rank_order(s.data(), n, got.data(), tmp.data());
    for (std::int64_t r = 0; r < n; ++r) ASSERT_EQ(got[std::size_t(r)], want[std::size_t(r)]) << r;
  }
}

TEST(CriticalKV, BadParametersAreErrors) {
  wrapper_test::filled_cache f;
  ASSERT_EQ(f.fill(1, 2, 8, 12, heed::dtype::f32, 1), status::ok);
  const auto in = wrapper_test::input_of(f.cache, 0, 4, 6);
  std::vector<float> out(12);
  auto expect = [&](auto policy, status want) {
    std::vector<unsigned char> ws(policy.score_workspace_size(in));
    EXPECT_EQ(policy.score(in, 0, out.data(), {ws.data(), ws.size()}), want);
    if (want == status::ok) {
      EXPECT_EQ(policy.score(in, 0, out.data(), {ws.data(), ws.size() - 1}),
                status::workspace_too_small);
    }
  };
  const wrapper_test::channel_scores cs;
  expect(heed::critical(cs), status::ok);
  expect(heed::critical(cs, -1.f), status::invalid_argument);
  expect(heed::critical(cs, std::nanf("")), status::invalid_argument);
  expect(heed::critical(cs, 1e-4f, 1.5), status::invalid_argument);
  expect(heed::critical(cs, 1e-4f, -0.1), status::invalid_argument);
  projection p = random_projection(1, 4, 2 * 2 * 8, 2);
  expect(heed::critical(cs, 1e-4f, 0.5, p.wo), status::ok);
  heed::output_projection bad = p.wo;
  bad.hidden = 0;
  expect(heed::critical(cs, 1e-4f, 0.5, bad), status::invalid_argument);
  bad = p.wo;
  bad.row_stride = 5;  // narrower than Hq * d
  expect(heed::critical(cs, 1e-4f, 0.5, bad), status::invalid_argument);
  const float* none[1] = {nullptr};
  bad = p.wo;
  bad.weights = none;
  expect(heed::critical(cs, 1e-4f, 0.5, bad), status::null_pointer);
  // An eviction with a bad policy changes nothing.
  auto policy = heed::critical(cs, -1.f);
  std::vector<std::int64_t> targets(2, 6);
  heed::eviction_scratch scratch;
  EXPECT_EQ(heed::evict_layer(f.cache, policy, in, targets.data(), scratch),
            status::invalid_argument);
  EXPECT_EQ(f.cache.length(0, 0), 12);
  static_assert(noexcept(policy.score(in, 0, nullptr, heed::workspace{})), "noexcept");
}

}  // namespace
