// Admission (a write gate, heed/policy/admission.hpp): the eviction loop with a gating policy
// against a plain model of what must be in the cache (per head: the gate's rules, then
// StreamingLLM's eviction) and a float64 attention over the model's entries (the kernel reads
// only admitted entries); a budget never exceeded without any eviction pass (refuse_when_full);
// a user gate; chunks admitted token by token; paged and contiguous caches; the static and the
// type-erased loop; zero cost without a gate; bad settings as a status.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "heed/policy/admission.hpp"
#include "heed/policy/callback_policy.hpp"
#include "heed/policy/chunkkv.hpp"
#include "heed/policy/critical_kv.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/simlayer_kv.hpp"
#include "heed/policy/streaming_llm.hpp"
#include "heed/policy/wrappers.hpp"

namespace {

using heed::status;

constexpr int kHq = 4, kHkv = 2;
constexpr std::int64_t kD = 16;

// Zero cost without a gate: known at compile time for a plain policy, a run-time false for a
// type-erased or wrapped one.
static_assert(!heed::detail::may_gate<heed::h2o_policy>, "a plain policy never gates");
static_assert(!heed::detail::may_gate<heed::streaming_llm_policy>, "a plain policy never gates");
static_assert(heed::detail::may_gate<heed::admission_policy<heed::h2o_policy>>, "the gate");

// A stream of tokens whose keys repeat (near duplicates) and sometimes have a large norm.
struct stream {
  std::int64_t n = 0;
  std::vector<float> q, k, v;  // [n][H][d]
};
stream make_stream(std::int64_t n, unsigned seed) {
  stream s;
  s.n = n;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  s.q.resize(std::size_t(n * kHq * kD));
  s.k.resize(std::size_t(n * kHkv * kD));
  s.v.resize(s.k.size());
  for (auto& x : s.q) x = g(rng);
  for (auto& x : s.v) x = g(rng);
  for (std::int64_t t = 0; t < n; ++t)
    for (int h = 0; h < kHkv; ++h) {
      float* row = s.k.data() + (t * kHkv + h) * kD;
      const unsigned kind = rng() % 6;
      if (kind == 0 && t > 0) {  // a near duplicate of the previous token's key
        const float* prev = s.k.data() + ((t - 1) * kHkv + h) * kD;
        for (std::int64_t c = 0; c < kD; ++c) row[c] = prev[c] + 0.01f * g(rng);
      } else {
        const float scale = kind == 1 ? 3.f : 1.f;  // a large norm
        for (std::int64_t c = 0; c < kD; ++c) row[c] = scale * g(rng);
      }
    }
  return s;
}

heed::tensor_view rows(const std::vector<float>& x, std::int64_t t, std::int64_t n, int heads) {
  return heed::make_view(x.data() + t * heads * kD, n, heads, kD);
}

// The plain model: per head the admitted entries (position, key, value) in order.
struct entry {
  std::int64_t pos;
  std::vector<double> k, v;
};

double norm(const std::vector<double>& x) {
  double s = 0;
  for (double e : x) s += e * e;
  return std::sqrt(s);
}

bool model_admits(const std::vector<entry>& head, std::int64_t pos, const std::vector<double>& k,
                  const heed::admission_spec& spec, std::int64_t budget) {
  if (pos < spec.n_sink) return true;
  if (spec.refuse_when_full && budget > 0 && std::int64_t(head.size()) >= budget) return false;
  const double kn = norm(k);
  if (kn > spec.max_key_norm) return false;
  if (spec.max_cosine <= 1.f) {
    const std::int64_t len = std::int64_t(head.size());
    for (std::int64_t j = std::max<std::int64_t>(0, len - spec.window); j < len; ++j) {
      const auto& y = head[std::size_t(j)].k;
      double dot = 0;
      for (std::int64_t c = 0; c < kD; ++c) dot += k[std::size_t(c)] * y[std::size_t(c)];
      const double den = kn * norm(y);
      if ((den > 0 ? dot / den : 0.0) >= spec.max_cosine) return false;
    }
  }
  return true;
}

// One token through the model: the gate (against the entries before any eviction), then
// StreamingLLM (first n_sink entries + the most recent) down to budget - admitted, then the
// append. Returns the float64 attention of the token's queries over the head's entries.
void model_step(std::vector<std::vector<entry>>& heads, const stream& s, std::int64_t t,
                const heed::admission_spec& spec, std::int64_t budget, std::vector<double>& o) {
  std::vector<bool> adm(kHkv);
  std::vector<entry> fresh(kHkv);
  for (int h = 0; h < kHkv; ++h) {
    entry e;
    e.pos = t;
    for (std::int64_t c = 0; c < kD; ++c) {
      e.k.push_back(s.k[std::size_t((t * kHkv + h) * kD + c)]);
      e.v.push_back(s.v[std::size_t((t * kHkv + h) * kD + c)]);
    }
    adm[std::size_t(h)] = model_admits(heads[std::size_t(h)], t, e.k, spec, budget);
    fresh[std::size_t(h)] = e;
  }
  bool over = false;
  for (int h = 0; h < kHkv; ++h)
    over = over ||
           (budget > 0 &&
            std::int64_t(heads[std::size_t(h)].size()) + (adm[std::size_t(h)] ? 1 : 0) > budget);
  for (int h = 0; h < kHkv && over; ++h) {
    auto& list = heads[std::size_t(h)];
    const std::int64_t target = budget - (adm[std::size_t(h)] ? 1 : 0);
    if (std::int64_t(list.size()) <= target) continue;
    const std::int64_t sinks = std::min<std::int64_t>(4, target);
    std::vector<entry> kept(list.begin(), list.begin() + sinks);
    kept.insert(kept.end(), list.end() - (target - sinks), list.end());
    list = kept;
  }
  for (int h = 0; h < kHkv; ++h)
    if (adm[std::size_t(h)]) heads[std::size_t(h)].push_back(fresh[std::size_t(h)]);
  o.assign(std::size_t(kHq * kD), 0.0);
  const double scale = 1.0 / std::sqrt(double(kD));
  for (int qh = 0; qh < kHq; ++qh) {
    const auto& list = heads[std::size_t(qh / (kHq / kHkv))];
    if (list.empty()) continue;
    std::vector<double> w;
    double m = -std::numeric_limits<double>::infinity();
    for (const auto& e : list) {
      double dot = 0;
      for (std::int64_t c = 0; c < kD; ++c)
        dot += double(s.q[std::size_t((t * kHq + qh) * kD + c)]) * e.k[std::size_t(c)];
      w.push_back(dot * scale);
      m = std::max(m, w.back());
    }
    double z = 0;
    for (double& x : w) z += (x = std::exp(x - m));
    for (std::size_t j = 0; j < list.size(); ++j)
      for (std::int64_t c = 0; c < kD; ++c)
        o[std::size_t(qh * kD + c)] += w[j] / z * list[j].v[std::size_t(c)];
  }
}

// Runs the loop token by token and checks every step against the model; trace: the positions.
template <class Loop>
void run_against_model(Loop& loop, heed::kv_cache& cache, const stream& s,
                       const heed::admission_spec& spec, std::int64_t budget,
                       std::vector<std::int64_t>& trace) {
  std::vector<std::vector<entry>> model(kHkv);
  std::vector<float> o(std::size_t(kHq * kD));
  std::vector<double> want;
  trace.clear();
  for (std::int64_t t = 0; t < s.n; ++t) {
    EXPECT_EQ(loop.step(0, rows(s.q, t, 1, kHq), rows(s.k, t, 1, kHkv), rows(s.v, t, 1, kHkv),
                        heed::make_mutable_view(o.data(), 1, kHq, kD)),
              status::ok);
    model_step(model, s, t, spec, budget, want);
    for (int h = 0; h < kHkv; ++h) {
      const auto& list = model[std::size_t(h)];
      ASSERT_EQ(cache.length(0, h), std::int64_t(list.size())) << "step " << t << " head " << h;
      if (budget > 0) {
        EXPECT_LE(cache.length(0, h), budget);
      }
      for (std::int64_t j = 0; j < cache.length(0, h); ++j) {
        ASSERT_EQ(cache.positions(0, h)[j], list[std::size_t(j)].pos) << "step " << t;
        trace.push_back(cache.positions(0, h)[j]);
      }
    }
    for (std::size_t i = 0; i < o.size(); ++i)
      ASSERT_NEAR(o[i], want[i], 2e-5) << "output " << i << " step " << t;
  }
}

heed::kv_cache make_cache(std::int64_t page_rows = 0) {
  heed::kv_cache c;
  heed::kv_cache_config cc;
  cc.kv_heads = kHkv;
  cc.head_dim = kD;
  cc.page_rows = page_rows;
  EXPECT_EQ(c.init(cc), status::ok);
  return c;
}

std::vector<heed::admission_spec> specs() {
  std::vector<heed::admission_spec> r;
  heed::admission_spec a;
  a.max_key_norm = 6.f;  // about a third of the large-norm keys (norm ~ 3 * 4)
  r.push_back(a);
  heed::admission_spec b;
  b.max_cosine = 0.95f;  // the near duplicates
  b.window = 3;
  r.push_back(b);
  heed::admission_spec c = a;
  c.max_cosine = 0.9f;
  c.window = 8;
  c.n_sink = 0;
  r.push_back(c);
  heed::admission_spec d;
  d.refuse_when_full = true;
  r.push_back(d);
  return r;
}

TEST(Admission, LoopMatchesThePlainModel) {
  const stream s = make_stream(120, 3);
  for (const auto& spec : specs())
    for (std::int64_t budget : {0, 1, 7, 16, 200})
      for (std::int64_t page_rows : {0, 16}) {
        SCOPED_TRACE("budget " + std::to_string(budget) + " pages " + std::to_string(page_rows) +
                     " norm " + std::to_string(spec.max_key_norm) + " cos " +
                     std::to_string(spec.max_cosine) + " full " +
                     std::to_string(spec.refuse_when_full));
        heed::kv_cache cache = make_cache(page_rows);
        heed::eviction_loop loop;
        heed::eviction_config ec;
        ec.budget = budget;
        ASSERT_EQ(loop.init(&cache, heed::admitted(heed::streaming_llm_policy{}, spec), ec, kHq),
                  status::ok);
        std::vector<std::int64_t> any, typed_trace;
        run_against_model(loop, cache, s, spec, budget, any);
        if (budget == 200 && !spec.refuse_when_full) {  // no eviction: the gate kept some out
          EXPECT_LT(cache.length(0, 0) + cache.length(0, 1), 2 * s.n);
        }
        // The same with the static loop type: the same entries.
        heed::kv_cache cache2 = make_cache(page_rows);
        heed::basic_eviction_loop<heed::admission_policy<heed::streaming_llm_policy>> typed;
        ASSERT_EQ(typed.init(&cache2, heed::admitted(heed::streaming_llm_policy{}, spec), ec, kHq),
                  status::ok);
        run_against_model(typed, cache2, s, spec, budget, typed_trace);
        EXPECT_EQ(typed_trace, any);
      }
}

// An inner policy that counts its evictions.
struct counting_policy : heed::streaming_llm_policy {
  int* calls = nullptr;
  status score(const heed::policy_input& in, int head, float* out, heed::workspace ws) noexcept {
    ++*calls;
    return streaming_llm_policy::score(in, head, out, ws);
  }
};

TEST(Admission, FullHeadsRefuseAndNothingIsEvicted) {
  const stream s = make_stream(80, 5);
  int calls = 0;
  counting_policy inner;
  inner.calls = &calls;
  heed::admission_spec spec;
  spec.refuse_when_full = true;
  heed::kv_cache cache = make_cache();
  heed::eviction_loop loop;
  heed::eviction_config ec;
  ec.budget = 10;
  ASSERT_EQ(loop.init(&cache, heed::admitted(inner, spec), ec, kHq), status::ok);
  std::vector<std::int64_t> trace;
  run_against_model(loop, cache, s, spec, 10, trace);
  EXPECT_EQ(calls, 0) << "no eviction pass";
  for (int h = 0; h < kHkv; ++h) {
    ASSERT_EQ(cache.length(0, h), 10);
    for (std::int64_t j = 0; j < 10; ++j) EXPECT_EQ(cache.positions(0, h)[j], j);
    EXPECT_EQ(cache.appended(0, h), 80) << "positions go on";
  }
  // Without the gate the same loop evicts.
  heed::kv_cache c2 = make_cache();
  heed::eviction_loop plain;
  ASSERT_EQ(plain.init(&c2, inner, ec, kHq), status::ok);
  std::vector<float> o(std::size_t(kHq * kD));
  for (std::int64_t t = 0; t < 20; ++t)
    ASSERT_EQ(plain.step(0, rows(s.q, t, 1, kHq), rows(s.k, t, 1, kHkv), rows(s.v, t, 1, kHkv),
                         heed::make_mutable_view(o.data(), 1, kHq, kD)),
              status::ok);
  EXPECT_GT(calls, 0);
}

// A user rule: head 0 keeps out every third token, head 1 takes all.
struct every_third : heed::policy_base<every_third> {
  const char* name() const noexcept { return "every_third"; }
  status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
    return status::ok;
  }
  status admit(const heed::admission_input& in, int head, bool& admitted) noexcept {
    admitted = head != 0 || in.position(head) % 3 != 1;
    return status::ok;
  }
};
static_assert(heed::detail::may_gate<every_third>, "a policy with its own admit() gates");
static_assert(heed::detail::check_policy<every_third>(), "its contract holds");

TEST(Admission, UserGateAndChunksTokenByToken) {
  const stream s = make_stream(40, 7);
  auto run = [&](bool chunked, std::vector<float>& o, std::vector<float>& lse) {
    heed::kv_cache cache = make_cache();
    heed::eviction_loop loop;
    heed::eviction_config ec;  // no budget: only the gate
    ASSERT_EQ(loop.init(&cache, every_third{}, ec, kHq), status::ok);
    o.assign(std::size_t(s.n * kHq * kD), 0.f);
    lse.assign(std::size_t(kHq * s.n), 0.f);
    if (chunked) {
      ASSERT_EQ(loop.step(0, rows(s.q, 0, s.n, kHq), rows(s.k, 0, s.n, kHkv),
                          rows(s.v, 0, s.n, kHkv), heed::make_mutable_view(o.data(), s.n, kHq, kD),
                          heed::default_executor(), lse.data()),
                status::ok);
    } else {
      for (std::int64_t t = 0; t < s.n; ++t) {
        std::vector<float> l1(kHq);
        ASSERT_EQ(loop.step(0, rows(s.q, t, 1, kHq), rows(s.k, t, 1, kHkv), rows(s.v, t, 1, kHkv),
                            heed::make_mutable_view(o.data() + t * kHq * kD, 1, kHq, kD),
                            heed::default_executor(), l1.data()),
                  status::ok);
        for (int h = 0; h < kHq; ++h) lse[std::size_t(h * s.n + t)] = l1[std::size_t(h)];
      }
    }
    std::vector<std::int64_t> want0;
    for (std::int64_t t = 0; t < s.n; ++t)
      if (t % 3 != 1) want0.push_back(t);
    EXPECT_EQ(std::vector<std::int64_t>(cache.positions(0, 0),
                                        cache.positions(0, 0) + cache.length(0, 0)),
              want0);
    EXPECT_EQ(cache.length(0, 1), s.n);
  };
  std::vector<float> o1, l1, o2, l2;
  run(false, o1, l1);
  run(true, o2, l2);
  // Token by token as one chunk or as separate steps: the same outputs and LSE.
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(l1, l2);
}

// The gate passes through the wrappers and the type erasure; a wrapper of a plain policy does
// not gate.
TEST(Admission, WrappersForwardTheGate) {
  heed::admission_spec spec;
  spec.max_key_norm = 1.f;
  EXPECT_TRUE(
      heed::detail::policy_gates(heed::any_policy(heed::admitted(heed::h2o_policy{}, spec))));
  EXPECT_TRUE(heed::detail::policy_gates(heed::protect(every_third{}, 2, 2)));
  EXPECT_TRUE(heed::detail::policy_gates(heed::any_policy(heed::protect(every_third{}, 2, 2))));
  EXPECT_FALSE(heed::detail::policy_gates(heed::any_policy(heed::h2o_policy{})));
  EXPECT_FALSE(heed::detail::policy_gates(heed::protect(heed::h2o_policy{}, 2, 2)));
  EXPECT_FALSE(heed::detail::policy_gates(heed::any_policy()));
  EXPECT_FALSE(heed::detail::policy_gates(heed::callback_policy{}));
  // Issue 22's wrappers (ChunkKV, CriticalKV / CriticalAdaKV, SimLayerKV) too.
  EXPECT_TRUE(heed::detail::policy_gates(heed::chunked(every_third{})));
  EXPECT_TRUE(heed::detail::policy_gates(heed::critical(every_third{})));
  EXPECT_TRUE(heed::detail::policy_gates(heed::critical_adaptive(every_third{})));
  EXPECT_TRUE(heed::detail::policy_gates(heed::simlayer(every_third{})));
  EXPECT_TRUE(heed::detail::policy_gates(heed::any_policy(heed::chunked(every_third{}))));
  EXPECT_FALSE(heed::detail::policy_gates(heed::chunked(heed::h2o_policy{})));
  EXPECT_FALSE(heed::detail::policy_gates(heed::simlayer(heed::h2o_policy{})));
}

TEST(Admission, BadSettingsAreAStatus) {
  const stream s = make_stream(3, 9);
  for (int which = 0; which < 4; ++which) {
    heed::admission_spec spec;
    if (which == 0) spec.max_key_norm = -1.f;
    if (which == 1) spec.max_cosine = std::nanf("");
    if (which == 2) spec.window = 0;
    if (which == 3) spec.n_sink = -1;
    EXPECT_EQ(spec.validate(), status::invalid_argument);
    heed::kv_cache cache = make_cache();
    heed::eviction_loop loop;
    ASSERT_EQ(loop.init(&cache, heed::admitted(heed::streaming_llm_policy{}, spec), {}, kHq),
              status::ok);
    std::vector<float> o(std::size_t(kHq * kD));
    EXPECT_EQ(loop.step(0, rows(s.q, 0, 1, kHq), rows(s.k, 0, 1, kHkv), rows(s.v, 0, 1, kHkv),
                        heed::make_mutable_view(o.data(), 1, kHq, kD)),
              status::invalid_argument);
    EXPECT_EQ(cache.length(0, 0), 0) << "a failed gate changes nothing";
    EXPECT_EQ(cache.appended(0, 0), 0);
  }
}

// kv_cache::append_admitted / unappend with the mask.
TEST(Admission, CacheMaskedAppendAndUndo) {
  heed::kv_cache cache = make_cache(16);
  const stream s = make_stream(5, 11);
  const std::uint8_t mask[kHkv * 5] = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1};
  ASSERT_EQ(cache.append_admitted(0, rows(s.k, 0, 5, kHkv), rows(s.v, 0, 5, kHkv), mask),
            status::ok);
  EXPECT_EQ(cache.length(0, 0), 3);
  EXPECT_EQ(cache.length(0, 1), 1);
  EXPECT_EQ(cache.positions(0, 0)[2], 3);
  EXPECT_EQ(cache.positions(0, 1)[0], 4);
  EXPECT_EQ(cache.appended(0, 0), 5);
  EXPECT_EQ(cache.appended(0, 1), 5);
  // The stored rows are the admitted tokens' rows.
  std::vector<float> k(std::size_t(3 * kD));
  ASSERT_EQ(cache.gather_float(0, 0, 0, k.data(), k.size()), status::ok);
  for (std::int64_t c = 0; c < kD; ++c)
    EXPECT_EQ(k[std::size_t(2 * kD + c)], s.k[std::size_t((3 * kHkv) * kD + c)]);
  ASSERT_EQ(cache.unappend(0, 5, mask), status::ok);
  EXPECT_EQ(cache.length(0, 0), 0);
  EXPECT_EQ(cache.appended(0, 1), 0);
  EXPECT_EQ(cache.append_admitted(0, rows(s.k, 0, 5, kHkv), rows(s.v, 0, 5, kHkv), nullptr),
            status::null_pointer);
}

}  // namespace
