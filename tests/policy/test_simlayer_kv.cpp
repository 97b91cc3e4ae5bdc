// SimLayerKV (heed/policy/simlayer_kv.hpp) against a float64 reference of its lazy-layer test
// (softmax of the last queries over the visible entries, mass on the first n_initial and the last
// R entries before the window, mean over the layer's query heads and the window), on contiguous,
// paged and tiered caches, several shapes, GQA ratios, windows and budgets; the keep-sets of lazy
// and busy layers (kvpress: busy layers keep everything; or the inner policy); errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "heed/policy/evict.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/simlayer_kv.hpp"
#include "reference/naive_select.hpp"
#include "wrapper_fixture.hpp"

namespace {

using heed::status;

struct window {
  std::vector<float> q;  // [nq][Hq][d]
  std::int64_t nq = 0;
  int hq = 0;
  std::int64_t d = 0;
  heed::tensor_view view() const { return heed::make_view(q.data(), nq, hq, d); }
  double at(std::int64_t r, int h, std::int64_t c) const {
    return q[std::size_t((r * hq + h) * d + c)];
  }
};

window random_window(std::int64_t nq, int hq, std::int64_t d, unsigned seed) {
  window w{{}, nq, hq, d};
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  w.q.resize(std::size_t(nq * hq * d));
  for (auto& x : w.q) x = g(rng);
  return w;
}

// The test's score in double, from keys[h][j][c] (the stored values).
double simlayer_ref(const std::vector<std::vector<std::vector<double>>>& keys,
                    const std::vector<std::vector<std::int64_t>>& pos, const window& w, int group,
                    const heed::simlayer_options& o, std::int64_t budget, double scale,
                    double cap) {
  const std::int64_t nl = std::min(o.n_last, w.nq);
  const std::int64_t recent =
      o.n_recent > 0 ? o.n_recent : std::max<std::int64_t>(0, budget - o.n_initial - o.n_last);
  double total = 0;
  int rows = 0;
  for (std::size_t h = 0; h < keys.size(); ++h) {
    const std::int64_t len = std::int64_t(keys[h].size());
    if (len == 0) continue;
    const std::int64_t last = pos[h][std::size_t(len - 1)];
    std::int64_t m = 0;
    while (m < len && pos[h][std::size_t(m)] <= last - nl) ++m;
    for (std::int64_t r = 0; r < nl; ++r) {
      const std::int64_t qpos = last - (nl - 1 - r);
      for (int g = 0; g < group; ++g) {
        std::vector<double> s;
        for (std::int64_t j = 0; j < len; ++j) {
          if (pos[h][std::size_t(j)] > qpos) {
            s.push_back(-INFINITY);
            continue;
          }
          double dot = 0;
          for (std::size_t c = 0; c < keys[h][std::size_t(j)].size(); ++c)
            dot += w.at(w.nq - nl + r, int(h) * group + g, std::int64_t(c)) *
                   keys[h][std::size_t(j)][c];
          double x = dot * scale;
          if (cap > 0) x = cap * std::tanh(x / cap);
          s.push_back(x);
        }
        double mx = -INFINITY;
        for (double x : s) mx = std::max(mx, x);
        double z = 0, zs = 0;
        for (std::int64_t j = 0; j < len; ++j) {
          const double e = std::exp(s[std::size_t(j)] - mx);
          z += e;
          if (j < std::min(o.n_initial, m) || (j >= m - recent && j < m)) zs += e;
        }
        total += zs / z;
        ++rows;
      }
    }
  }
  return total / rows;
}

TEST(SimLayerKV, LazyScoreMatchesTheReference) {
  std::mt19937 rng(13);
  int checked = 0;
  for (int heads : {1, 2, 4})
    for (int group : {1, 2})
      for (std::int64_t n : {3, 30, 100})
        for (std::int64_t n_last : {1, 3}) {
          const std::int64_t d = 16, budget = 2 + std::int64_t(rng() % std::uint64_t(n));
          heed::simlayer_options o;
          o.n_last = n_last;
          o.n_initial = rng() % 2 ? 4 : 1;
          o.n_recent = rng() % 2 ? 0 : 5;
          std::vector<std::int64_t> p(static_cast<std::size_t>(n));
          for (std::int64_t j = 0, at = 0; j < n; ++j, ++at) {
            if (rng() % 4 == 0) at += 2;
            p[std::size_t(j)] = at;
          }
          const bool f16 = rng() % 2 == 0;
          wrapper_test::filled_cache a, b;
          const unsigned seed = unsigned(rng());
          const auto type = f16 ? heed::dtype::f16 : heed::dtype::f32;
          ASSERT_EQ(a.fill(2, heads, d, n, type, seed, 0, p.data(), 0.5f), status::ok);
          ASSERT_EQ(b.fill(2, heads, d, n, type, seed, 16, p.data(), 0.5f), status::ok);
          const window w = random_window(n_last + int(rng() % 3), heads * group, d, seed + 1);
          const int layer = int(rng() % 2);
          for (int variant = 0; variant < 2; ++variant) {
            auto in = wrapper_test::input_of(a.cache, layer, heads * group, budget);
            in.queries = w.view();
            if (variant == 1) {
              in.logits.scale = 0.3f;
              in.logits.softcap = 2.f;
            }
            std::vector<std::vector<std::vector<double>>> keys(static_cast<std::size_t>(heads));
            std::vector<std::vector<std::int64_t>> pos(std::size_t(heads), p);
            std::vector<float> rows(std::size_t(n * d));
            for (int h = 0; h < heads; ++h) {
              ASSERT_EQ(a.cache.gather_float(layer, h, 0, rows.data(), rows.size()), status::ok);
              for (std::int64_t j = 0; j < n; ++j)
                keys[std::size_t(h)].emplace_back(rows.begin() + j * d, rows.begin() + j * d + d);
            }
            const double want =
                simlayer_ref(keys, pos, w, group, o, budget,
                             variant == 1 ? 0.3 : 1.0 / std::sqrt(double(d)), variant ? 2.0 : 0.0);
            const double got = heed::detail::simlayer_score(in, o);
            ASSERT_NEAR(got, want, 1e-6) << "heads " << heads << " n " << n;
            auto in_paged = in;
            in_paged.cache = &b.cache;
            EXPECT_EQ(heed::detail::simlayer_score(in_paged, o), got) << "paged = contiguous";
            ++checked;
          }
        }
  EXPECT_EQ(checked, 72);
}

// A tiered cache (f16 with some entries demoted to q4) reads each entry from its own tier.
TEST(SimLayerKV, TieredCacheReadsBothTiers) {
  const std::int64_t n = 40, d = 16;
  heed::kv_cache cache;
  heed::kv_cache_config cc{1, 2, d, heed::dtype::f16, 0, 1};
  cc.tiered = true;
  cc.group = 8;
  ASSERT_EQ(cache.init(cc), status::ok);
  const window kv = random_window(n, 2, d, 4);
  ASSERT_EQ(cache.append(0, kv.view(), kv.view()), status::ok);
  for (int h = 0; h < 2; ++h) {
    std::vector<std::int32_t> idx = {1, 5, 6, 20, 33};
    ASSERT_EQ(cache.demote(0, h, idx.data(), 5), status::ok);
  }
  const window w = random_window(2, 4, d, 5);
  heed::simlayer_options o;
  o.n_last = 2;
  auto in = wrapper_test::input_of(cache, 0, 4, 12);
  in.queries = w.view();
  std::vector<std::vector<std::vector<double>>> keys(2);
  std::vector<std::vector<std::int64_t>> pos(2);
  std::vector<float> rows(std::size_t(n * d));
  for (int h = 0; h < 2; ++h) {
    ASSERT_EQ(cache.gather_float(0, h, 0, rows.data(), rows.size()), status::ok);
    for (std::int64_t j = 0; j < n; ++j) {
      keys[std::size_t(h)].emplace_back(rows.begin() + j * d, rows.begin() + j * d + d);
      pos[std::size_t(h)].push_back(j);
    }
  }
  EXPECT_NEAR(heed::detail::simlayer_score(in, o),
              simlayer_ref(keys, pos, w, 2, o, 12, 1.0 / 4.0, 0.0), 1e-5);
}

// Keys where the last query looks at the first entry (lazy) or at a middle one (busy).
struct lazy_case {
  wrapper_test::filled_cache f;
  window w;
};

void make_case(lazy_case& c, int heads, std::int64_t n, bool lazy) {
  const std::int64_t d = 8;
  ASSERT_EQ(c.f.fill(1, heads, d, n, heed::dtype::f32, 21, 0, nullptr, 0.1f), status::ok);
  c.w = random_window(1, heads * 2, d, 22);
  for (auto& x : c.w.q) x *= 0.1f;
  for (int h = 0; h < heads * 2; ++h) c.w.q[std::size_t(h * d)] = 8.f;  // along channel 0
  // The target key's channel 0 = 4: its logit (32 / sqrt(8)) dwarfs the others'.
  const std::int64_t target = lazy ? 0 : n / 2;
  for (int h = 0; h < heads; ++h) c.f.cache.mutable_keys(0, h).row<float>(target, 0)[0] = 4.f;
}

TEST(SimLayerKV, LazyLayersKeepSinksAndRecentBusyLayersTheInnerSet) {
  for (bool lazy : {true, false})
    for (bool full : {true, false}) {
      lazy_case c;
      const int heads = 2;
      const std::int64_t n = 60, budget = 16;
      make_case(c, heads, n, lazy);
      std::vector<std::vector<float>> raw(heads);
      std::mt19937 rng(2);
      for (int h = 0; h < heads; ++h) {
        for (std::int64_t j = 0; j < n; ++j) raw[std::size_t(h)].push_back(float(rng() % 1000));
        std::copy(raw[std::size_t(h)].begin(), raw[std::size_t(h)].end(),
                  c.f.cache.scores(0, h, 0));
      }
      auto in = wrapper_test::input_of(c.f.cache, 0, heads * 2, budget);
      in.queries = c.w.view();
      in.step = n;
      std::vector<std::int64_t> targets(heads, budget);
      heed::eviction_scratch scratch;
      heed::simlayer_options o;  // threshold 0.65, n_last 1, n_initial 4, n_recent 0
      const double s = heed::detail::simlayer_score(in, o);
      EXPECT_EQ(s > 0.65, lazy) << s;
      if (full) {
        auto p = heed::simlayer(heed::full_cache_policy{}, o);
        ASSERT_EQ(heed::evict_layer(c.f.cache, p, in, targets.data(), scratch), status::ok);
      } else {
        auto p = heed::simlayer(wrapper_test::channel_scores{}, o);
        ASSERT_EQ(heed::evict_layer(c.f.cache, p, in, targets.data(), scratch), status::ok);
      }
      for (int h = 0; h < heads; ++h) {
        std::vector<std::int64_t> want;
        if (lazy) {
          for (std::int64_t j = 0; j < 4; ++j) want.push_back(j);
          for (std::int64_t j = n - (budget - 4); j < n; ++j) want.push_back(j);
        } else if (full) {
          for (std::int64_t j = 0; j < n; ++j) want.push_back(j);
        } else {
          want = heed_ref::select_top_k(raw[std::size_t(h)], budget, 4, 0);
        }
        ASSERT_EQ(c.f.cache.length(0, h), std::int64_t(want.size())) << lazy << full;
        for (std::size_t r = 0; r < want.size(); ++r)
          EXPECT_EQ(c.f.cache.positions(0, h)[r], want[r]) << lazy << full;
      }
    }
}

// kvpress's count when n_recent is given: n_initial + n_recent - n_last entries in a lazy layer.
TEST(SimLayerKV, GivenRecentWindowCapsTheLazyBudget) {
  lazy_case c;
  make_case(c, 1, 50, true);
  auto in = wrapper_test::input_of(c.f.cache, 0, 2, 30);
  in.queries = c.w.view();
  heed::simlayer_options o;
  o.n_recent = 10;
  auto p = heed::simlayer(heed::full_cache_policy{}, o);
  EXPECT_EQ(p.head_budget(in, 0, 30), 4 + 10 - 1);
  EXPECT_EQ(p.head_budget(in, 0, 8), 8);
  in.queries = {};  // no query: not lazy, the inner budget (everything)
  EXPECT_EQ(p.head_budget(in, 0, 30), 50);
}

// The wrapper is a policy type of its own: default-constructible (basic_eviction_loop<P> holds
// one), copyable and movable, each copy starting without a remembered decision.
TEST(SimLayerKV, IsARegularPolicyType) {
  heed::basic_eviction_loop<heed::simlayer_policy<heed::full_cache_policy>> loop;
  heed::simlayer_policy<wrapper_test::channel_scores> a;
  EXPECT_EQ(a.options.n_initial, 4);
  auto b = a;
  b = std::move(a);
  lazy_case c;
  make_case(c, 1, 20, true);
  auto in = wrapper_test::input_of(c.f.cache, 0, 2, 8);
  in.queries = c.w.view();
  EXPECT_TRUE(b.lazy(in));
  EXPECT_TRUE(b.lazy(in));  // remembered
  auto d = b;
  EXPECT_TRUE(d.lazy(in));
  (void)loop;
}

TEST(SimLayerKV, BadOptionsAreErrors) {
  lazy_case c;
  make_case(c, 1, 20, true);
  auto in = wrapper_test::input_of(c.f.cache, 0, 2, 8);
  in.queries = c.w.view();
  std::vector<float> out(20);
  for (auto change : {+[](heed::simlayer_options& o) { o.n_last = 0; },
                      +[](heed::simlayer_options& o) { o.n_initial = -1; },
                      +[](heed::simlayer_options& o) { o.n_recent = -2; },
                      +[](heed::simlayer_options& o) { o.lazy_threshold = std::nanf(""); }}) {
    heed::simlayer_options o;
    change(o);
    auto p = heed::simlayer(wrapper_test::channel_scores{}, o);
    EXPECT_EQ(p.score(in, 0, out.data(), {}), status::invalid_argument);
    EXPECT_EQ(p.head_budget(in, 0, 8), 8);  // not lazy: the inner budget
    std::vector<std::int64_t> targets(1, 8);
    heed::eviction_scratch scratch;
    EXPECT_EQ(heed::evict_layer(c.f.cache, p, in, targets.data(), scratch),
              status::invalid_argument);
    EXPECT_EQ(c.f.cache.length(0, 0), 20);
    static_assert(noexcept(p.score(in, 0, nullptr, heed::workspace{})), "noexcept");
  }
}

}  // namespace
