// The policy registry (heed/policy/registry.hpp): every name builds, parameters are checked, and
// a policy by name runs exactly as the same policy built by hand (outputs and kept positions bit
// for bit), including heed-eval's choices (examples/llama2c/policies.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "heed/policy/admission.hpp"
#include "heed/policy/attention_free.hpp"
#include "heed/policy/caote.hpp"
#include "heed/policy/chunkkv.hpp"
#include "heed/policy/critical_kv.hpp"
#include "heed/policy/duo_attention.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/leverage.hpp"
#include "heed/policy/q_filters.hpp"
#include "heed/policy/random.hpp"
#include "heed/policy/registry.hpp"
#include "heed/policy/simlayer_kv.hpp"
#include "heed/policy/snapkv.hpp"
#include "heed/policy/streaming_llm.hpp"
#include "heed/policy/wrappers.hpp"

namespace {

using heed::status;

constexpr int kLayers = 2, kHq = 4, kHkv = 2;
constexpr std::int64_t kD = 64, kPrefill = 20, kDecode = 30, kBudget = 12;

struct trace {
  std::vector<float> out;
  std::vector<std::int64_t> positions;
};

heed::tensor_view view(const float* p, std::int64_t n, int heads) {
  heed::tensor_view t;
  t.data = p;
  t.seq = n;
  t.heads = heads;
  t.dim = kD;
  t.seq_stride = heads * kD;
  t.head_stride = kD;
  return t;
}

trace run(const heed::any_policy& p, std::int64_t budget = kBudget) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.f, 1.f);
  const std::int64_t n = kPrefill + kDecode;
  std::vector<float> q(std::size_t(kLayers * n * kHq * kD)),
      k(std::size_t(kLayers * n * kHkv * kD)), v(k.size());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = g(rng);
  heed::kv_cache cache;
  heed::kv_cache_config cfg;
  cfg.layers = kLayers;
  cfg.kv_heads = kHkv;
  cfg.head_dim = kD;
  cfg.score_channels = 1;
  EXPECT_EQ(cache.init(cfg), status::ok);
  heed::eviction_loop loop;
  heed::eviction_config ec;
  ec.budget = budget;
  EXPECT_EQ(loop.init(&cache, p, ec, kHq), status::ok);
  trace t;
  std::vector<float> o;
  auto step = [&](int l, std::int64_t first, std::int64_t m) {
    o.assign(std::size_t(m * kHq * kD), 0.f);
    heed::mutable_tensor_view ov;
    ov.data = o.data();
    ov.seq = m;
    ov.heads = kHq;
    ov.dim = kD;
    ov.seq_stride = kHq * kD;
    ov.head_stride = kD;
    const std::size_t qo = std::size_t((l * n + first) * kHq * kD);
    const std::size_t ko = std::size_t((l * n + first) * kHkv * kD);
    EXPECT_EQ(loop.step(l, view(q.data() + qo, m, kHq), view(k.data() + ko, m, kHkv),
                        view(v.data() + ko, m, kHkv), ov),
              status::ok);
    t.out.insert(t.out.end(), o.begin(), o.end());
    for (int h = 0; h < kHkv; ++h)
      t.positions.insert(t.positions.end(), cache.positions(l, h),
                         cache.positions(l, h) + cache.length(l, h));
  };
  for (int l = 0; l < kLayers; ++l) step(l, 0, kPrefill);
  for (std::int64_t i = kPrefill; i < n; ++i)
    for (int l = 0; l < kLayers; ++l) step(l, i, 1);
  return t;
}

heed::any_policy by_name(const char* name, std::vector<heed::policy_param> params = {}) {
  heed::any_policy p;
  EXPECT_EQ(heed::make_policy(name, params.data(), params.size(), &p), status::ok) << name;
  return p;
}

void expect_same(const heed::any_policy& a, const heed::any_policy& b, const char* what) {
  const trace x = run(a), y = run(b);
  ASSERT_EQ(x.out.size(), y.out.size()) << what;
  EXPECT_EQ(std::memcmp(x.out.data(), y.out.data(), x.out.size() * sizeof(float)), 0) << what;
  EXPECT_EQ(x.positions, y.positions) << what;
  EXPECT_STREQ(a.name(), b.name()) << what;
}

TEST(PolicyByName, EveryNameBuildsAndRuns) {
  ASSERT_GT(heed::policy_count(), 10);
  EXPECT_EQ(heed::policy_name(-1), nullptr);
  EXPECT_EQ(heed::policy_name(heed::policy_count()), nullptr);
  for (int i = 0; i < heed::policy_count(); ++i) {
    const std::string name = heed::policy_name(i);
    for (const std::string& n : {name, "caote_" + name}) {
      heed::any_policy p;
      ASSERT_EQ(heed::make_policy(n.c_str(), nullptr, 0, &p), status::ok) << n;
      const trace t = run(p);
      for (float x : t.out) ASSERT_TRUE(std::isfinite(x)) << n;
      // Every decode step ends at the budget (duo_attention's streaming heads keep their own).
      EXPECT_FALSE(t.positions.empty()) << n;
    }
  }
}

// The wrapper prefixes of issue 22 on every name (SimLayerKV refuses fixed head budgets).
TEST(PolicyByName, EveryNameBuildsAndRunsUnderTheNewWrappers) {
  for (int i = 0; i < heed::policy_count(); ++i) {
    const std::string name = heed::policy_name(i);
    for (const char* prefix : {"chunkkv_", "critical_", "simlayer_", "simlayer_chunkkv_"}) {
      const std::string n = prefix + name;
      heed::any_policy p;
      const bool fixed = name == "duo_attention" || name == "simlayer_kv";
      const status want =
          fixed && n.rfind("simlayer_", 0) == 0 ? status::invalid_argument : status::ok;
      ASSERT_EQ(heed::make_policy(n.c_str(), nullptr, 0, &p), want) << n;
      if (want != status::ok) continue;
      const trace t = run(p);
      for (float x : t.out) ASSERT_TRUE(std::isfinite(x)) << n;
      EXPECT_FALSE(t.positions.empty()) << n;
    }
  }
}

TEST(PolicyByName, SameAsBuiltByHand) {
  using namespace heed;
  expect_same(by_name("streaming_llm"), streaming_llm_policy{}, "streaming_llm");
  expect_same(by_name("h2o"), h2o_policy{}, "h2o");
  expect_same(by_name("a2sf"), a2sf_policy{}, "a2sf");
  expect_same(by_name("tova"), tova_policy{}, "tova");
  expect_same(by_name("column_mean"), column_mean_policy{}, "column_mean");
  expect_same(by_name("threshold"), threshold_policy{}, "threshold");
  expect_same(by_name("expected_attention"), expected_attention_policy{}, "expected_attention");
  expect_same(by_name("sage_kv"), sage_kv_policy{}, "sage_kv");
  expect_same(by_name("snapkv"), snapkv_policy{}, "snapkv");
  expect_same(by_name("adakv"), head_adaptive(snapkv_policy{}), "adakv");
  expect_same(by_name("knorm"), knorm_policy{}, "knorm");
  expect_same(by_name("key_diff"), key_diff_policy{}, "key_diff");
  key_diff_policy kd4;
  kd4.n_sink = 4;
  expect_same(by_name("key_diff", {{"sinks", 4}}), kd4, "key_diff 4");
  expect_same(by_name("lagkv"), lagkv_policy{}, "lagkv");
  expect_same(by_name("random"), random_policy{}, "random");
  // heed-eval's choices (examples/llama2c/policies.cpp before the registry).
  expect_same(by_name("snapkv", {{"sinks", 4}}), protect(snapkv_policy{}, 4, 0), "snapkv 4");
  expect_same(by_name("adakv", {{"sinks", 4}}), head_adaptive(protect(snapkv_policy{}, 4, 0)),
              "adakv 4");
  expect_same(by_name("knorm", {{"sinks", 4}}), protect(knorm_policy{}, 4, 0), "knorm 4");
  expect_same(by_name("q_filters"), q_filters_policy{}, "q_filters");
  q_filters_policy qf;
  qf.window = 8;
  qf.n_sink = 2;
  expect_same(by_name("q_filters", {{"window", 8}, {"sinks", 2}}), qf, "q_filters params");
  expect_same(by_name("leverage"), leverage_policy{}, "leverage");
  leverage_policy lev;
  lev.options.rank = 3;
  lev.options.ridge = 0;
  lev.options.center = false;
  lev.options.sketch = 16;
  lev.n_sink = 4;
  expect_same(
      by_name("leverage", {{"rank", 3}, {"ridge", 0}, {"center", 0}, {"sketch", 16}, {"sinks", 4}}),
      lev, "leverage params");
  expect_same(by_name("compactor"), compactor_policy{}, "compactor");
  compactor_policy cp;
  cp.blending = 0.5;
  cp.n_sink = 2;
  cp.n_recent = 1;
  expect_same(by_name("compactor", {{"blending", 0.5}, {"sinks", 2}, {"recent", 1}}), cp,
              "compactor params");
  admission_spec g;
  g.max_key_norm = 9.f;
  g.max_cosine = 0.5f;
  g.window = 4;
  g.refuse_when_full = true;
  expect_same(
      by_name("h2o",
              {{"admit_norm", 9}, {"admit_cosine", 0.5}, {"admit_window", 4}, {"admit_full", 1}}),
      admitted(h2o_policy{}, g), "h2o admitted");
  admission_spec g2;
  g2.max_cosine = 0.25f;
  expect_same(by_name("knorm", {{"sinks", 4}, {"admit_cosine", 0.25}}),
              admitted(protect(knorm_policy{}, 4, 0), g2), "knorm admitted");
  lagkv_policy lag8;
  lag8.options.lag = 8;
  expect_same(by_name("lagkv", {{"lag", 8}}), lag8, "lagkv 8");
  expect_same(by_name("caote_h2o"), caote(h2o_policy{}), "caote_h2o");
  expect_same(by_name("random", {{"seed", 1}, {"sinks", 4}, {"recent", 16}}),
              protect(random_policy{1}, 4, 16), "random 1");
  // Issue 22's wrappers.
  expect_same(by_name("chunkkv_snapkv"), chunked(snapkv_policy{}, 10), "chunkkv_snapkv");
  expect_same(by_name("chunkkv_h2o", {{"chunk_size", 4}}), chunked(h2o_policy{}, 4),
              "chunkkv_h2o 4");
  expect_same(by_name("critical_snapkv"), critical(snapkv_policy{}), "critical_snapkv");
  expect_same(by_name("critical_h2o", {{"epsilon", 0.01}, {"first_stage_ratio", 0.25}}),
              critical(h2o_policy{}, 0.01f, 0.25), "critical_h2o params");
  expect_same(by_name("critical_adakv"), critical_adaptive(snapkv_policy{}, 0.2), "critical_adakv");
  expect_same(by_name("critical_tova", {{"adaptive_floor", 0.5}}),
              critical_adaptive(tova_policy{}, 0.5), "critical_tova adaptive");
  expect_same(by_name("simlayer_kv"), simlayer(full_cache_policy{}), "simlayer_kv");
  simlayer_options so;
  so.lazy_threshold = 0.1f;
  so.n_last = 2;
  so.n_initial = 2;
  so.n_recent = 3;
  expect_same(by_name("simlayer_kv",
                      {{"lazy_threshold", 0.1}, {"n_last", 2}, {"n_initial", 2}, {"n_recent", 3}}),
              simlayer(full_cache_policy{}, so), "simlayer_kv params");
  expect_same(by_name("simlayer_h2o", {{"lazy_threshold", 0.1}}),
              simlayer(h2o_policy{}, simlayer_options{0.1f}), "simlayer_h2o");
  expect_same(by_name("simlayer_chunkkv_snapkv", {{"chunk_size", 3}}),
              simlayer(chunked(snapkv_policy{}, 3)), "simlayer_chunkkv_snapkv");
  // Parameters and wrappers.
  h2o_policy h;
  h.recent_fraction = 0.25;
  h.reduce = head_reduce::max;
  expect_same(by_name("h2o", {{"recent_fraction", 0.25}, {"reduce_max", 1}}), h, "h2o params");
  expect_same(by_name("h2o", {{"sinks", 2}, {"recent", 3}}), protect(h2o_policy{}, 2, 3),
              "h2o protect");
  expect_same(by_name("tova", {{"threshold_tau", 0.05}, {"min_keep", 2}}),
              with_threshold(tova_policy{}, 0.05f, 2), "tova threshold");
  expect_same(by_name("h2o", {{"coverage", 0.8}}), with_coverage(h2o_policy{}, 0.8), "coverage");
  expect_same(by_name("tova", {{"adaptive_floor", 0.5}}), head_adaptive(tova_policy{}, 0.5),
              "tova adaptive");
  a2sf_policy a;
  a.lambda = 0.5f;
  a.n_recent = 2;
  expect_same(by_name("a2sf", {{"lambda", 0.5}, {"recent", 2}}), a, "a2sf params");
  snapkv_policy s;
  s.window = 8;
  s.pool = pool_kind::avg;
  s.pool_kernel = 3;
  s.n_sink = 1;
  s.scale = 0.1f;
  expect_same(
      by_name("snapkv",
              {{"window", 8}, {"pool", 2}, {"pool_kernel", 3}, {"sinks", 1}, {"scale", 0.1}}),
      s, "snapkv params");
  expected_attention_policy e;
  e.window = 8;
  e.n_sink = 2;
  e.options.use_covariance = false;
  e.options.weight_by_value_norm = false;
  expect_same(by_name("expected_attention",
                      {{"window", 8}, {"sinks", 2}, {"covariance", 0}, {"value_norm", 0}}),
              e, "expected_attention params");
  duo_attention_policy d;
  d.retrieval = {0, 1, 1};
  d.n_sink = 2;
  d.n_recent = 4;
  expect_same(
      by_name("duo_attention", {{"retrieval", 1}, {"retrieval", 2}, {"sinks", 2}, {"recent", 4}}),
      d, "duo_attention");
  threshold_policy t;
  t.tau = 0.02f;
  t.min_keep = 3;
  t.n_recent = 1;
  expect_same(by_name("threshold", {{"tau", 0.02}, {"min_keep", 3}, {"recent", 1}}), t,
              "threshold params");
}

// The engine's output projection reaches CriticalKV through the policy context.
TEST(PolicyByName, ContextGivesCriticalKVTheOutputProjection) {
  std::vector<float> w(std::size_t(kLayers * 16 * kHq * kD));
  std::mt19937 rng(4);
  std::normal_distribution<float> g(0.f, 0.1f);
  for (auto& x : w) x = g(rng);
  const float* layers[kLayers] = {w.data(), w.data() + 16 * kHq * kD};
  heed::policy_context ctx;
  ctx.wo = {layers, 16, 0};
  heed::any_policy p;
  ASSERT_EQ(heed::make_policy("critical_h2o", nullptr, 0, ctx, &p), status::ok);
  expect_same(p, heed::critical(heed::h2o_policy{}, 1e-4f, 0.5, ctx.wo), "critical_h2o wo");
  ASSERT_EQ(heed::make_policy("critical_adakv", nullptr, 0, ctx, &p), status::ok);
  expect_same(p, heed::critical_adaptive(heed::snapkv_policy{}, 0.2, 1e-4f, 0.5, ctx.wo),
              "critical_adakv wo");
  // A projection without a hidden size is refused.
  ctx.wo.hidden = 0;
  EXPECT_EQ(heed::make_policy("critical_h2o", nullptr, 0, ctx, &p), status::invalid_argument);
}

TEST(PolicyByName, BadInputIsInvalidArgumentAndChangesNothing) {
  heed::any_policy p = heed::h2o_policy{};
  auto bad = [&](const char* name, std::vector<heed::policy_param> params,
                 status want = status::invalid_argument) {
    EXPECT_EQ(heed::make_policy(name, params.data(), params.size(), &p), want) << name;
    EXPECT_STREQ(p.name(), "h2o") << name;
  };
  bad("nope", {});
  bad("", {});
  bad("caote_", {});
  bad("caote_caote_h2o", {});
  bad("H2O", {});
  bad("h2o", {{"window", 4}});  // another policy's parameter
  bad("h2o", {{"bogus", 1}});
  bad("h2o", {{"recent_fraction", 1.5}});
  bad("h2o", {{"recent_fraction", -0.1}});
  bad("h2o", {{"recent_fraction", std::nan("")}});
  bad("h2o", {{"recent_fraction", INFINITY}});
  bad("h2o", {{"recent_fraction", 0.5}, {"recent_fraction", 0.5}});
  bad("h2o", {{"reduce_max", 2}});
  bad("a2sf", {{"lambda", 1.01}});
  bad("snapkv", {{"window", 0}});
  bad("snapkv", {{"window", 70000}});
  bad("snapkv", {{"pool", 3}});
  bad("snapkv", {{"pool_kernel", 4}});  // even
  bad("snapkv", {{"sinks", -1}});
  bad("snapkv", {{"sinks", 1.5}});
  bad("lagkv", {{"lag", 0}});
  bad("lagkv", {{"eps", 0}});
  bad("leverage", {{"rank", -1}});
  bad("leverage", {{"rank", 1.5}});
  bad("leverage", {{"ridge", -1}});
  bad("leverage", {{"center", 2}});
  bad("leverage", {{"sketch", -1}});
  bad("compactor", {{"blending", -2}});
  bad("q_filters", {{"window", 0}});
  bad("h2o", {{"admit_norm", -1}});
  bad("h2o", {{"admit_cosine", 1.5}});
  bad("h2o", {{"admit_window", 0}});
  bad("h2o", {{"admit_full", 2}});
  bad("h2o", {{"rank", 2}});  // another policy's parameter
  bad("random", {{"seed", -1}});
  bad("random", {{"seed", 1e300}});
  bad("duo_attention", {{"retrieval", -1}});
  bad("duo_attention", {{"retrieval", 1 << 20}});
  bad("tova", {{"min_keep", 2}});  // without a threshold / coverage wrapper
  bad("tova", {{"coverage", 0.5}, {"adaptive_floor", 0.2}});
  bad("adakv", {{"threshold_tau", 0.1}});  // adakv is already head-adaptive
  bad("tova", {{"coverage", 1.5}});
  // LagKV scores +inf (sinks, newest partition), which coverage selection refuses: the pair used
  // to build and then fail every eviction with invalid_argument (found by tests/fuzz).
  bad("lagkv", {{"coverage", 0.9}});
  bad("caote_lagkv", {{"coverage", 0.5}});
  // AdaKV's layer-wide budget shared the retrieval heads' entries out to the other heads: a
  // retrieval head lost entries and a streaming head kept more than its budget (found by
  // tests/fuzz).
  bad("duo_attention", {{"retrieval", 1}, {"adaptive_floor", 0.2}});
  // Issue 22's wrappers: each prefix once, their parameters only with them, in range.
  bad("chunkkv_", {});
  bad("chunkkv_chunkkv_h2o", {});
  bad("critical_chunkkv_critical_h2o", {});
  bad("h2o", {{"chunk_size", 4}});
  bad("h2o", {{"epsilon", 0.1}});
  bad("simlayer_kv", {{"chunk_size", 4}});
  bad("chunkkv_h2o", {{"chunk_size", 0}});
  bad("chunkkv_h2o", {{"chunk_size", 2.5}});
  bad("critical_h2o", {{"epsilon", -1}});
  bad("critical_h2o", {{"first_stage_ratio", 1.5}});
  bad("critical_adakv", {{"threshold_tau", 0.1}});
  bad("simlayer_duo_attention", {});
  bad("simlayer_simlayer_kv", {});
  bad("simlayer_kv", {{"n_last", 0}});
  bad("simlayer_kv", {{"n_initial", -1}});
  bad("simlayer_h2o", {{"lazy_threshold", std::nan("")}});
  bad("simlayer_kv", {{"adaptive_floor", 0.2}});
  bad(nullptr, {}, status::null_pointer);
  bad("h2o", {{nullptr, 1}}, status::null_pointer);
  EXPECT_EQ(heed::make_policy("h2o", nullptr, 1, &p), status::null_pointer);
  EXPECT_EQ(heed::make_policy("h2o", nullptr, 0, nullptr), status::null_pointer);
  EXPECT_STREQ(p.name(), "h2o");
}

TEST(PolicyByName, AnyPolicyMakeAndCopies) {
  heed::any_policy a;
  ASSERT_EQ(heed::any_policy::make(heed::tova_policy{}, &a), status::ok);
  heed::any_policy b = a, c;
  c = b;
  c = c;  // self-assignment keeps it
  heed::any_policy d(std::move(b));
  EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_STREQ(a.name(), "tova");
  EXPECT_STREQ(c.name(), "tova");
  EXPECT_STREQ(d.name(), "tova");
  a = heed::any_policy();
  EXPECT_STREQ(c.name(), "tova");
  EXPECT_EQ(heed::any_policy::make(heed::tova_policy{}, nullptr), status::null_pointer);
}

}  // namespace
