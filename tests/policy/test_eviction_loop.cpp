// The eviction loop: H2O end to end against a float64 simulation, and every policy through every
// wrapper checked for the invariants (budget exact, positions ascending, protected kept,
// deterministic) on random and adversarial data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "heed/core/thread_pool.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/attention_free.hpp"
#include "heed/policy/budgets.hpp"
#include "heed/policy/callback_policy.hpp"
#include "heed/policy/caote.hpp"
#include "heed/policy/chunkkv.hpp"
#include "heed/policy/critical_kv.hpp"
#include "heed/policy/duo_attention.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/leverage.hpp"
#include "heed/policy/q_filters.hpp"
#include "heed/policy/random.hpp"
#include "heed/policy/simlayer_kv.hpp"
#include "heed/policy/snapkv.hpp"
#include "heed/policy/streaming_llm.hpp"
#include "heed/policy/wrappers.hpp"
#include "reference/naive_attention.hpp"

namespace {

// A configuration with only the budget set.
heed::eviction_config budget_only(std::int64_t budget) {
  heed::eviction_config c;
  c.budget = budget;
  return c;
}

using heed::status;

struct stream {
  int hq, hkv;
  std::int64_t d, n;
  std::vector<float> q, k, v;  // [n][heads][d]
};

stream make_stream(int hq, int hkv, std::int64_t d, std::int64_t n, unsigned seed,
                   bool constant = false) {
  stream s{hq, hkv, d, n, {}, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  auto fill = [&](std::vector<float>& x, std::size_t size) {
    x.resize(size);
    for (auto& e : x) e = constant ? 0.5f : g(rng);
  };
  fill(s.q, std::size_t(n * hq * d));
  fill(s.k, std::size_t(n * hkv * d));
  fill(s.v, std::size_t(n * hkv * d));
  return s;
}

heed::tensor_view token(const std::vector<float>& x, std::int64_t t, int heads, std::int64_t d) {
  return heed::make_view(x.data() + t * heads * d, 1, heads, d);
}

// The float64 reference of H2O's column mass and of one eviction: rank by score (desc), ties to
// the later entry, NaN last; the last n_recent entries are protected.
std::vector<std::int64_t> reference_keep(const std::vector<float>& score, std::int64_t budget,
                                         std::int64_t n_recent) {
  const std::int64_t n = std::int64_t(score.size());
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](std::int64_t j) {
    const bool prot = j >= n - n_recent;
    const double s = std::isnan(score[std::size_t(j)]) ? -INFINITY : score[std::size_t(j)];
    return std::make_tuple(prot ? 1 : 0, std::isnan(score[std::size_t(j)]) ? 0 : 1, s, j);
  };
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return key(a) > key(b); });
  order.resize(std::size_t(std::min(budget, n)));
  std::sort(order.begin(), order.end());
  return order;
}

TEST(EvictionLoop, H2OMatchesAFloat64Simulation) {
  for (int threads : {1, 2}) {
    const int hq = 8, hkv = 2, group = hq / hkv;
    const std::int64_t d = 64, n = 90, budget = 24;
    const stream s = make_stream(hq, hkv, d, n, 17);
    heed::kv_cache cache;
    ASSERT_EQ(cache.init({1, hkv, d, heed::dtype::f32, 0, 1}), status::ok);
    heed::eviction_loop loop;
    heed::h2o_policy h2o;
    ASSERT_EQ(loop.init(&cache, h2o, budget_only(budget), hq), status::ok);
    heed::thread_pool_executor ex(threads);
    // Reference state per KV head: kept original positions and their accumulated mass.
    std::vector<std::vector<std::int64_t>> kept(hkv);
    std::vector<std::vector<double>> mass(hkv);
    std::vector<float> o(std::size_t(hq * d));
    for (std::int64_t t = 0; t < n; ++t) {
      // Expected eviction, from heed's own float scores (checked against `mass` below).
      for (int h = 0; h < hkv; ++h) {
        if (std::int64_t(kept[h].size()) + 1 > budget) {
          std::vector<float> sc(cache.scores(0, h, 0), cache.scores(0, h, 0) + cache.length(0, h));
          const auto keep = reference_keep(sc, budget - 1, budget / 2);
          std::vector<std::int64_t> k2;
          std::vector<double> m2;
          for (auto i : keep) {
            k2.push_back(kept[h][std::size_t(i)]);
            m2.push_back(mass[h][std::size_t(i)]);
          }
          kept[h] = k2;
          mass[h] = m2;
        }
        kept[h].push_back(t);
        mass[h].push_back(0.0);
      }
      ASSERT_EQ(loop.step(0, token(s.q, t, hq, d), token(s.k, t, hkv, d), token(s.v, t, hkv, d),
                          heed::make_mutable_view(o.data(), 1, hq, d), ex),
                status::ok);
      // The reference attention over the reference kept set.
      heed_ref::attention_problem p;
      p.lq = 1;
      p.lk = t + 1;
      p.hq = hq;
      p.hkv = hkv;
      p.d = d;
      p.resize();
      for (int h = 0; h < hq; ++h)
        for (std::int64_t e = 0; e < d; ++e) p.q_at(0, h, e) = s.q[(t * hq + h) * d + e];
      for (std::int64_t j = 0; j <= t; ++j)
        for (int h = 0; h < hkv; ++h)
          for (std::int64_t e = 0; e < d; ++e) {
            p.k_at(j, h, e) = s.k[(j * hkv + h) * d + e];
            p.v_at(j, h, e) = s.v[(j * hkv + h) * d + e];
          }
      std::vector<std::vector<bool>> in(hkv, std::vector<bool>(std::size_t(t + 1), false));
      for (int h = 0; h < hkv; ++h)
        for (auto j : kept[h]) in[h][std::size_t(j)] = true;
      p.keep = [&](int h, std::int64_t, std::int64_t kp) {
        return bool(in[h / group][std::size_t(kp)]);
      };
      const auto r = heed_ref::naive_attention(p);
      for (int h = 0; h < hq; ++h)
        for (std::int64_t e = 0; e < d; ++e) ASSERT_NEAR(o[h * d + e], r.o_at(0, h, e), 2e-5);
      for (int h = 0; h < hkv; ++h) {
        ASSERT_EQ(cache.length(0, h), std::int64_t(kept[h].size())) << t;
        ASSERT_LE(cache.length(0, h), budget);
        for (std::size_t i = 0; i < kept[h].size(); ++i) {
          ASSERT_EQ(cache.positions(0, h)[i], kept[h][i]) << "step " << t << " head " << h;
          double pm = 0;
          for (int g = 0; g < group; ++g) pm += r.prob_at(h * group + g, 0, kept[h][i]) / group;
          mass[h][i] += pm;
          ASSERT_NEAR(cache.scores(0, h, 0)[i], mass[h][i], 2e-5);
        }
      }
    }
  }
}

// A prefill chunk folds its rows into the column mass as decode steps would: sum (H2O), decay
// (A2SF: sum_i lambda^(n-1-i) p_ij) and last (TOVA: the last row), mean or max over the group.
// With the model's logit settings (soft-capping, learned sinks, a scale) the recomputed mass is of
// the kernel's probabilities (issue 21: it used to divide uncapped probabilities by the capped
// row's LSE).
TEST(EvictionLoop, PrefillChunkColumnMassMatchesReference) {
  const int hq = 8, hkv = 2, group = 4;
  const std::int64_t d = 32, n = 37;
  const stream s = make_stream(hq, hkv, d, n + 3, 23);
  struct mode_case {
    heed::accumulate_mode mode;
    heed::head_reduce reduce;
    bool settings;  // softcap 2, sinks, scale 0.3
  };
  const std::vector<float> sinks = {0.5f, -1.f, 2.f, 0.f, 1.f, 0.25f, -0.5f, 3.f};
  for (auto mc : {mode_case{heed::accumulate_mode::sum, heed::head_reduce::mean, false},
                  mode_case{heed::accumulate_mode::decay, heed::head_reduce::mean, false},
                  mode_case{heed::accumulate_mode::last, heed::head_reduce::max, false},
                  mode_case{heed::accumulate_mode::sum, heed::head_reduce::max, false},
                  mode_case{heed::accumulate_mode::sum, heed::head_reduce::mean, true},
                  mode_case{heed::accumulate_mode::decay, heed::head_reduce::max, true}}) {
    heed::kv_cache cache;
    ASSERT_EQ(cache.init({1, hkv, d, heed::dtype::f32, 0, 1}), status::ok);
    heed::callback_policy pol;  // never scores (no budget): only its needs matter
    pol.wants.channels = 1;
    pol.wants.column_mass = true;
    pol.wants.accumulate.mode = mc.mode;
    pol.wants.accumulate.lambda = 0.8f;
    pol.wants.accumulate.reduce = mc.reduce;
    heed::eviction_loop loop;
    heed::eviction_config cfg = budget_only(0);
    if (mc.settings) {
      cfg.logits.softcap = 2.f;
      cfg.logits.scale = 0.3f;
      cfg.logits.sink_logits = sinks.data();
    }
    ASSERT_EQ(loop.init(&cache, pol, cfg, hq), status::ok);
    std::vector<float> o(std::size_t(n * hq * d));
    // A first chunk of 3 tokens, then a chunk of n: the second sees the first's keys.
    ASSERT_EQ(
        loop.step(0, heed::make_view(s.q.data(), 3, hq, d), heed::make_view(s.k.data(), 3, hkv, d),
                  heed::make_view(s.v.data(), 3, hkv, d),
                  heed::make_mutable_view(o.data(), 3, hq, d)),
        status::ok);
    ASSERT_EQ(loop.step(0, heed::make_view(s.q.data() + 3 * hq * d, n, hq, d),
                        heed::make_view(s.k.data() + 3 * hkv * d, n, hkv, d),
                        heed::make_view(s.v.data() + 3 * hkv * d, n, hkv, d),
                        heed::make_mutable_view(o.data(), n, hq, d)),
              status::ok);
    heed_ref::attention_problem p;
    p.lq = n + 3;
    p.lk = n + 3;
    p.hq = hq;
    p.hkv = hkv;
    p.d = d;
    p.resize();
    for (std::size_t i = 0; i < s.q.size(); ++i) p.q[i] = s.q[i];
    for (std::size_t i = 0; i < s.k.size(); ++i) p.k[i] = s.k[i], p.v[i] = s.v[i];
    if (mc.settings) {
      p.softcap = 2.0;
      p.scale = 0.3;
      p.sink_logits.assign(sinks.begin(), sinks.end());
    }
    const auto r = heed_ref::naive_attention(p);
    for (int h = 0; h < hkv; ++h) {
      for (std::int64_t j = 0; j < n + 3; ++j) {
        // Every row folds in order, as n + 3 decode steps would.
        double want = 0;
        for (std::int64_t i = 0; i < n + 3; ++i) {
          double red = 0;
          for (int g = 0; g < group; ++g) {
            const double x = r.prob_at(h * group + g, i, j);
            red = mc.reduce == heed::head_reduce::mean ? red + x / group : std::max(red, x);
          }
          if (mc.mode == heed::accumulate_mode::sum) want += red;
          if (mc.mode == heed::accumulate_mode::decay) want = 0.8 * want + red;
          if (mc.mode == heed::accumulate_mode::last) want = red;
        }
        EXPECT_NEAR(cache.scores(0, h, 0)[j], want, 2e-5)
            << "mode " << int(mc.mode) << " head " << h << " key " << j;
      }
    }
  }
}

// SnapKV after a prefill longer than the budget: the kept set equals a float64 recomputation
// (window mean of the last W rows' full-softmax probabilities, max pool 7, group mean, window
// protected, top-k with ties to the later key), up to near-ties within 1e-6.
// With a soft cap in the loop's settings, SnapKV's window scores are of the capped logits.
TEST(EvictionLoop, SnapKVPrefillMatchesReference) {
  for (const double cap : {0.0, 1.5}) {
    SCOPED_TRACE(cap);
    const int hq = 8, hkv = 2, group = 4;
    const std::int64_t d = 64, L = 300, budget = 40, W = 16;
    const stream s = make_stream(hq, hkv, d, L, 31);
    heed::kv_cache cache;
    ASSERT_EQ(cache.init({1, hkv, d, heed::dtype::f32, 0, 0}), status::ok);
    heed::snapkv_policy snap;
    snap.window = W;
    heed::eviction_loop loop;
    heed::eviction_config cfg = budget_only(budget);
    cfg.logits.softcap = float(cap);
    ASSERT_EQ(loop.init(&cache, snap, cfg, hq), status::ok);
    std::vector<float> o(std::size_t(L * hq * d));
    heed::thread_pool_executor ex(2);
    ASSERT_EQ(
        loop.step(0, heed::make_view(s.q.data(), L, hq, d), heed::make_view(s.k.data(), L, hkv, d),
                  heed::make_view(s.v.data(), L, hkv, d),
                  heed::make_mutable_view(o.data(), L, hq, d), ex),
        status::ok);
    for (int h = 0; h < hkv; ++h) {
      std::vector<double> mean(std::size_t(L), 0.0);
      for (int g = 0; g < group; ++g) {
        std::vector<double> col(std::size_t(L), 0.0);
        for (std::int64_t i = L - W; i < L; ++i) {
          std::vector<double> sc(std::size_t(i + 1));
          double m = -INFINITY, z = 0;
          for (std::int64_t j = 0; j <= i; ++j) {
            double a = 0;
            for (std::int64_t c = 0; c < d; ++c)
              a += double(s.q[(i * hq + h * group + g) * d + c]) * s.k[(j * hkv + h) * d + c];
            sc[std::size_t(j)] = a / std::sqrt(double(d));
            if (cap > 0) sc[std::size_t(j)] = cap * std::tanh(sc[std::size_t(j)] / cap);
            m = std::max(m, sc[std::size_t(j)]);
          }
          for (std::int64_t j = 0; j <= i; ++j) z += std::exp(sc[std::size_t(j)] - m);
          for (std::int64_t j = 0; j <= i; ++j)
            col[std::size_t(j)] += std::exp(sc[std::size_t(j)] - m) / z / double(W);
        }
        for (std::int64_t j = 0; j < L; ++j) {
          double mx = -INFINITY;
          for (std::int64_t t = std::max<std::int64_t>(0, j - 3); t <= std::min(L - 1, j + 3); ++t)
            mx = std::max(mx, col[std::size_t(t)]);
          mean[std::size_t(j)] += mx / group;
        }
      }
      std::vector<float> score(mean.begin(), mean.end());
      const auto want = reference_keep(score, budget, W);
      ASSERT_EQ(cache.length(0, h), budget);
      std::vector<std::int64_t> got(cache.positions(0, h), cache.positions(0, h) + budget);
      if (got != std::vector<std::int64_t>(want.begin(), want.end())) {
        // Accept only near-ties at the boundary.
        std::vector<double> kept_scores;
        for (auto j : want) kept_scores.push_back(mean[std::size_t(j)]);
        const double threshold = *std::min_element(kept_scores.begin(), kept_scores.end());
        for (auto j : got)
          if (std::find(want.begin(), want.end(), j) == want.end()) {
            EXPECT_NEAR(mean[std::size_t(j)], threshold, 1e-6) << "head " << h << " key " << j;
          }
      }
    }
  }
}

// ---- registry: every policy x every wrapper, invariants on random and adversarial streams ----

struct registry_entry {
  std::string name;
  std::function<heed::any_policy()> make;
  std::int64_t n_sink = 0;    // entries that must survive (first positions)
  double recent_share = 0.0;  // share of the budget that must be the most recent positions
  bool global = false;        // head_adaptive: per-head lengths vary, the layer total is exact
};

std::vector<registry_entry> registry() {
  std::vector<registry_entry> r;
  auto base = std::vector<registry_entry>{
      {"streaming_llm", [] { return heed::any_policy(heed::streaming_llm_policy{}); }, 4, 0},
      {"h2o", [] { return heed::any_policy(heed::h2o_policy{}); }, 0, 0.5},
      {"a2sf", [] { return heed::any_policy(heed::a2sf_policy{}); }, 0, 0},
      {"tova", [] { return heed::any_policy(heed::tova_policy{}); }, 0, 0},
      {"random", [] { return heed::any_policy(heed::random_policy{7}); }, 0, 0},
      {"knorm", [] { return heed::any_policy(heed::knorm_policy{}); }, 0, 0},
      {"expected_attention",
       [] {
         heed::expected_attention_policy p;
         p.window = 8;
         return heed::any_policy(p);
       },
       4, 0},
      {"lagkv",
       [] {
         heed::lagkv_policy p;
         p.options.lag = 4;
         p.options.n_sink = 2;
         return heed::any_policy(p);
       },
       0, 0},
      {"threshold", [] { return heed::any_policy(heed::threshold_policy{}); }, 0, 0},
      {"column_mean", [] { return heed::any_policy(heed::column_mean_policy{}); }, 0, 0},
      {"snapkv",
       [] {
         heed::snapkv_policy p;
         p.window = 4;
         return heed::any_policy(p);
       },
       0, 0},
      {"sage_kv", [] { return heed::any_policy(heed::sage_kv_policy{}); }, 4, 0},
      {"q_filters (self-calibrated)",
       [] {
         heed::q_filters_policy p;
         p.window = 8;
         return heed::any_policy(p);
       },
       0, 0},
      {"q_filters (given filters)",
       [] {
         heed::q_filters_policy p;
         // [2 layers][kv heads][d] for the streams below (hkv * d = 64 each): a fixed pattern.
         for (int i = 0; i < 2 * 64; ++i) p.filters.push_back(float((i * 7) % 5) - 2.f);
         p.n_sink = 2;
         return heed::any_policy(p);
       },
       2, 0},
      {"leverage", [] { return heed::any_policy(heed::leverage_policy{}); }, 0, 0},
      {"leverage rank 2",
       [] {
         heed::leverage_policy p;
         p.options.rank = 2;
         p.options.ridge = 0;
         return heed::any_policy(p);
       },
       0, 0},
      {"compactor", [] { return heed::any_policy(heed::compactor_policy{}); }, 8, 0},
  };
  for (auto& e : base) r.push_back(e);
  // Wrappers.
  r.push_back({"protect(h2o)",
               [] { return heed::any_policy(heed::protect(heed::h2o_policy{}, 2, 3)); }, 2, 0.5});
  r.push_back({"protect(random)",
               [] { return heed::any_policy(heed::protect(heed::random_policy{3}, 4, 4)); }, 4, 0});
  r.push_back({"protect(leverage)",
               [] { return heed::any_policy(heed::protect(heed::leverage_policy{}, 2, 3)); }, 2,
               0});
  r.push_back({"head_adaptive(q_filters)",
               [] { return heed::any_policy(heed::head_adaptive(heed::q_filters_policy{}, 0.2)); },
               0, 0, true});
  r.push_back({"caote(compactor)",
               [] { return heed::any_policy(heed::caote(heed::compactor_policy{})); }, 8, 0});
  r.push_back({"head_adaptive(tova)",
               [] { return heed::any_policy(heed::head_adaptive(heed::tova_policy{}, 0.2)); }, 0, 0,
               true});
  r.push_back({"head_adaptive(protect(a2sf))",
               [] {
                 return heed::any_policy(
                     heed::head_adaptive(heed::protect(heed::a2sf_policy{}, 1, 2), 0.5));
               },
               0, 0, true});
  r.push_back({"composed(h2o,streaming)",
               [] {
                 return heed::any_policy(
                     heed::composed(heed::h2o_policy{}, heed::streaming_llm_policy{}, 1.f, 0.5f));
               },
               4, 0.5});
  // Issue 22's wrappers: ChunkKV, CriticalKV, CriticalAdaKV, SimLayerKV (lazy_threshold 0: a
  // layer with a query is lazy as soon as its sinks or recent entries draw any attention; 2:
  // never lazy, the inner policy; 0.65: the default, decided by the stream).
  r.push_back({"chunked(h2o)",
               [] { return heed::any_policy(heed::chunked(heed::h2o_policy{}, 3)); }, 0, 0.5});
  r.push_back({"chunked(streaming)",
               [] { return heed::any_policy(heed::chunked(heed::streaming_llm_policy{})); }, 4, 0});
  r.push_back({"critical(snapkv)",
               [] {
                 heed::snapkv_policy p;
                 p.window = 4;
                 return heed::any_policy(heed::critical(p));
               },
               0, 0});
  r.push_back({"critical(lagkv)",
               [] {
                 heed::lagkv_policy p;
                 p.options.lag = 4;
                 return heed::any_policy(heed::critical(p, 1e-4f, 0.3));
               },
               0, 0});
  r.push_back({"critical_adaptive(h2o)",
               [] { return heed::any_policy(heed::critical_adaptive(heed::h2o_policy{})); }, 0, 0,
               true});
  r.push_back({"simlayer(h2o) lazy",
               [] {
                 heed::simlayer_options o;
                 o.lazy_threshold = 0.f;
                 return heed::any_policy(heed::simlayer(heed::h2o_policy{}, o));
               },
               4, 0.5});
  r.push_back({"simlayer(tova) busy",
               [] {
                 heed::simlayer_options o;
                 o.lazy_threshold = 2.f;
                 o.n_last = 3;
                 return heed::any_policy(heed::simlayer(heed::tova_policy{}, o));
               },
               4, 0});
  r.push_back({"simlayer(chunked(snapkv))",
               [] {
                 heed::snapkv_policy p;
                 p.window = 4;
                 return heed::any_policy(heed::simlayer(heed::chunked(p, 4)));
               },
               4, 0});
  r.push_back(
      {"composed(random,tova)",
       [] { return heed::any_policy(heed::composed(heed::random_policy{1}, heed::tova_policy{})); },
       0, 0});
  return r;
}

// Runs a stream through the loop; returns every step's positions for the determinism check.
// high >= 0: a tiered cache (f16, demoted to q4) keeping at most `high` entries per head in f16.
std::vector<std::int64_t> run_registry(const registry_entry& e, const stream& s,
                                       std::int64_t budget, std::int64_t slack, std::int64_t every,
                                       int threads, std::int64_t page_rows = 0,
                                       std::int64_t high = -1) {
  SCOPED_TRACE(e.name + " budget " + std::to_string(budget) + " pages " +
               std::to_string(page_rows) + " high " + std::to_string(high));
  heed::kv_cache cache;
  heed::kv_cache_config cc{2, s.hkv, s.d, heed::dtype::f16, 0, 2};
  cc.page_rows = page_rows;
  cc.tiered = high >= 0;
  cc.group = high >= 0 ? 8 : 0;
  EXPECT_EQ(cache.init(cc), status::ok);
  heed::eviction_loop loop;
  heed::eviction_config cfg;
  cfg.budget = budget;
  cfg.slack = slack;
  cfg.every = every;
  cfg.high_budget = high;
  EXPECT_EQ(loop.init(&cache, e.make(), cfg, s.hq), status::ok);
  heed::thread_pool_executor ex(threads);
  std::vector<float> o(std::size_t(s.hq * s.d));
  std::vector<std::int64_t> trace;
  for (std::int64_t t = 0; t < s.n; ++t) {
    for (int layer = 0; layer < 2; ++layer) {
      const status st =
          loop.step(layer, token(s.q, t, s.hq, s.d), token(s.k, t, s.hkv, s.d),
                    token(s.v, t, s.hkv, s.d), heed::make_mutable_view(o.data(), 1, s.hq, s.d), ex);
      EXPECT_EQ(st, status::ok) << "step " << t << " layer " << layer;
      if (st != status::ok) return trace;
      for (float x : o) EXPECT_TRUE(std::isfinite(x));
      std::int64_t total = 0;
      for (int h = 0; h < s.hkv; ++h) {
        const std::int64_t len = cache.length(layer, h);
        const std::int64_t* pos = cache.positions(layer, h);
        total += len;
        for (std::int64_t i = 1; i < len; ++i) EXPECT_LT(pos[i - 1], pos[i]);
        if (len > 0) {
          EXPECT_EQ(pos[len - 1], t) << "the newest token is always attended";
        }
        if (high >= 0) {
          const std::int64_t in_high = len - cache.low_length(layer, h);
          EXPECT_LE(in_high, high + slack);
          // (A layer-wide selection may evict a head's high entries below that.)
          if (slack == 0 && every == 0 && !e.global) {
            EXPECT_EQ(in_high, std::min(len, high)) << "demotion keeps the high tier full";
          }
          if (high > 0) {
            EXPECT_EQ(cache.tiers(layer, h)[len - 1], 0) << "the newest token is of the high tier";
          }
          for (std::int64_t i = 0; i < len; ++i) trace.push_back(cache.tiers(layer, h)[i]);
        }
        if (budget == 0 || e.global) continue;
        EXPECT_LE(len, budget + slack);
        if (slack == 0 && every == 0) {
          EXPECT_EQ(len, std::min(t + 1, budget));
        }
        // Protected entries: the first n_sink positions and a recent window survive (the window
        // is taken from the entries before the newest token, when the cache was full).
        const std::int64_t sinks = std::min(e.n_sink, budget - 1);
        if (slack == 0 && every == 0) {
          for (std::int64_t i = 0; i < std::min(sinks, t + 1); ++i) EXPECT_EQ(pos[i], i);
          const std::int64_t recent =
              std::min<std::int64_t>(std::int64_t(double(budget) * e.recent_share), budget - 1);
          for (std::int64_t i = 0; i < std::min(recent, len); ++i)
            EXPECT_EQ(pos[len - 1 - i], t - i) << "recent window";
        }
        for (std::int64_t i = 0; i < len; ++i) trace.push_back(pos[i]);
      }
      if (budget > 0 && e.global && slack == 0 && every == 0) {
        EXPECT_EQ(total, std::min(t + 1, budget) * s.hkv) << "layer total exact";
      }
    }
  }
  return trace;
}

TEST(PolicyRegistry, InvariantsForEveryPolicyAndWrapper) {
  const stream random_stream = make_stream(8, 2, 32, 70, 5);
  const stream constant_stream = make_stream(4, 4, 16, 40, 6, true);  // all scores tie
  const stream one_head = make_stream(2, 1, 64, 50, 8);
  for (const auto& e : registry()) {
    for (const stream* s : {&random_stream, &constant_stream, &one_head}) {
      for (std::int64_t budget : {1, 2, 9, 16, 200}) {
        const auto a = run_registry(e, *s, budget, 0, 0, 1);
        const auto b = run_registry(e, *s, budget, 0, 0, 2);
        EXPECT_EQ(a, b) << e.name << ": deterministic across runs and thread counts";
      }
    }
    run_registry(e, random_stream, 0, 0, 0, 1);   // budget 0: no eviction
    run_registry(e, random_stream, 12, 5, 0, 1);  // periodic: slack
    run_registry(e, random_stream, 12, 4, 3, 2);  // periodic: every 3 steps
  }
}

// A paged cache: the same invariants, and the same keep-sets as the contiguous cache for every
// policy whose scores do not come from attention probabilities (those differ in the last bits:
// the decode kernel's partitions are the pages).
TEST(PolicyRegistry, PagedCacheKeepsTheSameInvariantsAndSets) {
  const stream random_stream = make_stream(8, 2, 32, 90, 5);
  for (const auto& e : registry()) {
    const heed::score_needs needs = e.make().needs();
    const bool exact = !needs.column_mass && !needs.last_output && !needs.last_probs;
    for (std::int64_t budget : {9, 40}) {
      const auto paged = run_registry(e, random_stream, budget, 0, 0, 2, 16);
      if (exact) {
        EXPECT_EQ(paged, run_registry(e, random_stream, budget, 0, 0, 1)) << e.name;
      }
    }
    run_registry(e, random_stream, 40, 7, 0, 1, 16);  // periodic: slack
  }
}

// A tiered cache: every policy and wrapper demotes before it evicts, with the same invariants,
// the high tier holding exactly min(length, high budget) entries, and the same sets and tiers for
// 1 and 2 threads.
TEST(PolicyRegistry, TieredCacheDemotesBeforeEvicting) {
  const stream random_stream = make_stream(8, 2, 32, 60, 5);
  for (const auto& e : registry()) {
    for (auto [budget, high] :
         {std::pair<std::int64_t, std::int64_t>{16, 6}, {9, 9}, {20, 0}, {0, 5}}) {
      const auto a = run_registry(e, random_stream, budget, 0, 0, 1, 0, high);
      const auto b = run_registry(e, random_stream, budget, 0, 0, 2, 0, high);
      EXPECT_EQ(a, b) << e.name << ": deterministic across thread counts";
    }
    run_registry(e, random_stream, 12, 5, 0, 1, 0, 4);  // periodic: slack
  }
}

// One eviction of a tiered head against a reference: the keep-set is the policy's as without
// tiers, and of the kept entries in the high tier the best high_target by score stay (the
// selection's recent window protected among them), the others are demoted.
struct channel_policy : heed::policy_base<channel_policy> {
  const char* name() const noexcept { return "channel"; }
  heed::score_needs needs() const noexcept {
    heed::score_needs n;
    n.channels = 1;
    return n;
  }
  heed::selection_spec selection(std::int64_t) const noexcept {
    heed::selection_spec s;
    s.protect.n_recent = 2;
    return s;
  }
  status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    std::copy(in.channel(head, 0), in.channel(head, 0) + in.length(head), out);
    return status::ok;
  }
};

TEST(EvictLayer, TieredHeadDemotesTheLowestScoredKeptEntries) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const std::int64_t n = 20 + trial, d = 16;
    heed::kv_cache cache;
    heed::kv_cache_config cc{1, 1, d, heed::dtype::f16, 0, 1};
    cc.tiered = true;
    cc.group = 8;
    ASSERT_EQ(cache.init(cc), status::ok);
    const stream s = make_stream(1, 1, d, n, unsigned(trial));
    ASSERT_EQ(
        cache.append(0, heed::make_view(s.k.data(), n, 1, d), heed::make_view(s.v.data(), n, 1, d)),
        status::ok);
    std::vector<float> sc(static_cast<std::size_t>(n));
    for (auto& x : sc) x = float(rng() % 50);  // ties too
    std::copy(sc.begin(), sc.end(), cache.scores(0, 0, 0));
    std::vector<std::int32_t> early;
    for (std::int32_t i = 0; i < n; ++i)
      if (rng() % 4 == 0) early.push_back(i);
    ASSERT_EQ(cache.demote(0, 0, early.data(), std::int64_t(early.size())), status::ok);
    std::vector<int> tier0(cache.tiers(0, 0), cache.tiers(0, 0) + n);
    const std::int64_t target = 8 + trial % 7, high_target = trial % 6 == 0 ? 0 : 2 + trial % 4;
    // Reference: the keep-set, then the best high_target of its high entries.
    const auto keep = reference_keep(sc, target, 2);
    std::vector<float> high_sc;
    std::vector<std::int64_t> high_at;
    for (auto i : keep)
      if (tier0[std::size_t(i)] == 0) {
        high_sc.push_back(sc[std::size_t(i)]);
        high_at.push_back(i);
      }
    std::vector<int> want_tier(keep.size(), 1);  // low entries stay low
    const auto stay = reference_keep(high_sc, high_target, 2);
    for (std::size_t r = 0; r < keep.size(); ++r) {
      const auto it = std::find(high_at.begin(), high_at.end(), keep[r]);
      if (it == high_at.end()) continue;
      const std::int64_t rank = it - high_at.begin();
      want_tier[r] = std::find(stay.begin(), stay.end(), rank) != stay.end() ? 0 : 1;
    }
    channel_policy policy;
    heed::policy_input in;
    in.cache = &cache;
    in.q_heads = 1;
    in.budget = target;
    heed::eviction_scratch scratch;
    ASSERT_EQ(heed::evict_layer(cache, policy, in, &target, scratch, &high_target), status::ok);
    ASSERT_EQ(cache.length(0, 0), std::int64_t(keep.size())) << trial;
    for (std::size_t r = 0; r < keep.size(); ++r) {
      EXPECT_EQ(cache.positions(0, 0)[r], keep[r]) << trial;
      EXPECT_EQ(int(cache.tiers(0, 0)[r]), want_tier[r]) << trial << " entry " << r;
      EXPECT_EQ(cache.scores(0, 0, 0)[r], sc[std::size_t(keep[r])]);
    }
  }
}

// Byte budgets: the entry budget init() derives, without and with demotion.
TEST(EvictionLoop, ByteBudgetsBecomeEntryBudgets) {
  heed::kv_cache cache;
  heed::kv_cache_config cc{1, 2, 64, heed::dtype::f16, 0, 1};
  cc.tiered = true;
  ASSERT_EQ(cache.init(cc), status::ok);
  const std::size_t hb = cache.entry_bytes(), lb = cache.low_entry_bytes();
  ASSERT_EQ(hb, 2 * 64 * 2 + 8 + 4 + 1u);
  ASSERT_EQ(lb, 2 * (32 + 4 * 2) + 8 + 4 + 1u);
  heed::eviction_loop loop;
  heed::eviction_config cfg;
  cfg.budget_bytes = 100 * hb + 7;
  ASSERT_EQ(loop.init(&cache, heed::h2o_policy{}, cfg, 4), status::ok);
  EXPECT_EQ(loop.config().budget, 100);
  cfg.high_budget = 40;
  ASSERT_EQ(loop.init(&cache, heed::h2o_policy{}, cfg, 4), status::ok);
  EXPECT_EQ(loop.config().budget, std::int64_t(40 + (60 * hb + 7) / lb));
  cfg.high_budget = 101;  // more than the bytes hold
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, cfg, 4), status::invalid_argument);
  cfg.high_budget = 40;
  cfg.budget = 10;  // two budgets
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, cfg, 4), status::invalid_argument);
  heed::kv_cache plain;
  ASSERT_EQ(plain.init({1, 2, 64, heed::dtype::f16, 0, 1}), status::ok);
  heed::eviction_config demote_plain;
  demote_plain.budget = 10;
  demote_plain.high_budget = 4;  // an untiered cache cannot demote
  EXPECT_EQ(loop.init(&plain, heed::h2o_policy{}, demote_plain, 4), status::invalid_argument);
  demote_plain.high_budget = 11;
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, demote_plain, 4), status::invalid_argument);
}

TEST(PolicyRegistry, StreamingLlmKeepsExactlySinksAndRecent) {
  const stream s = make_stream(4, 2, 16, 60, 9);
  heed::kv_cache cache;
  ASSERT_EQ(cache.init({1, 2, 16}), status::ok);
  heed::eviction_loop loop;
  ASSERT_EQ(loop.init(&cache, heed::streaming_llm_policy{}, budget_only(10), 4), status::ok);
  std::vector<float> o(4 * 16);
  for (std::int64_t t = 0; t < s.n; ++t)
    ASSERT_EQ(loop.step(0, token(s.q, t, 4, 16), token(s.k, t, 2, 16), token(s.v, t, 2, 16),
                        heed::make_mutable_view(o.data(), 1, 4, 16)),
              status::ok);
  for (int h = 0; h < 2; ++h) {
    const std::int64_t want[10] = {0, 1, 2, 3, 54, 55, 56, 57, 58, 59};
    ASSERT_EQ(cache.length(0, h), 10);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(cache.positions(0, h)[i], want[i]);
  }
}

TEST(PolicyRegistry, DuoAttentionKeepsRetrievalHeadsWhole) {
  const stream s = make_stream(4, 2, 16, 60, 12);
  heed::kv_cache cache;
  ASSERT_EQ(cache.init({2, 2, 16}), status::ok);
  heed::duo_attention_policy duo;
  duo.retrieval = {1, 0, 0, 1};  // layer 0: head 0 retrieval; layer 1: head 1 retrieval
  duo.n_sink = 3;
  duo.n_recent = 5;
  heed::eviction_loop loop;
  ASSERT_EQ(loop.init(&cache, duo, budget_only(8), 4), status::ok);
  std::vector<float> o(4 * 16);
  for (std::int64_t t = 0; t < s.n; ++t)
    for (int l = 0; l < 2; ++l)
      ASSERT_EQ(loop.step(l, token(s.q, t, 4, 16), token(s.k, t, 2, 16), token(s.v, t, 2, 16),
                          heed::make_mutable_view(o.data(), 1, 4, 16)),
                status::ok);
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 2; ++h) {
      const bool retrieval = duo.retrieval[std::size_t(l * 2 + h)] != 0;
      if (retrieval) {
        ASSERT_EQ(cache.length(l, h), s.n);
        continue;
      }
      // Sinks, then the n_recent before the newest token, then the newest.
      ASSERT_EQ(cache.length(l, h), 3 + 5);
      const std::int64_t want[8] = {0, 1, 2, 55, 56, 57, 58, 59};
      for (int i = 0; i < 8; ++i) EXPECT_EQ(cache.positions(l, h)[i], want[i]);
    }
}

TEST(PolicyRegistry, KnormKeepsTheLowestKeyNorms) {
  const stream s = make_stream(2, 2, 32, 40, 13);
  heed::kv_cache cache;
  ASSERT_EQ(cache.init({1, 2, 32}), status::ok);
  heed::eviction_loop loop;
  const std::int64_t budget = 10;
  ASSERT_EQ(loop.init(&cache, heed::knorm_policy{}, budget_only(budget), 2), status::ok);
  std::vector<float> o(2 * 32);
  // Reference: before each append the kept set shrinks to the budget - 1 lowest norms.
  std::vector<std::vector<std::int64_t>> kept(2);
  for (std::int64_t t = 0; t < s.n; ++t) {
    for (int h = 0; h < 2; ++h) {
      if (std::int64_t(kept[h].size()) + 1 > budget) {
        std::vector<float> score;
        for (auto j : kept[h]) {
          double n2 = 0;
          for (int e = 0; e < 32; ++e)
            n2 += double(s.k[(j * 2 + h) * 32 + e]) * s.k[(j * 2 + h) * 32 + e];
          score.push_back(float(-std::sqrt(n2)));
        }
        const auto keep = reference_keep(score, budget - 1, 0);
        std::vector<std::int64_t> k2;
        for (auto i : keep) k2.push_back(kept[h][std::size_t(i)]);
        kept[h] = k2;
      }
      kept[h].push_back(t);
    }
    ASSERT_EQ(loop.step(0, token(s.q, t, 2, 32), token(s.k, t, 2, 32), token(s.v, t, 2, 32),
                        heed::make_mutable_view(o.data(), 1, 2, 32)),
              status::ok);
    for (int h = 0; h < 2; ++h) {
      ASSERT_EQ(cache.length(0, h), std::int64_t(kept[h].size()));
      for (std::size_t i = 0; i < kept[h].size(); ++i)
        ASSERT_EQ(cache.positions(0, h)[i], kept[h][i]) << t;
    }
  }
}

extern "C" heed_status accumulated_score(void* user, const heed_policy_head* h, float* out) {
  ++*static_cast<int*>(user);
  if (h->accumulated == nullptr || h->positions == nullptr || h->keys == nullptr)
    return HEED_STATUS_NULL_POINTER;
  for (int64_t j = 0; j < h->length; ++j) out[j] = h->accumulated[j];
  return HEED_STATUS_OK;
}

TEST(PolicyRegistry, CCallbackPolicyEqualsTheSameScoreInCxx) {
  const stream s = make_stream(8, 2, 32, 50, 21);
  int calls = 0;
  heed::callback_policy cb;
  cb.fn = accumulated_score;
  cb.user = &calls;
  cb.wants.channels = 1;
  cb.wants.column_mass = true;
  heed::h2o_policy h2o;
  h2o.recent_fraction = 0;  // the same score, no recent window
  std::vector<std::int64_t> traces[2];
  for (int which = 0; which < 2; ++which) {
    heed::kv_cache cache;
    ASSERT_EQ(cache.init({1, 2, 32, heed::dtype::bf16, 0, 1}), status::ok);
    heed::eviction_loop loop;
    ASSERT_EQ(loop.init(&cache, which == 0 ? heed::any_policy(cb) : heed::any_policy(h2o),
                        budget_only(12), 8),
              status::ok);
    std::vector<float> o(8 * 32);
    for (std::int64_t t = 0; t < s.n; ++t) {
      ASSERT_EQ(loop.step(0, token(s.q, t, 8, 32), token(s.k, t, 2, 32), token(s.v, t, 2, 32),
                          heed::make_mutable_view(o.data(), 1, 8, 32)),
                status::ok);
      for (int h = 0; h < 2; ++h)
        for (std::int64_t i = 0; i < cache.length(0, h); ++i)
          traces[which].push_back(cache.positions(0, h)[i]);
    }
  }
  EXPECT_EQ(traces[0], traces[1]);
  EXPECT_EQ(calls, 2 * (50 - 12));  // both heads, every step from t = 12 (the cache is full)
  // A failing callback aborts the eviction with its status.
  heed::callback_policy none;
  heed::kv_cache cache;
  ASSERT_EQ(cache.init({1, 1, 8}), status::ok);
  heed::eviction_loop loop;
  ASSERT_EQ(loop.init(&cache, none, budget_only(2), 1), status::ok);
  std::vector<float> x(8, 0.5f), o(8);
  for (int t = 0; t < 2; ++t)
    ASSERT_EQ(
        loop.step(0, heed::make_view(x.data(), 1, 1, 8), heed::make_view(x.data(), 1, 1, 8),
                  heed::make_view(x.data(), 1, 1, 8), heed::make_mutable_view(o.data(), 1, 1, 8)),
        status::ok);
  EXPECT_EQ(
      loop.step(0, heed::make_view(x.data(), 1, 1, 8), heed::make_view(x.data(), 1, 1, 8),
                heed::make_view(x.data(), 1, 1, 8), heed::make_mutable_view(o.data(), 1, 1, 8)),
      status::null_pointer);
}

TEST(PolicyRegistry, ColumnMeanDividesByTheQueriesThatSawEachEntry) {
  heed::kv_cache cache;
  ASSERT_EQ(cache.init({1, 1, 4, heed::dtype::f32, 0, 1}), status::ok);
  std::vector<float> x(4 * 3, 1.f);
  const std::int64_t pos[3] = {2, 5, 9};
  ASSERT_EQ(
      cache.append(0, heed::make_view(x.data(), 3, 1, 4), heed::make_view(x.data(), 3, 1, 4), pos),
      status::ok);
  const float mass[3] = {4.f, 1.5f, 0.25f};
  for (int j = 0; j < 3; ++j) cache.scores(0, 0, 0)[j] = mass[j];
  heed::policy_input in;
  in.cache = &cache;
  in.q_heads = 1;
  in.step = 10;  // queries at positions 0..9 have run
  heed::column_mean_policy cm;
  float out[3];
  ASSERT_EQ(cm.score(in, 0, out, {}), status::ok);
  EXPECT_FLOAT_EQ(out[0], 4.f / 8.f);
  EXPECT_FLOAT_EQ(out[1], 1.5f / 5.f);
  EXPECT_FLOAT_EQ(out[2], 0.25f / 1.f);
}

TEST(PolicyRegistry, PyramidBudgetsSumExactlyAndShrinkWithDepth) {
  for (int layers : {1, 2, 5, 32}) {
    for (std::int64_t avg : {0, 1, 7, 128, 1000}) {
      for (double beta : {1.0, 2.0, 20.0}) {
        std::vector<std::int64_t> b(static_cast<std::size_t>(layers));
        ASSERT_EQ(heed::pyramid_budgets(layers, avg, beta, 0, b.data()), status::ok);
        EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::int64_t(0)), layers * avg);
        for (int l = 1; l < layers; ++l) EXPECT_LE(b[l], b[l - 1] + 1);
        for (auto x : b) EXPECT_GE(x, 0);
        if (beta == 1.0) {
          for (auto x : b) EXPECT_EQ(x, avg);
        }
      }
    }
  }
  std::vector<std::int64_t> b(4);
  ASSERT_EQ(heed::pyramid_budgets(4, 100, 4.0, 30, b.data()), status::ok);
  EXPECT_EQ(b[0] + b[1] + b[2] + b[3], 400);
  EXPECT_GE(b[3], 30);
  EXPECT_GT(b[0], b[3]);
  EXPECT_EQ(heed::pyramid_budgets(4, 100, 0.5, 0, b.data()), status::invalid_argument);
  EXPECT_EQ(heed::pyramid_budgets(4, 10, 2.0, 11, b.data()), status::invalid_argument);
  EXPECT_EQ(heed::pyramid_budgets(0, 10, 2.0, 0, b.data()), status::invalid_argument);
  EXPECT_EQ(heed::pyramid_budgets(4, 10, 2.0, 0, nullptr), status::null_pointer);
}

TEST(PolicyRegistry, LoopRejectsBadConfiguration) {
  heed::kv_cache cache;
  heed::eviction_loop loop;
  EXPECT_EQ(loop.init(nullptr, heed::h2o_policy{}, budget_only(8), 4), status::null_pointer);
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, budget_only(8), 4), status::invalid_argument);
  ASSERT_EQ(cache.init({2, 2, 16, heed::dtype::f32, 0, 0}), status::ok);
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, budget_only(8), 4), status::invalid_argument)
      << "H2O needs a score channel";
  ASSERT_EQ(cache.init({2, 2, 16, heed::dtype::f32, 0, 1}), status::ok);
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, budget_only(8), 3), status::shape_mismatch);
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, budget_only(-1), 4), status::invalid_argument);
  heed::eviction_config bad;
  bad.layer_budgets = {4};  // two layers
  EXPECT_EQ(loop.init(&cache, heed::h2o_policy{}, bad, 4), status::invalid_argument);
  ASSERT_EQ(loop.init(&cache, heed::h2o_policy{}, budget_only(8), 4), status::ok);
  std::vector<float> x(4 * 16, 0.1f), o(4 * 16);
  EXPECT_EQ(
      loop.step(2, heed::make_view(x.data(), 1, 4, 16), heed::make_view(x.data(), 1, 2, 16),
                heed::make_view(x.data(), 1, 2, 16), heed::make_mutable_view(o.data(), 1, 4, 16)),
      status::invalid_argument);
  EXPECT_EQ(
      loop.step(0, heed::make_view(x.data(), 1, 2, 16), heed::make_view(x.data(), 1, 2, 16),
                heed::make_view(x.data(), 1, 2, 16), heed::make_mutable_view(o.data(), 1, 2, 16)),
      status::shape_mismatch);
  heed::any_policy empty;
  EXPECT_FALSE(bool(empty));
  // Budget beyond the cache's capacity.
  heed::kv_cache limited;
  heed::kv_cache_config lc{2, 2, 16, heed::dtype::f32, 0, 1};
  lc.capacity = 10;
  ASSERT_EQ(limited.init(lc), status::ok);
  EXPECT_EQ(loop.init(&limited, heed::h2o_policy{}, budget_only(11), 4), status::invalid_argument);
  EXPECT_EQ(loop.init(&limited, heed::h2o_policy{}, budget_only(0), 4), status::invalid_argument);
  heed::eviction_config slack;
  slack.budget = 8;
  slack.slack = 3;
  EXPECT_EQ(loop.init(&limited, heed::h2o_policy{}, slack, 4), status::invalid_argument);
  ASSERT_EQ(loop.init(&limited, heed::h2o_policy{}, budget_only(10), 4), status::ok);
  for (int t = 0; t < 30; ++t)  // the loop keeps the cache within its capacity
    ASSERT_EQ(
        loop.step(1, heed::make_view(x.data(), 1, 4, 16), heed::make_view(x.data(), 1, 2, 16),
                  heed::make_view(x.data(), 1, 2, 16), heed::make_mutable_view(o.data(), 1, 4, 16)),
        status::ok);
  EXPECT_EQ(limited.length(1, 0), 10);
}

}  // namespace
