// Leverage scores (heed/scoring/leverage.hpp) and the leverage / Compactor policies
// (heed/policy/leverage.hpp) against a float64 reference of the definition: the ridge leverage
// x_j^T (G + ridge I)^-1 x_j restricted to the top-r eigenpairs of G = X^T X, computed here by
// solving with Gauss-Jordan (full rank) or from a double Jacobi eigen-decomposition of the
// reference's own G (rank r); every K type and layout, head dims, ranks, rank-deficient heads
// (fewer keys than dims), equal keys; the Compactor mix; errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/leverage.hpp"
#include "heed/scoring/leverage.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::status;

// Eigenpairs of a symmetric double matrix by the textbook cyclic Jacobi (its own copy, so the
// reference does not read the library's solver), sorted by eigenvalue descending.
void eig_ref(std::vector<double> a, std::int64_t n, std::vector<double>& val,
             std::vector<std::vector<double>>& vec) {
  std::vector<double> v(std::size_t(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i * n + i)] = 1;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, all = 0;
    for (std::int64_t i = 0; i < n * n; ++i) {
      all += a[std::size_t(i)] * a[std::size_t(i)];
      if (i / n != i % n) off += a[std::size_t(i)] * a[std::size_t(i)];
    }
    if (off <= 1e-28 * all) break;
    for (std::int64_t p = 0; p < n; ++p)
      for (std::int64_t q = p + 1; q < n; ++q) {
        const double apq = a[std::size_t(p * n + q)];
        if (std::fabs(apq) < 1e-300) continue;
        const double phi =
            0.5 * std::atan2(2 * apq, a[std::size_t(q * n + q)] - a[std::size_t(p * n + p)]);
        const double c = std::cos(phi), s = std::sin(phi);
        for (std::int64_t k = 0; k < n; ++k) {
          const double x = a[std::size_t(k * n + p)], y = a[std::size_t(k * n + q)];
          a[std::size_t(k * n + p)] = c * x - s * y;
          a[std::size_t(k * n + q)] = s * x + c * y;
        }
        for (std::int64_t k = 0; k < n; ++k) {
          const double x = a[std::size_t(p * n + k)], y = a[std::size_t(q * n + k)];
          a[std::size_t(p * n + k)] = c * x - s * y;
          a[std::size_t(q * n + k)] = s * x + c * y;
        }
        for (std::int64_t k = 0; k < n; ++k) {
          const double x = v[std::size_t(k * n + p)], y = v[std::size_t(k * n + q)];
          v[std::size_t(k * n + p)] = c * x - s * y;
          v[std::size_t(k * n + q)] = s * x + c * y;
        }
      }
  }
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int64_t x, std::int64_t y) {
    return a[std::size_t(x * n + x)] > a[std::size_t(y * n + y)];
  });
  val.clear();
  vec.clear();
  for (std::int64_t i : idx) {
    val.push_back(a[std::size_t(i * n + i)]);
    std::vector<double> col(static_cast<std::size_t>(n));
    for (std::int64_t k = 0; k < n; ++k) col[std::size_t(k)] = v[std::size_t(k * n + i)];
    vec.push_back(col);
  }
}

heed_ref::vec leverage_ref(const heed_ref::kv_tensor& k, const heed::leverage_options& opt) {
  heed_ref::vec out(std::size_t(k.heads * k.len));
  const std::int64_t d = k.d, ks = opt.sketch > 0 && opt.sketch < d ? opt.sketch : 0;
  const std::int64_t m = ks > 0 ? ks : d;
  for (std::int64_t h = 0; h < k.heads; ++h) {
    std::vector<double> mu(static_cast<std::size_t>(d), 0.0);
    if (opt.center)
      for (std::int64_t j = 0; j < k.len; ++j)
        for (std::int64_t c = 0; c < d; ++c) mu[std::size_t(c)] += k.at(j, h, c) / double(k.len);
    // The working rows: the centered keys, or their sketch y = Phi^T x.
    std::vector<double> x(std::size_t(k.len * m), 0.0);
    for (std::int64_t j = 0; j < k.len; ++j)
      for (std::int64_t t = 0; t < m; ++t) {
        if (ks == 0) {
          x[std::size_t(j * m + t)] = k.at(j, h, t) - mu[std::size_t(t)];
          continue;
        }
        double y = 0;
        for (std::int64_t c = 0; c < d; ++c)
          y += (k.at(j, h, c) - mu[std::size_t(c)]) * heed::leverage_sketch_entry(c, t, ks);
        x[std::size_t(j * m + t)] = y;
      }
    std::vector<double> g(std::size_t(m * m), 0.0);
    for (std::int64_t j = 0; j < k.len; ++j)
      for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t c = 0; c < m; ++c)
          g[std::size_t(r * m + c)] += x[std::size_t(j * m + r)] * x[std::size_t(j * m + c)];
    std::vector<double> val;
    std::vector<std::vector<double>> vec;
    eig_ref(g, m, val, vec);
    const std::int64_t r = opt.rank > 0 ? std::min(opt.rank, m) : m;
    for (std::int64_t j = 0; j < k.len; ++j) {
      double s = 0;
      for (std::int64_t t = 0; t < r; ++t) {
        if (!(val[std::size_t(t)] > 1e-12 * val[0])) break;
        double p = 0;
        for (std::int64_t c = 0; c < m; ++c)
          p += x[std::size_t(j * m + c)] * vec[std::size_t(t)][std::size_t(c)];
        s += p * p / (val[std::size_t(t)] + opt.ridge);
      }
      out[std::size_t(h * k.len + j)] = s;
    }
  }
  return out;
}

std::vector<char> scratch(std::int64_t d, std::int64_t len,
                          const heed::leverage_options& opt = {}) {
  return std::vector<char>(heed::leverage_workspace_size(d, len, opt));
}

class LeverageScores : public ::testing::TestWithParam<
                           std::tuple<dtype, std::int64_t, std::int64_t, bool, std::int64_t>> {};

TEST_P(LeverageScores, MatchesReference) {
  const auto [t, len, d, head_major, rank] = GetParam();
  const std::int64_t heads = 3, stride = len + 2;
  heed_ref::stored_kv k(len, heads, d, t, 31, head_major, head_major ? 0 : 3, 0.7, 1.0);
  for (double ridge : {0.0, 1e-2})
    for (bool center : {true, false})
      for (std::int64_t sketch : {0, 5, 48}) {
        heed::leverage_options opt;
        opt.rank = rank;
        opt.ridge = ridge;
        opt.center = center;
        opt.sketch = sketch;
        const std::int64_t m = sketch > 0 && sketch < d ? sketch : d;
        // Rank-deficient heads with no ridge (centered keys span at most len - 1 dimensions):
        // the zero eigenvalues' directions are noise in f32 (the reference's are exact zeros),
        // and one key more than the rank leaves G ill-conditioned; skip those cases.
        if (ridge == 0.0 && len <= m + 1) continue;
        std::vector<float> out(std::size_t(heads * stride), 5.f);
        auto ws = scratch(d, len, opt);
        ASSERT_EQ(heed::leverage_scores(k.view, opt, out.data(), stride, {ws.data(), ws.size()}),
                  status::ok);
        const auto ref = leverage_ref(k.ref, opt);
        for (std::int64_t h = 0; h < heads; ++h) {
          for (std::int64_t j = 0; j < len; ++j) {
            const double want = ref[std::size_t(h * len + j)];
            ASSERT_NEAR(out[std::size_t(h * stride + j)], want, 1e-4 * (1 + std::fabs(want)))
                << "head " << h << " key " << j << " ridge " << ridge << " center " << center
                << " sketch " << sketch;
          }
          for (std::int64_t j = len; j < stride; ++j)
            ASSERT_EQ(out[std::size_t(h * stride + j)], 5.f);
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LeverageScores,
                         ::testing::Combine(::testing::Values(dtype::f32, dtype::f16),
                                            ::testing::Values(1, 6, 300),
                                            ::testing::Values(8, 13, 64), ::testing::Bool(),
                                            ::testing::Values(0, 3)));

INSTANTIATE_TEST_SUITE_P(Quantized, LeverageScores,
                         ::testing::Combine(::testing::Values(dtype::q8),
                                            ::testing::Values(1, 6, 300), ::testing::Values(8, 64),
                                            ::testing::Bool(), ::testing::Values(0, 3)));

INSTANTIATE_TEST_SUITE_P(Wide, LeverageScores,
                         ::testing::Combine(::testing::Values(dtype::bf16, dtype::q4),
                                            ::testing::Values(777), ::testing::Values(128),
                                            ::testing::Values(false), ::testing::Values(16)));

// Without ridge and with every eigenpair, the scores are the leverages: each in [0, 1], summing
// to the rank of the centered keys (d here), and a key far off the others' span scores ~1.
TEST(LeverageCases, PlainLeverageSumsToTheRank) {
  const std::int64_t len = 200, d = 16;
  heed_ref::stored_kv k(len, 1, d, dtype::f32, 8, false, 0, 0.3, 1.0);
  for (std::int64_t c = 0; c < d; ++c) k.f32[std::size_t(77 * d + c)] = c == 3 ? 60.f : 0.f;
  heed::leverage_options opt;
  opt.ridge = 0;
  opt.sketch = 0;  // the exact leverage
  std::vector<float> out(static_cast<std::size_t>(len));
  auto ws = scratch(d, len, opt);
  ASSERT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, {ws.data(), ws.size()}), status::ok);
  double sum = 0;
  for (float x : out) {
    EXPECT_GE(x, -1e-5f);
    EXPECT_LE(x, 1.f + 1e-4f);
    sum += x;
  }
  EXPECT_NEAR(sum, double(d), 1e-3);
  EXPECT_GT(out[77], 0.95f);
  EXPECT_EQ(std::max_element(out.begin(), out.end()) - out.begin(), 77);
}

// Equal keys (G = 0 after centering): every score 0, no NaN. A NaN key: NaN scores (ranked
// lowest by the selection), no crash, no endless loop.
TEST(LeverageCases, EqualKeysAndNaN) {
  const std::int64_t len = 9, d = 8;
  std::vector<float> k(std::size_t(len * d), 0.5f), out(std::size_t(len), 3.f);
  auto ws = scratch(d, len);
  ASSERT_EQ(heed::leverage_scores(heed::make_view(k.data(), len, 1, d), {}, out.data(), 0,
                                  {ws.data(), ws.size()}),
            status::ok);
  for (float x : out) EXPECT_EQ(x, 0.f);
  k[5] = std::nanf("");
  ASSERT_EQ(heed::leverage_scores(heed::make_view(k.data(), len, 1, d), {}, out.data(), 0,
                                  {ws.data(), ws.size()}),
            status::ok);
  for (float x : out) EXPECT_TRUE(std::isnan(x));
}

TEST(LeverageErrors, BadInputs) {
  heed_ref::stored_kv k(10, 2, 16, dtype::f32, 1);
  std::vector<float> out(40);
  auto ws = scratch(16, 10);
  const heed::workspace w{ws.data(), ws.size()};
  heed::leverage_options opt;
  EXPECT_EQ(heed::leverage_scores(k.view, opt, nullptr, 0, w), status::null_pointer);
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 5, w), status::invalid_stride);
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, {ws.data(), ws.size() - 1}),
            status::workspace_too_small);
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, {nullptr, ws.size()}),
            status::null_pointer);
  opt.rank = -1;
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, w), status::invalid_argument);
  opt = {};
  opt.ridge = -1;
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, w), status::invalid_argument);
  opt.ridge = std::nan("");
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, w), status::invalid_argument);
  opt = {};
  opt.sketch = -1;
  EXPECT_EQ(heed::leverage_scores(k.view, opt, out.data(), 0, w), status::invalid_argument);
  EXPECT_EQ(heed::leverage_workspace_size(0, 10), 0u);
  EXPECT_EQ(heed::leverage_workspace_size(8, -1), 0u);
}

// Compactor: blending * z(leverage) + z(accumulated mass) per head, against the reference on one
// eviction of a cache whose channel 0 holds known masses; blending < 0 is 1 - budget / length.
TEST(CompactorPolicy, MixesZScores) {
  const std::int64_t len = 50, d = 8;
  heed_ref::stored_kv k(len, 1, d, dtype::f32, 12, true);
  heed::kv_cache cache;
  heed::kv_cache_config cc;
  cc.head_dim = d;
  cc.score_channels = 1;
  ASSERT_EQ(cache.init(cc), status::ok);
  ASSERT_EQ(cache.append(0, k.view, k.view), status::ok);
  std::vector<double> mass(static_cast<std::size_t>(len));
  for (std::int64_t j = 0; j < len; ++j)
    mass[std::size_t(j)] = cache.scores(0, 0, 0)[j] = float((j * 37) % 11) * 0.1f;
  for (double blending : {-1.0, 0.0, 0.35, 2.0}) {
    heed::compactor_policy p;
    p.blending = blending;
    heed::policy_input in;
    in.cache = &cache;
    in.q_heads = 1;
    in.budget = 20;
    std::vector<char> ws(p.score_workspace_size(in));
    std::vector<float> out(static_cast<std::size_t>(len));
    ASSERT_EQ(p.score(in, 0, out.data(), {ws.data(), ws.size()}), status::ok);
    const auto lev = leverage_ref(k.ref, {});
    auto z = [](const std::vector<double>& x) {
      double m = 0, v = 0;
      for (double e : x) m += e / double(x.size());
      for (double e : x) v += (e - m) * (e - m);
      const double sd = std::max(std::sqrt(v / double(x.size() - 1)), 1e-6);
      std::vector<double> r;
      for (double e : x) r.push_back((e - m) / sd);
      return r;
    };
    const auto zl = z(lev), za = z(mass);
    const double lambda = blending < 0 ? 1.0 - 20.0 / 50.0 : blending;
    for (std::int64_t j = 0; j < len; ++j)
      EXPECT_NEAR(out[std::size_t(j)], lambda * zl[std::size_t(j)] + za[std::size_t(j)], 1e-3) << j;
  }
  heed::compactor_policy bad;
  bad.blending = std::nan("");
  heed::policy_input in;
  in.cache = &cache;
  in.q_heads = 1;
  std::vector<char> ws(bad.score_workspace_size(in));
  std::vector<float> out(static_cast<std::size_t>(len));
  EXPECT_EQ(bad.score(in, 0, out.data(), {ws.data(), ws.size()}), status::invalid_argument);
}

}  // namespace
