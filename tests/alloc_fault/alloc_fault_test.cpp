// Allocation faults lose nothing (docs/allocation_faults.md): every public entry point that
// allocates is called with its n-th allocation failing, for n = 1, 2, ... until the call makes
// fewer than n allocations. Each faulted call must return status::out_of_memory and leave its
// objects exactly as before (every length, position, stored row byte, score channel and tier);
// a retry without the fault must then succeed and leave them bit for bit as a run that never saw
// a fault (and so must the calls after it, which read the hidden state: step counts, query
// windows, scratch). The fault allocator (fault_allocator.hpp) replaces operator new / delete of
// this binary, so it reaches every allocation heed makes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "alloc_fault/fault_allocator.hpp"
#include "heed/c/heed_cache.h"
#include "heed/cache/kv_cache.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/evict.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/registry.hpp"
#include "heed/policy/wrappers.hpp"
#include "heed/sinks/streaming_cache.hpp"

namespace {

using heed::status;

// ---- Snapshots ---------------------------------------------------------------------------------

// Named byte strings: everything observable of some objects.
struct state {
  std::vector<std::pair<std::string, std::vector<unsigned char>>> parts;

  template <class T>
  void put(std::string name, const T* p, std::size_t n) {
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    parts.emplace_back(std::move(name), std::vector<unsigned char>(b, b + n * sizeof(T)));
  }
  template <class T>
  void put_value(std::string name, const T& v) {
    put(std::move(name), &v, 1);
  }
};

// Parts named "out: ..." are a call's outputs (the caller's buffers, not objects): compared with
// the reference, not with the state before a failed call.
bool is_output(const std::string& name) { return name.rfind("out:", 0) == 0; }

// Empty when a and b are equal (outputs: their output parts too), else the first part that
// differs.
std::string difference(const state& a, const state& b, bool outputs = true) {
  if (a.parts.size() != b.parts.size())
    return "part counts " + std::to_string(a.parts.size()) + " / " + std::to_string(b.parts.size());
  for (std::size_t i = 0; i < a.parts.size(); ++i) {
    if (a.parts[i].first != b.parts[i].first)
      return "part names " + a.parts[i].first + " / " + b.parts[i].first;
    if (!outputs && is_output(a.parts[i].first)) continue;
    if (a.parts[i].second != b.parts[i].second) return "part " + a.parts[i].first + " differs";
  }
  return "";
}

// Every entry of every (layer, head): lengths, positions, tiers, score channels and the stored
// row bytes of each tier (pages gathered). Capacities are not part of it: a faulted call may
// leave memory reserved.
void put_cache(state& s, const heed::kv_cache& c, const std::string& prefix = "") {
  if (!c.valid(0, 0)) {
    s.put_value(prefix + "uninitialized", 0);
    return;
  }
  const heed::kv_cache_config& cfg = c.config();
  const std::int64_t shape[] = {cfg.layers,         cfg.kv_heads,     cfg.head_dim,  int(cfg.type),
                                cfg.score_channels, cfg.capacity,     cfg.page_rows, cfg.group,
                                int(cfg.tiered),    int(cfg.low_type)};
  s.put(prefix + "config", shape, 10);
  for (int l = 0; l < c.layers(); ++l)
    for (int h = 0; h < c.kv_heads(); ++h) {
      const std::string at = prefix + std::to_string(l) + "/" + std::to_string(h) + " ";
      const std::int64_t len = c.length(l, h);
      const std::int64_t counts[] = {len, c.low_length(l, h), c.appended(l, h), c.limit(l, h)};
      s.put(at + "counts", counts, 4);
      if (len == 0) continue;
      s.put(at + "positions", c.positions(l, h), std::size_t(len));
      for (int ch = 0; ch < cfg.score_channels; ++ch)
        s.put(at + "scores " + std::to_string(ch), c.scores(l, h, ch), std::size_t(len));
      if (c.tiered()) {
        s.put(at + "tiers", c.tiers(l, h), std::size_t(len));
        for (int tier = 0; tier < 2; ++tier) {
          const std::size_t rb = tier == 0 ? c.row_bytes() : c.low_row_bytes();
          const heed::tensor_view k = c.tier_keys(l, h, tier), v = c.tier_values(l, h, tier);
          if (k.seq == 0) continue;
          s.put(at + "k tier " + std::to_string(tier), static_cast<const unsigned char*>(k.data),
                std::size_t(k.seq) * rb);
          s.put(at + "v tier " + std::to_string(tier), static_cast<const unsigned char*>(v.data),
                std::size_t(v.seq) * rb);
        }
        continue;
      }
      std::vector<unsigned char> rows(std::size_t(len) * c.row_bytes());
      for (int which = 0; which < 2; ++which) {
        EXPECT_EQ(c.gather(l, h, which, rows.data(), rows.size()), status::ok);
        s.put(at + (which == 0 ? "k" : "v"), rows.data(), rows.size());
      }
    }
}

// ---- The fault loop ----------------------------------------------------------------------------

// For n = 1, 2, ...: a fresh World from make(), snapshot, call() with the n-th allocation failing;
// until call() makes fewer than n allocations (then it must succeed as the reference did).
// Faulted: out_of_memory, the snapshot unchanged, then a retry (and follow(), if any) equal to
// the reference world that never saw a fault.
template <class World>
struct fault_case {
  std::function<void(World&)> make;
  std::function<status(World&)> call;
  std::function<state(const World&)> snap;
  std::function<void(World&)> follow;  // optional: more calls, after call() succeeded
  // Optional: the one change a failed call may leave instead of none (the eviction loop's step
  // keeps an eviction it made before failing on the attention's workspace; heed/policy/
  // eviction_loop.hpp), made on a fresh world.
  std::function<void(World&)> partial;
  // How many allocations may leave it: the attention's workspace, and with a chunk longer than the
  // budget after a demotion, the allocations of the eviction that follows the chunk.
  int partial_allocations = 1;
};

template <class World>
void run_faults(const std::string& name, const fault_case<World>& fc) {
  SCOPED_TRACE(name);
  auto ref = std::make_unique<World>();
  fc.make(*ref);
  status s;
  long total = 0;
  {
    fault::scoped_fault count_only(0);
    s = fc.call(*ref);
    total = fault::count();
  }
  ASSERT_EQ(s, status::ok) << "the call fails without a fault";
  const state want = fc.snap(*ref);
  state want_follow;
  if (fc.follow) {
    fc.follow(*ref);
    want_follow = fc.snap(*ref);
  }
  int partials = 0;
  for (long n = 1;; ++n) {
    SCOPED_TRACE("allocation " + std::to_string(n) + " of " + std::to_string(total) + " fails");
    auto w = std::make_unique<World>();
    fc.make(*w);
    const state before = fc.snap(*w);
    bool fired = false;
    {
      fault::scoped_fault f(n);
      s = fc.call(*w);
      fired = fault::fired();
    }
    if (!fired) {
      EXPECT_EQ(n, total + 1) << "allocation counts differ between runs";
      EXPECT_EQ(s, status::ok);
      EXPECT_EQ(difference(fc.snap(*w), want), "");
      return;
    }
    EXPECT_EQ(s, status::out_of_memory);
    const std::string changed = difference(fc.snap(*w), before, false);
    if (!changed.empty() && fc.partial) {
      auto p = std::make_unique<World>();
      fc.make(*p);
      fc.partial(*p);
      EXPECT_EQ(difference(fc.snap(*w), fc.snap(*p), false), "")
          << "the failed call made another change than the one allowed: " << changed;
      EXPECT_LE(++partials, fc.partial_allocations) << "too many allocations leave the change";
    } else {
      EXPECT_EQ(changed, "") << "the failed call changed the objects";
    }
    EXPECT_EQ(fc.call(*w), status::ok) << "the retry fails";
    EXPECT_EQ(difference(fc.snap(*w), want), "") << "the retry differs from a fault-free run";
    if (fc.follow) {
      fc.follow(*w);
      EXPECT_EQ(difference(fc.snap(*w), want_follow), "") << "later calls differ";
    }
    if (::testing::Test::HasFailure()) return;  // one report per case
    ASSERT_LT(n, 100000) << "no end to the allocations";
  }
}

// ---- Data --------------------------------------------------------------------------------------

constexpr std::int64_t kD = 64;
constexpr int kLayers = 2, kHkv = 2, kHq = 4;

// Rows [n][heads][kD] of a deterministic stream (seed), f32.
std::vector<float> rows(std::int64_t n, int heads, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(std::size_t(n * heads * kD));
  for (auto& e : x) e = g(rng);
  return x;
}
heed::tensor_view view(const std::vector<float>& x, std::int64_t first, std::int64_t n, int heads) {
  return heed::make_view(x.data() + first * heads * kD, n, heads, kD);
}

struct cache_kind {
  const char* name;
  heed::dtype type;
  std::int64_t page_rows;
  bool tiered;
  heed::dtype low_type;
};

// Every storage type, contiguous and paged, and tiered pairs.
const cache_kind kCacheKinds[] = {
    {"f32", heed::dtype::f32, 0, false, heed::dtype::q4},
    {"f16", heed::dtype::f16, 0, false, heed::dtype::q4},
    {"bf16", heed::dtype::bf16, 0, false, heed::dtype::q4},
    {"q8", heed::dtype::q8, 0, false, heed::dtype::q4},
    {"q4", heed::dtype::q4, 0, false, heed::dtype::q4},
    {"f32 paged", heed::dtype::f32, 16, false, heed::dtype::q4},
    {"f16 paged", heed::dtype::f16, 16, false, heed::dtype::q4},
    {"q8 paged", heed::dtype::q8, 16, false, heed::dtype::q4},
    {"q4 paged", heed::dtype::q4, 16, false, heed::dtype::q4},
    {"f16 tiered q4", heed::dtype::f16, 0, true, heed::dtype::q4},
    {"f32 tiered q8", heed::dtype::f32, 0, true, heed::dtype::q8},
    {"bf16 tiered q8", heed::dtype::bf16, 0, true, heed::dtype::q8},
    {"f32 tiered f16", heed::dtype::f32, 0, true, heed::dtype::f16},
};

heed::kv_cache_config config_of(const cache_kind& k, int channels = 2) {
  heed::kv_cache_config c;
  c.layers = kLayers;
  c.kv_heads = kHkv;
  c.head_dim = kD;
  c.type = k.type;
  c.page_rows = k.page_rows;
  c.tiered = k.tiered;
  c.low_type = k.low_type;
  c.score_channels = channels;
  return c;
}

// Appends tokens [first, first + n) of the stream to every layer (scores set to something).
void fill(heed::kv_cache& c, const std::vector<float>& k, const std::vector<float>& v,
          std::int64_t first, std::int64_t n) {
  for (int l = 0; l < c.layers(); ++l) {
    ASSERT_EQ(c.append(l, view(k, first, n, kHkv), view(v, first, n, kHkv)), status::ok);
    for (int h = 0; h < c.kv_heads(); ++h)
      for (int ch = 0; ch < c.config().score_channels; ++ch)
        for (std::int64_t i = 0; i < c.length(l, h); ++i)
          c.scores(l, h, ch)[i] = float(i * 7 % 11) + 0.25f * float(ch + l + h);
  }
}

// The streams are built before main(), never inside a call with a fault armed.
const std::vector<float> kStreamK = rows(512, kHkv, 1), kStreamV = rows(512, kHkv, 2);
const std::vector<float>& stream_k() { return kStreamK; }
const std::vector<float>& stream_v() { return kStreamV; }

// ---- kv_cache ----------------------------------------------------------------------------------

struct cache_world {
  heed::kv_cache cache;
};

// The snapshot of any world whose objects are its `cache`.
template <class World>
state snap_cache(const World& w) {
  state s;
  put_cache(s, w.cache);
  return s;
}

class AllocFaultCache : public ::testing::TestWithParam<cache_kind> {};

TEST_P(AllocFaultCache, InitFreshAndOverAFullCache) {
  const heed::kv_cache_config cfg = config_of(GetParam());
  heed::kv_cache_config reserved = cfg;
  reserved.reserve = 40;
  run_faults<cache_world>(
      "init", {[](cache_world&) {}, [&](cache_world& w) { return w.cache.init(reserved); },
               snap_cache<cache_world>, nullptr});
  run_faults<cache_world>(
      "init over a full cache",
      {[&](cache_world& w) {
         ASSERT_EQ(w.cache.init(cfg), status::ok);
         fill(w.cache, stream_k(), stream_v(), 0, 20);
       },
       [&](cache_world& w) { return w.cache.init(reserved); }, snap_cache<cache_world>, nullptr});
}

TEST_P(AllocFaultCache, AppendGrowsAndPages) {
  const heed::kv_cache_config cfg = config_of(GetParam());
  for (const std::int64_t have : {0, 16, 37}) {
    for (const std::int64_t n : {1, 5, 40}) {
      run_faults<cache_world>(
          "append " + std::to_string(n) + " to " + std::to_string(have),
          {[&](cache_world& w) {
             ASSERT_EQ(w.cache.init(cfg), status::ok);
             if (have > 0) fill(w.cache, stream_k(), stream_v(), 0, have);
           },
           [&](cache_world& w) {
             return w.cache.append(1, view(stream_k(), 100, n, kHkv),
                                   view(stream_v(), 100, n, kHkv));
           },
           snap_cache<cache_world>,
           [&](cache_world& w) { fill(w.cache, stream_k(), stream_v(), 200, 30); }});
    }
  }
}

TEST_P(AllocFaultCache, AppendWithPositionsAndOneHead) {
  const heed::kv_cache_config cfg = config_of(GetParam());
  const std::vector<std::int64_t> pos = {100, 103, 104, 110, 111, 120, 121, 122, 130,
                                         131, 140, 150, 160, 170, 180, 190, 200, 210};
  const std::int64_t n = std::int64_t(pos.size());
  auto make = [&](cache_world& w) {
    ASSERT_EQ(w.cache.init(cfg), status::ok);
    fill(w.cache, stream_k(), stream_v(), 0, 15);
  };
  run_faults<cache_world>("append with positions",
                          {make,
                           [&](cache_world& w) {
                             return w.cache.append(0, view(stream_k(), 50, n, kHkv),
                                                   view(stream_v(), 50, n, kHkv), pos.data());
                           },
                           snap_cache<cache_world>, nullptr});
  run_faults<cache_world>("append_head", {make,
                                          [&](cache_world& w) {
                                            return w.cache.append_head(
                                                1, 0, view(stream_k(), 50, n, kHkv),
                                                view(stream_v(), 50, n, kHkv), 1);
                                          },
                                          snap_cache<cache_world>, nullptr});
}

TEST_P(AllocFaultCache, KeepAndShrinkToFit) {
  const heed::kv_cache_config cfg = config_of(GetParam());
  std::vector<std::int32_t> keep;
  for (std::int32_t i = 0; i < 70; i += 3) keep.push_back(i);
  auto make = [&](cache_world& w) {
    ASSERT_EQ(w.cache.init(cfg), status::ok);
    fill(w.cache, stream_k(), stream_v(), 0, 70);
  };
  run_faults<cache_world>(
      "keep",
      {make,
       [&](cache_world& w) {
         for (int l = 0; l < kLayers; ++l)
           for (int h = 0; h < kHkv; ++h)
             HEED_RETURN_IF_ERROR(w.cache.keep(l, h, keep.data(), std::int64_t(keep.size()) - h));
         return status::ok;
       },
       snap_cache<cache_world>,
       [&](cache_world& w) { fill(w.cache, stream_k(), stream_v(), 100, 9); }});
  for (const std::int64_t slack : {0, 5, 40}) {
    run_faults<cache_world>(
        "shrink_to_fit " + std::to_string(slack),
        {[&](cache_world& w) {
           make(w);
           for (int l = 0; l < kLayers; ++l)
             for (int h = 0; h < kHkv; ++h)
               ASSERT_EQ(w.cache.keep(l, h, keep.data(), std::int64_t(keep.size()) - 2 * h),
                         status::ok);
         },
         [&](cache_world& w) { return w.cache.shrink_to_fit(slack); }, snap_cache<cache_world>,
         [&](cache_world& w) { fill(w.cache, stream_k(), stream_v(), 100, 50); }});
  }
}

TEST_P(AllocFaultCache, Demote) {
  if (!GetParam().tiered) GTEST_SKIP() << "not tiered";
  const heed::kv_cache_config cfg = config_of(GetParam());
  std::vector<std::int32_t> idx;
  for (std::int32_t i = 30; i < 60; i += 2) idx.push_back(i);
  for (const int rounds : {0, 1, 3}) {
    run_faults<cache_world>(
        "demote after " + std::to_string(rounds),
        {[&](cache_world& w) {
           ASSERT_EQ(w.cache.init(cfg), status::ok);
           fill(w.cache, stream_k(), stream_v(), 0, 60);
           for (int r = 0; r < rounds; ++r) {
             const std::int32_t idx[] = {std::int32_t(2 * r), std::int32_t(2 * r + 20)};
             ASSERT_EQ(w.cache.demote(0, 1, idx, 2), status::ok);
           }
         },
         [&](cache_world& w) { return w.cache.demote(0, 1, idx.data(), std::int64_t(idx.size())); },
         snap_cache<cache_world>,
         [&](cache_world& w) { fill(w.cache, stream_k(), stream_v(), 100, 9); }});
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, AllocFaultCache, ::testing::ValuesIn(kCacheKinds),
                         [](const ::testing::TestParamInfo<cache_kind>& i) {
                           std::string s = i.param.name;
                           for (char& c : s)
                             if (c == ' ') c = '_';
                           return s;
                         });

// ---- Policies and the eviction loop ------------------------------------------------------------

// Policies by name (registry.hpp) with their wrappers, as engines build them.
struct named_policy {
  const char* label;
  const char* name;
  std::vector<heed::policy_param> params;
};

const std::vector<named_policy>& loop_policies() {
  static const std::vector<named_policy> p = {
      {"h2o", "h2o", {}},
      {"tova", "tova", {}},
      {"snapkv", "snapkv", {{"window", 4}}},
      {"pyramidkv", "pyramidkv", {{"window", 4}}},
      {"adakv", "adakv", {{"window", 4}}},
      {"key_diff", "key_diff", {{"sinks", 2}}},
      {"q_filters", "q_filters", {{"window", 8}}},
      {"leverage", "leverage", {{"sinks", 2}}},
      {"compactor", "compactor", {}},
      {"knorm_recent", "knorm", {{"recent", 3}}},
      {"a2sf_threshold", "a2sf", {{"threshold_tau", 0.5}, {"min_keep", 2}}},
      {"expected_attention", "expected_attention", {}},
      {"lagkv", "lagkv", {{"lag", 4}}},
      {"caote_h2o", "caote_h2o", {}},
      {"streaming_llm", "streaming_llm", {{"sinks", 2}}},
      {"duo_attention", "duo_attention", {{"retrieval", 1}}},
  };
  return p;
}

heed::any_policy policy_of(const named_policy& p) {
  heed::any_policy out;
  EXPECT_EQ(heed::make_policy(p.name, p.params.data(), p.params.size(), &out), status::ok);
  return out;
}

constexpr std::int64_t kTokens = 200, kMaxChunk = 50;

const std::vector<float> kStreamQ = rows(kTokens, kHq, 3);
const std::vector<float>& stream_q() { return kStreamQ; }

// A cache, its loop and the caller's output buffers (allocated with the world, before a fault is
// armed).
struct loop_world {
  heed::kv_cache cache;
  heed::eviction_loop loop;
  heed::any_policy policy;  // for the init case
  std::int64_t t = 0;       // tokens stepped through every layer
  std::vector<float> out = std::vector<float>(std::size_t(kMaxChunk * kHq * kD));
  std::vector<float> lse = std::vector<float>(std::size_t(kMaxChunk * kHq));
};

state snap_loop(const loop_world& w) {
  state s;
  put_cache(s, w.cache);
  s.put("t", &w.t, 1);
  s.put("out: o", w.out.data(), w.out.size());
  s.put("out: lse", w.lse.data(), w.lse.size());
  return s;
}

// One layer's step of tokens [t, t + n).
status step_layer(loop_world& w, int layer, std::int64_t n) {
  return w.loop.step(layer, view(stream_q(), w.t, n, kHq), view(stream_k(), w.t, n, kHkv),
                     view(stream_v(), w.t, n, kHkv),
                     heed::make_mutable_view(w.out.data(), n, kHq, kD), heed::default_executor(),
                     w.lse.data());
}
void step_all(loop_world& w, std::int64_t n) {
  for (int l = 0; l < kLayers; ++l) ASSERT_EQ(step_layer(w, l, n), status::ok);
  w.t += n;
}

struct loop_setup {
  cache_kind kind;
  named_policy policy;
  std::int64_t budget, high_budget, slack;
  std::vector<std::int64_t> warmup;  // steps before the call (tokens each)
};

heed::eviction_config loop_config(const loop_setup& s) {
  heed::eviction_config cfg;
  cfg.budget = s.budget;
  cfg.high_budget = s.high_budget;
  cfg.slack = s.slack;
  return cfg;
}

void make_loop(loop_world& w, const loop_setup& s) {
  w.policy = policy_of(s.policy);
  ASSERT_EQ(w.cache.init(config_of(s.kind, std::max(1, w.policy.needs().channels))), status::ok);
  ASSERT_EQ(w.loop.init(&w.cache, w.policy, loop_config(s), kHq), status::ok);
  for (const std::int64_t n : s.warmup) step_all(w, n);
}

std::vector<loop_setup> loop_setups() {
  std::vector<loop_setup> out;
  const cache_kind plain = kCacheKinds[1], paged = kCacheKinds[6], q4 = kCacheKinds[4];
  const cache_kind tiered = kCacheKinds[9];
  for (const named_policy& p : loop_policies()) {
    out.push_back({plain, p, 24, -1, 0, {}});
    out.push_back({plain, p, 24, -1, 0, {20, 1, 1, 1, 1}});
    out.push_back({paged, p, 40, -1, 3, {30, 10, 1}});
    out.push_back({tiered, p, 30, 12, 0, {8, 1, 1, 1, 1, 1}});
  }
  out.push_back({q4, loop_policies()[0], 24, -1, 0, {25, 1}});
  out.push_back({kCacheKinds[10], loop_policies()[2], 40, 10, 2, {16, 16, 1}});
  return out;
}

std::string label(const loop_setup& s) {
  std::string w;
  for (auto n : s.warmup) w += std::to_string(n) + ",";
  return std::string(s.policy.label) + " on " + s.kind.name + " budget " +
         std::to_string(s.budget) + " high " + std::to_string(s.high_budget) + " after " + w;
}

// The calls after a case: the other layer's step of the same tokens, then decode steps.
void finish_steps(loop_world& w, std::int64_t n) {
  ASSERT_EQ(step_layer(w, 1, n), status::ok);
  w.t += n;
  for (int i = 0; i < 3; ++i) step_all(w, 1);
}

// What step(0, n tokens) evicts before its append (the loop's rule, for these setups).
void evict_before_step(loop_world& w, const loop_setup& s, std::int64_t n) {
  const std::int64_t b = s.budget;
  const std::int64_t hb = s.high_budget >= 0 ? std::min(s.high_budget, b) : -1;
  std::int64_t target[kHkv], high[kHkv];
  for (int h = 0; h < kHkv; ++h) {
    target[h] = n <= b ? b - n : w.cache.length(0, h);
    high[h] = std::max<std::int64_t>(0, hb - n);
  }
  heed::eviction_scratch scratch;
  ASSERT_EQ(heed::evict_layer(w.cache, w.loop.policy(), w.loop.input(0), target, scratch,
                              hb >= 0 ? high : nullptr),
            status::ok);
}

TEST(AllocFaultLoop, StepDecodeAndChunks) {
  for (const loop_setup& s : loop_setups())
    for (const std::int64_t n : {std::int64_t(1), std::int64_t(6), kMaxChunk}) {
      run_faults<loop_world>("step " + std::to_string(n) + ": " + label(s),
                             {[&](loop_world& w) { make_loop(w, s); },
                              [&](loop_world& w) { return step_layer(w, 0, n); }, snap_loop,
                              [&](loop_world& w) { finish_steps(w, n); },
                              [&](loop_world& w) { evict_before_step(w, s, n); },
                              n > s.budget && s.high_budget >= 0 ? 1000 : 1});
      if (::testing::Test::HasFailure()) return;
    }
}

TEST(AllocFaultLoop, EvictTo) {
  for (const loop_setup& s : loop_setups()) {
    loop_setup full = s;
    full.budget = 0;  // grow without eviction, then evict by hand
    full.high_budget = -1;
    full.warmup = {40, 1, 1};
    for (const std::int64_t target : {0, 7, 30}) {
      run_faults<loop_world>("evict_to " + std::to_string(target) + ": " + label(full),
                             {[&](loop_world& w) { make_loop(w, full); },
                              [&](loop_world& w) { return w.loop.evict_to(1, target); }, snap_loop,
                              [&](loop_world& w) {
                                ASSERT_EQ(w.loop.evict_to(0, target), status::ok);
                                step_all(w, 1);
                              }});
    }
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(AllocFaultLoop, Init) {
  for (const loop_setup& s : loop_setups()) {
    const heed::eviction_config cfg = loop_config(s);
    run_faults<loop_world>(
        "init: " + label(s),
        {[&](loop_world& w) {
           w.policy = policy_of(s.policy);
           ASSERT_EQ(w.cache.init(config_of(s.kind, 2)), status::ok);
           fill(w.cache, stream_k(), stream_v(), 0, 10);
           w.t = 10;
         },
         [&](loop_world& w) { return w.loop.init(&w.cache, w.policy, cfg, kHq); }, snap_loop,
         [&](loop_world& w) {
           for (int i = 0; i < 3; ++i) step_all(w, 1);
         }});
    if (::testing::Test::HasFailure()) return;
  }
}

// evict_layer directly, with a policy of the caller's type and high targets.
TEST(AllocFaultLoop, EvictLayer) {
  for (const cache_kind& k : kCacheKinds) {
    struct world {
      heed::kv_cache cache;
      heed::h2o_policy policy;
      heed::eviction_scratch scratch;
    };
    run_faults<world>(std::string("evict_layer on ") + k.name,
                      {[&](world& w) {
                         ASSERT_EQ(w.cache.init(config_of(k, 1)), status::ok);
                         fill(w.cache, stream_k(), stream_v(), 0, 50);
                       },
                       [&](world& w) {
                         heed::policy_input in;
                         in.cache = &w.cache;
                         in.layer = 1;
                         in.q_heads = kHq;
                         in.budget = 20;
                         const std::int64_t target[] = {20, 33}, high[] = {10, 12};
                         return heed::evict_layer(w.cache, w.policy, in, target, w.scratch,
                                                  k.tiered ? high : nullptr);
                       },
                       snap_cache<world>, nullptr});
  }
}

// ---- Making policies ---------------------------------------------------------------------------

struct policy_world {
  heed::any_policy p;
};
state snap_policy(const policy_world& w) {
  state s;
  s.put("name", w.p.name(), std::strlen(w.p.name()));
  const heed::score_needs n = w.p.needs();
  const std::int64_t needs[] = {n.channels, n.column_mass, n.query_window, n.last_output,
                                n.kv_rows};
  s.put("needs", needs, 5);
  return s;
}

TEST(AllocFaultPolicy, MakeAndRegistry) {
  run_faults<policy_world>(
      "any_policy::make",
      {[](policy_world& w) {
         ASSERT_EQ(heed::any_policy::make(heed::tova_policy{}, &w.p), status::ok);
       },
       [](policy_world& w) {
         return heed::any_policy::make(heed::protect(heed::h2o_policy{}, 2, 3), &w.p);
       },
       snap_policy, nullptr});
  for (int i = 0; i < heed::policy_count(); ++i)
    for (const char* prefix : {"", "caote_"}) {
      const std::string name = prefix + std::string(heed::policy_name(i));
      std::vector<heed::policy_param> params = {{"sinks", 2}};
      if (name.find("duo_attention") != std::string::npos) {
        params.push_back({"retrieval", 3});
        params.push_back({"retrieval", 1});
      }
      if (name.find("lagkv") != std::string::npos || name.find("random") != std::string::npos ||
          name.find("tova") != std::string::npos || name.find("column_mean") != std::string::npos ||
          name.find("h2o") != std::string::npos || name.find("a2sf") != std::string::npos ||
          name.find("threshold") != std::string::npos)
        params.push_back({"recent", 2});
      run_faults<policy_world>(
          "make_policy " + name,
          {[](policy_world& w) {
             ASSERT_EQ(heed::any_policy::make(heed::tova_policy{}, &w.p), status::ok);
           },
           [&](policy_world& w) {
             return heed::make_policy(name.c_str(), params.data(), params.size(), &w.p);
           },
           snap_policy, nullptr});
    }
}

// ---- Streaming cache ---------------------------------------------------------------------------

TEST(AllocFaultStreaming, Evict) {
  for (const cache_kind& k : kCacheKinds) {
    struct world {
      heed::kv_cache cache;
      heed::streaming_scratch scratch;
    };
    heed::streaming_config sc;
    sc.n_sink = 4;
    sc.window = 20;
    sc.mode = heed::position_mode::original;
    run_faults<world>(std::string("streaming_evict on ") + k.name,
                      {[&](world& w) {
                         ASSERT_EQ(w.cache.init(config_of(k, 0)), status::ok);
                         fill(w.cache, stream_k(), stream_v(), 0, 40);
                       },
                       [&](world& w) { return heed::streaming_evict(w.cache, 1, sc, w.scratch); },
                       snap_cache<world>, nullptr});
  }
}

// ---- The C API ---------------------------------------------------------------------------------

// A C cache and loop (handles, owned), and the caller's output buffer.
struct c_world {
  heed_kv_cache* cache = nullptr;
  heed_eviction_loop* loop = nullptr;
  int channels = -1;
  std::int64_t t = 0;
  std::vector<float> out = std::vector<float>(std::size_t(kMaxChunk * kHq * kD));
  c_world() = default;
  c_world(const c_world&) = delete;
  c_world& operator=(const c_world&) = delete;
  ~c_world() {
    heed_eviction_loop_destroy(loop);
    heed_kv_cache_destroy(cache);
  }
};

status from_c(heed_status s) { return static_cast<status>(static_cast<int>(s)); }

heed_tensor c_view(const std::vector<float>& x, std::int64_t first, std::int64_t n, int heads) {
  const heed::tensor_view t = view(x, first, n, heads);
  return {t.data, HEED_DTYPE_F32, t.seq, t.heads, t.dim, t.seq_stride, t.head_stride};
}

// Everything the C API reads of a cache: lengths, positions, scores, tiers, rows as f32.
state snap_c(const c_world& w) {
  state s;
  const int handles[] = {w.cache != nullptr, w.loop != nullptr};  // created or not
  s.put("handles", handles, 2);
  s.put_value("channels", w.channels);
  s.put("out: o", w.out.data(), w.out.size());
  if (w.cache == nullptr) return s;
  heed_kv_cache_config cfg;
  EXPECT_EQ(heed_kv_cache_get_config(w.cache, &cfg), HEED_STATUS_OK);
  for (int l = 0; l < cfg.layers; ++l)
    for (int h = 0; h < cfg.kv_heads; ++h) {
      const std::string at = std::to_string(l) + "/" + std::to_string(h) + " ";
      std::int64_t len = 0, low = 0;
      EXPECT_EQ(heed_kv_cache_length(w.cache, l, h, &len), HEED_STATUS_OK);
      EXPECT_EQ(heed_kv_cache_low_length(w.cache, l, h, &low), HEED_STATUS_OK);
      s.put_value(at + "length", len);
      s.put_value(at + "low", low);
      if (len == 0) continue;
      std::vector<std::int64_t> pos(static_cast<std::size_t>(len));
      EXPECT_EQ(heed_kv_cache_positions(w.cache, l, h, pos.data(), len), HEED_STATUS_OK);
      s.put(at + "positions", pos.data(), pos.size());
      std::vector<float> x(static_cast<std::size_t>(len * kD));
      for (int c = 0; c < cfg.score_channels; ++c) {
        EXPECT_EQ(heed_kv_cache_read_scores(w.cache, l, h, c, x.data(), len), HEED_STATUS_OK);
        s.put(at + "scores " + std::to_string(c), x.data(), std::size_t(len));
      }
      std::vector<std::uint8_t> tiers(static_cast<std::size_t>(len));
      EXPECT_EQ(heed_kv_cache_tiers(w.cache, l, h, tiers.data(), tiers.size()), HEED_STATUS_OK);
      s.put(at + "tiers", tiers.data(), tiers.size());
      for (int which = 0; which < 2; ++which) {
        EXPECT_EQ(heed_kv_cache_gather_float(w.cache, l, h, which, x.data(), x.size()),
                  HEED_STATUS_OK);
        s.put(at + (which == 0 ? "k" : "v"), x.data(), x.size());
      }
    }
  return s;
}

heed_kv_cache_config c_config(const cache_kind& k) {
  heed_kv_cache_config c;
  EXPECT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
  c.layers = kLayers;
  c.kv_heads = kHkv;
  c.head_dim = kD;
  c.dtype = static_cast<heed_dtype>(static_cast<int>(k.type));
  c.page_rows = k.page_rows;
  c.tiered = k.tiered ? 1 : 0;
  c.low_type = static_cast<heed_dtype>(static_cast<int>(k.low_type));
  c.score_channels = 1;
  return c;
}

heed_eviction_config c_loop_config(std::int64_t budget, std::int64_t high) {
  heed_eviction_config c;
  EXPECT_EQ(heed_eviction_config_init(&c), HEED_STATUS_OK);
  c.budget = budget;
  c.high_budget = high;
  return c;
}

status c_step(c_world& w, int layer, std::int64_t n) {
  const heed_tensor q = c_view(stream_q(), w.t, n, kHq);
  const heed_tensor k = c_view(stream_k(), w.t, n, kHkv), v = c_view(stream_v(), w.t, n, kHkv);
  const heed::mutable_tensor_view m = heed::make_mutable_view(w.out.data(), n, kHq, kD);
  const heed_mutable_tensor o = {m.data, HEED_DTYPE_F32, m.seq,        m.heads,
                                 m.dim,  m.seq_stride,   m.head_stride};
  return from_c(heed_eviction_loop_step(w.loop, layer, &q, &k, &v, &o, nullptr, nullptr, nullptr));
}

TEST(AllocFaultCApi, CacheAndLoop) {
  const heed_policy_param params[] = {{"window", 4}, {"sinks", 2}};
  for (const cache_kind& k : {kCacheKinds[1], kCacheKinds[6], kCacheKinds[9]}) {
    const heed_kv_cache_config cfg = c_config(k);
    const std::int64_t high = k.tiered ? 10 : -1;
    const heed_eviction_config lc = c_loop_config(24, high);
    auto make_cache = [&](c_world& w) {
      ASSERT_EQ(heed_kv_cache_create(&cfg, &w.cache), HEED_STATUS_OK);
      for (int l = 0; l < kLayers; ++l) {
        const heed_tensor kk = c_view(stream_k(), 0, 30, kHkv),
                          vv = c_view(stream_v(), 0, 30, kHkv);
        ASSERT_EQ(heed_kv_cache_append(w.cache, l, &kk, &vv, nullptr), HEED_STATUS_OK);
      }
      w.t = 30;
    };
    auto make_loop_c = [&](c_world& w) {
      make_cache(w);
      ASSERT_EQ(heed_eviction_loop_create(w.cache, "snapkv", params, 2, &lc, kHq, &w.loop),
                HEED_STATUS_OK);
    };
    const std::string kind = std::string(" on ") + k.name;
    run_faults<c_world>("heed_kv_cache_create" + kind, {[](c_world&) {},
                                                        [&](c_world& w) {
                                                          heed_kv_cache* c = nullptr;
                                                          const heed_status st =
                                                              heed_kv_cache_create(&cfg, &c);
                                                          if (st == HEED_STATUS_OK) w.cache = c;
                                                          return from_c(st);
                                                        },
                                                        snap_c, nullptr});
    run_faults<c_world>("heed_kv_cache_append" + kind,
                        {make_cache,
                         [&](c_world& w) {
                           const heed_tensor kk = c_view(stream_k(), 30, 20, kHkv);
                           const heed_tensor vv = c_view(stream_v(), 30, 20, kHkv);
                           return from_c(heed_kv_cache_append(w.cache, 1, &kk, &vv, nullptr));
                         },
                         snap_c, nullptr});
    run_faults<c_world>(
        "heed_kv_cache_shrink_to_fit" + kind,
        {make_cache, [&](c_world& w) { return from_c(heed_kv_cache_shrink_to_fit(w.cache, 3)); },
         snap_c, nullptr});
    if (k.tiered) {
      const std::int32_t idx[] = {1, 4, 5, 20, 29};
      run_faults<c_world>(
          "heed_kv_cache_demote" + kind,
          {make_cache,
           [&](c_world& w) { return from_c(heed_kv_cache_demote(w.cache, 1, 0, idx, 5)); }, snap_c,
           nullptr});
    }
    run_faults<c_world>("heed_eviction_loop_create" + kind,
                        {make_cache,
                         [&](c_world& w) {
                           heed_eviction_loop* l = nullptr;
                           const heed_status st = heed_eviction_loop_create(
                               w.cache, "snapkv", params, 2, &lc, kHq, &l);
                           if (st == HEED_STATUS_OK) w.loop = l;
                           return from_c(st);
                         },
                         snap_c, nullptr});
    run_faults<c_world>("heed_policy_channels" + kind, {[](c_world&) {},
                                                        [&](c_world& w) {
                                                          int ch = -1;
                                                          const heed_status st =
                                                              heed_policy_channels(
                                                                  "caote_h2o", params + 1, 1, &ch);
                                                          if (st == HEED_STATUS_OK) w.channels = ch;
                                                          return from_c(st);
                                                        },
                                                        snap_c, nullptr});
    run_faults<c_world>(
        "heed_eviction_loop_evict_now / evict_to" + kind,
        {make_loop_c, [&](c_world& w) { return from_c(heed_eviction_loop_evict_now(w.loop, 0)); },
         snap_c,
         [&](c_world& w) {
           ASSERT_EQ(heed_eviction_loop_evict_to(w.loop, 1, 9), HEED_STATUS_OK);
         }});
    run_faults<c_world>(
        "heed_eviction_loop_evict_to" + kind,
        {make_loop_c, [&](c_world& w) { return from_c(heed_eviction_loop_evict_to(w.loop, 1, 5)); },
         snap_c, nullptr});
    // (A tiered cache's step is the C++ step of AllocFaultLoop, whose allowed partial change, a
    // demotion to high_budget - n, the C API cannot make by hand.)
    for (const std::int64_t n : {std::int64_t(1), std::int64_t(8)})
      if (!k.tiered)
        run_faults<c_world>("heed_eviction_loop_step " + std::to_string(n) + kind,
                            {make_loop_c, [&](c_world& w) { return c_step(w, 0, n); }, snap_c,
                             [&](c_world& w) {
                               ASSERT_EQ(c_step(w, 1, n), status::ok);
                               w.t += n;
                             },
                             [&](c_world& w) {
                               // What the step evicts before its append (snapkv, layer 0).
                               ASSERT_EQ(heed_eviction_loop_evict_to(w.loop, 0, 24 - n),
                                         HEED_STATUS_OK);
                             }});
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
