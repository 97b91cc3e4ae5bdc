// StreamingLLM over kv_cache (sinks/streaming_cache.hpp): tokens appended one by one (and as a
// prefill chunk) with eviction after each step, checked against a float64 model of what every
// head must hold: exactly the first n_sink and the last window original positions, values
// untouched, and every key equal to its raw key rotated at its cache index (reassigned mode) or
// at its original position (original mode).
//
// Key tolerance, per element, relative to the norm of its RoPE pair: (1 + m) * (2u + 1e-6) with
// m the number of re-rotations the key went through and u the storage rounding (2^-24 f32,
// 2^-11 f16, 2^-8 bf16): each re-rotation adds at most one rounding and a float rotation error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/sinks/rope.hpp"
#include "heed/sinks/streaming_cache.hpp"
#include "reference/cache_read.hpp"

namespace {

using heed::dtype;
using heed::kv_cache;
using heed::kv_cache_config;
using heed::position_mode;
using heed::rope_config;
using heed::rope_style;
using heed::status;
using heed::streaming_config;

// Float64 rotation of x (head_dim entries) to position pos.
std::vector<double> ref_rope(const rope_config& c, const std::vector<double>& x, double pos) {
  const std::int64_t rd = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
  std::vector<double> y = x;
  for (std::int64_t i = 0; i < rd / 2; ++i) {
    const std::int64_t a = c.style == rope_style::interleaved ? 2 * i : i;
    const std::int64_t b = c.style == rope_style::interleaved ? 2 * i + 1 : i + rd / 2;
    const double w = pos * std::pow(double(c.theta), -2.0 * double(i) / double(rd));
    y[std::size_t(a)] = x[std::size_t(a)] * std::cos(w) - x[std::size_t(b)] * std::sin(w);
    y[std::size_t(b)] = x[std::size_t(a)] * std::sin(w) + x[std::size_t(b)] * std::cos(w);
  }
  return y;
}

std::int64_t partner(const rope_config& c, std::int64_t ch) {
  const std::int64_t rd = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
  if (ch >= rd) return ch;
  if (c.style == rope_style::interleaved) return ch ^ 1;
  return ch < rd / 2 ? ch + rd / 2 : ch - rd / 2;
}

double rounding(dtype t) {
  return t == dtype::bf16  ? std::ldexp(1.0, -8)
         : t == dtype::f16 ? std::ldexp(1.0, -11)
                           : std::ldexp(1.0, -24);
}

// The stream: raw (unrotated) keys and values of every original position, per (layer, head).
struct stream {
  int layers, heads;
  std::int64_t d;
  std::vector<float> k, v;  // [t][layer][head][d]
  stream(std::int64_t n, int layers_, int heads_, std::int64_t d_, unsigned seed)
      : layers(layers_), heads(heads_), d(d_) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::uniform_int_distribution<int> u(-128, 128);
    const std::size_t size = std::size_t(n * layers * heads * d);
    k.resize(size);
    v.resize(size);
    for (auto& e : k) e = float(nd(rng));
    for (auto& e : v) e = float(u(rng)) / 64.f;  // exact in every storage type
  }
  std::size_t at(std::int64_t t, int layer, int head) const {
    return std::size_t(((t * layers + layer) * heads + head) * d);
  }
  std::vector<double> raw_key(std::int64_t t, int layer, int head) const {
    return std::vector<double>(k.begin() + std::ptrdiff_t(at(t, layer, head)),
                               k.begin() + std::ptrdiff_t(at(t, layer, head) + std::size_t(d)));
  }
};

// Appends original positions [t0, t0 + n) to `layer`, keys rotated at first_pos + i.
void append_tokens(kv_cache& cache, const stream& s, int layer, std::int64_t t0, std::int64_t n,
                   const rope_config& rope, std::int64_t first_pos) {
  std::vector<float> k(std::size_t(n * s.heads * s.d)), v(k.size());
  for (std::int64_t i = 0; i < n; ++i)
    for (int h = 0; h < s.heads; ++h) {
      std::copy_n(s.k.begin() + std::ptrdiff_t(s.at(t0 + i, layer, h)), s.d,
                  k.begin() + (i * s.heads + h) * s.d);
      std::copy_n(s.v.begin() + std::ptrdiff_t(s.at(t0 + i, layer, h)), s.d,
                  v.begin() + (i * s.heads + h) * s.d);
    }
  auto kv = heed::make_mutable_view(k.data(), n, s.heads, s.d);
  ASSERT_EQ(heed::rope_apply(rope, kv, first_pos), status::ok);
  ASSERT_EQ(cache.append(layer, heed::make_view(k.data(), n, s.heads, s.d),
                         heed::make_view(v.data(), n, s.heads, s.d)),
            status::ok);
}

// Checks every head of `layer` against the expected original positions, with the per-position
// re-rotation counts for the tolerance.
void check_layer(const kv_cache& cache, const stream& s, int layer, const streaming_config& cfg,
                 const std::vector<std::int64_t>& want_pos,
                 const std::map<std::int64_t, int>& rerotations) {
  for (int h = 0; h < s.heads; ++h) {
    ASSERT_EQ(cache.length(layer, h), std::int64_t(want_pos.size())) << "layer " << layer;
    const std::int64_t* pos = cache.positions(layer, h);
    for (std::size_t j = 0; j < want_pos.size(); ++j) {
      ASSERT_EQ(pos[j], want_pos[j]) << "layer " << layer << " head " << h << " entry " << j;
      std::int64_t rot = -1;
      ASSERT_EQ(heed::streaming_key_position(cache, layer, h, std::int64_t(j), cfg, &rot),
                status::ok);
      const std::int64_t want_rot =
          cfg.mode == position_mode::reassigned ? std::int64_t(j) : want_pos[j];
      ASSERT_EQ(rot, want_rot);
      const auto want = ref_rope(cfg.rope, s.raw_key(want_pos[j], layer, h), double(want_rot));
      const auto it = rerotations.find(want_pos[j]);
      const int m = it == rerotations.end() ? 0 : it->second;
      const double rel = (1 + m) * (2 * rounding(cache.type()) + 1e-6);
      for (std::int64_t c = 0; c < s.d; ++c) {
        const double norm =
            std::hypot(want[std::size_t(c)], want[std::size_t(partner(cfg.rope, c))]);
        ASSERT_NEAR(heed_ref::read_entry(cache, layer, h, 0, std::int64_t(j), c),
                    want[std::size_t(c)], rel * norm + 1e-30)
            << "layer " << layer << " head " << h << " entry " << j << " (position " << want_pos[j]
            << ", rotary " << want_rot << ", " << m << " re-rotations) channel " << c;
        ASSERT_EQ(heed_ref::read_entry(cache, layer, h, 1, std::int64_t(j), c),
                  s.v[s.at(want_pos[j], layer, h) + std::size_t(c)]);
      }
    }
  }
}

streaming_config make_config(position_mode mode, std::int64_t n_sink, std::int64_t window,
                             std::int64_t slack, const rope_config& rope) {
  streaming_config c;
  c.n_sink = n_sink;
  c.window = window;
  c.slack = slack;
  c.mode = mode;
  c.rope = rope;
  return c;
}

class StreamingCache : public ::testing::TestWithParam<std::tuple<dtype, position_mode>> {};

// Decode one token at a time: after every step each head holds exactly the first n_sink and the
// last window original positions, and every key has its mode's rotation.
TEST_P(StreamingCache, TokenByTokenKeepsSinksAndWindow) {
  const dtype type = std::get<0>(GetParam());
  const position_mode mode = std::get<1>(GetParam());
  const int layers = 2, heads = 3;
  const std::int64_t d = 16, n_sink = 4;
  // Contiguous, and paged with the window spanning several pages.
  for (std::int64_t page_rows : {0, 16})
    for (rope_style style : {rope_style::half, rope_style::interleaved}) {
      const std::int64_t window = page_rows ? 30 : 8, n = page_rows ? 75 : 41;
      rope_config rope;
      rope.head_dim = d;
      rope.rotary_dim = style == rope_style::half ? 12 : 0;
      rope.style = style;
      const streaming_config cfg = make_config(mode, n_sink, window, 0, rope);
      const stream s(n, layers, heads, d, 11);
      kv_cache cache;
      kv_cache_config cc{layers, heads, d, type, 0, 1};
      cc.page_rows = page_rows;
      ASSERT_EQ(cache.init(cc), status::ok);
      heed::streaming_scratch scratch;
      std::map<std::int64_t, int> rerot;  // original position -> re-rotations so far
      for (std::int64_t t = 0; t < n; ++t) {
        for (int layer = 0; layer < layers; ++layer) {
          const std::int64_t len_before = std::min(t, n_sink + window);
          for (int h = 0; h < heads; ++h) {
            std::int64_t pos = -1;
            ASSERT_EQ(heed::streaming_next_position(cache, layer, h, cfg, &pos), status::ok);
            ASSERT_EQ(pos, mode == position_mode::reassigned ? len_before : t) << "token " << t;
          }
          std::int64_t pos = -1;
          ASSERT_EQ(heed::streaming_next_position(cache, layer, 0, cfg, &pos), status::ok);
          append_tokens(cache, s, layer, t, 1, rope, pos);
          std::int64_t evicted = -1;
          ASSERT_EQ(heed::streaming_evict(cache, layer, cfg, scratch, &evicted), status::ok);
          const bool over = t + 1 > n_sink + window;
          ASSERT_EQ(evicted, over ? heads : 0) << "token " << t;
          std::vector<std::int64_t> want;
          for (std::int64_t p = 0; p <= t; ++p)
            if (p < n_sink || p > t - window) want.push_back(p);
          if (layer == 0 && over && mode == position_mode::reassigned)
            for (std::int64_t p = t + 1 - window; p <= t; ++p) ++rerot[p];  // the window shifted
          check_layer(cache, s, layer, cfg, want, rerot);
          if (HasFatalFailure()) return;
        }
      }
    }
}

// A prefill chunk (keys rotated at 0 .. n - 1 in both modes), one eviction, then decode.
TEST_P(StreamingCache, PrefillChunkThenDecode) {
  const dtype type = std::get<0>(GetParam());
  const position_mode mode = std::get<1>(GetParam());
  const int heads = 2;
  const std::int64_t d = 8, n_sink = 3, window = 5, prefill = 20, n = 27;
  rope_config rope;
  rope.head_dim = d;
  rope.theta = 500000.f;
  const streaming_config cfg = make_config(mode, n_sink, window, 0, rope);
  const stream s(n, 1, heads, d, 12);
  kv_cache cache;
  ASSERT_EQ(cache.init({1, heads, d, type}), status::ok);
  heed::streaming_scratch scratch;
  append_tokens(cache, s, 0, 0, prefill, rope, 0);
  std::int64_t evicted = -1;
  ASSERT_EQ(heed::streaming_evict(cache, 0, cfg, scratch, &evicted), status::ok);
  ASSERT_EQ(evicted, heads * (prefill - n_sink - window));
  std::map<std::int64_t, int> rerot;
  if (mode == position_mode::reassigned)
    for (std::int64_t p = prefill - window; p < prefill; ++p) rerot[p] = 1;
  std::vector<std::int64_t> want = {0, 1, 2, 15, 16, 17, 18, 19};
  check_layer(cache, s, 0, cfg, want, rerot);
  for (std::int64_t t = prefill; t < n; ++t) {
    std::int64_t pos = -1;
    ASSERT_EQ(heed::streaming_next_position(cache, 0, 0, cfg, &pos), status::ok);
    ASSERT_EQ(pos, mode == position_mode::reassigned ? n_sink + window : t);
    append_tokens(cache, s, 0, t, 1, rope, pos);
    ASSERT_EQ(heed::streaming_evict(cache, 0, cfg, scratch), status::ok);
    want.erase(want.begin() + n_sink);
    want.push_back(t);
    if (mode == position_mode::reassigned)
      for (std::int64_t p = t + 1 - window; p <= t; ++p) ++rerot[p];
    check_layer(cache, s, 0, cfg, want, rerot);
    if (HasFatalFailure()) return;
  }
}

// Slack: heads grow to n_sink + window + slack, then drop to n_sink + window in one eviction.
TEST_P(StreamingCache, SlackEvictsInChunks) {
  const dtype type = std::get<0>(GetParam());
  const position_mode mode = std::get<1>(GetParam());
  const std::int64_t d = 12, n_sink = 2, window = 5, slack = 3, n = 40;
  rope_config rope;
  rope.head_dim = d;
  rope.style = rope_style::half;
  const streaming_config cfg = make_config(mode, n_sink, window, slack, rope);
  const stream s(n, 1, 1, d, 13);
  kv_cache cache;
  ASSERT_EQ(cache.init({1, 1, d, type}), status::ok);
  heed::streaming_scratch scratch;
  std::vector<std::int64_t> held;  // original positions in the cache
  std::map<std::int64_t, int> rerot;
  int evictions = 0;
  for (std::int64_t t = 0; t < n; ++t) {
    std::int64_t pos = -1;
    ASSERT_EQ(heed::streaming_next_position(cache, 0, 0, cfg, &pos), status::ok);
    ASSERT_EQ(pos, mode == position_mode::reassigned ? std::int64_t(held.size()) : t);
    append_tokens(cache, s, 0, t, 1, rope, pos);
    held.push_back(t);
    std::int64_t evicted = -1;
    ASSERT_EQ(heed::streaming_evict(cache, 0, cfg, scratch, &evicted), status::ok);
    if (std::int64_t(held.size()) > n_sink + window + slack) {
      ASSERT_EQ(evicted, slack + 1);
      held.erase(held.begin() + n_sink, held.end() - window);
      ++evictions;
      if (mode == position_mode::reassigned)
        for (auto it = held.end() - window; it != held.end(); ++it) ++rerot[*it];
    } else {
      ASSERT_EQ(evicted, 0);
    }
    check_layer(cache, s, 0, cfg, held, rerot);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(evictions, (n - (n_sink + window)) / (slack + 1));
}

INSTANTIATE_TEST_SUITE_P(Types, StreamingCache,
                         ::testing::Combine(::testing::Values(dtype::f32, dtype::f16, dtype::bf16),
                                            ::testing::Values(position_mode::original,
                                                              position_mode::reassigned)));

// A long f32 stream: keys are re-rotated up to `window` times and stay within the bound.
TEST(StreamingCacheLong, ReassignedF32StaysAccurate) {
  const std::int64_t d = 64, n_sink = 4, window = 64, n = 400;
  rope_config rope;
  rope.head_dim = d;
  const streaming_config cfg = make_config(position_mode::reassigned, n_sink, window, 0, rope);
  const stream s(n, 1, 1, d, 14);
  kv_cache cache;
  ASSERT_EQ(cache.init({1, 1, d, dtype::f32}), status::ok);
  heed::streaming_scratch scratch;
  std::map<std::int64_t, int> rerot;
  for (std::int64_t t = 0; t < n; ++t) {
    std::int64_t pos = -1;
    ASSERT_EQ(heed::streaming_next_position(cache, 0, 0, cfg, &pos), status::ok);
    append_tokens(cache, s, 0, t, 1, rope, pos);
    ASSERT_EQ(heed::streaming_evict(cache, 0, cfg, scratch), status::ok);
    if (t + 1 > n_sink + window)
      for (std::int64_t p = t + 1 - window; p <= t; ++p) ++rerot[p];
  }
  std::vector<std::int64_t> want;
  for (std::int64_t p = 0; p < n; ++p)
    if (p < n_sink || p >= n - window) want.push_back(p);
  EXPECT_EQ(rerot[n - window], window);  // the oldest window entry moved window times
  check_layer(cache, s, 0, cfg, want, rerot);
}

// Sinks found anywhere (e.g. by detect_sinks) plus the window, kept with re-assigned positions.
TEST(StreamingCacheKeep, DetectedSinksAndWindow) {
  std::int32_t keep[32];
  std::int64_t n_keep = -1;
  const std::int64_t sinks[] = {0, 5, 13, 17};  // 17 falls inside the window: no duplicate
  ASSERT_EQ(heed::sink_window_keep_list(20, sinks, 4, 4, keep, 16, &n_keep), status::ok);
  ASSERT_EQ(n_keep, 7);
  const std::int32_t want_keep[] = {0, 5, 13, 16, 17, 18, 19};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(keep[i], want_keep[i]);
  ASSERT_EQ(heed::sink_window_keep_list(20, sinks, 4, 25, keep, 16, &n_keep),
            status::workspace_too_small);  // window larger than the head: all 20 entries
  ASSERT_EQ(heed::sink_window_keep_list(20, sinks, 4, 25, keep, 20, &n_keep), status::ok);
  EXPECT_EQ(n_keep, 20);
  ASSERT_EQ(heed::sink_window_keep_list(20, nullptr, 0, 0, nullptr, 0, &n_keep), status::ok);
  EXPECT_EQ(n_keep, 0);
  ASSERT_EQ(heed::sink_window_keep_list(20, sinks, 4, 4, keep, 6, &n_keep),
            status::workspace_too_small);
  const std::int64_t unsorted[] = {5, 0};
  const std::int64_t outside[] = {20};
  EXPECT_EQ(heed::sink_window_keep_list(20, unsorted, 2, 4, keep, 16, &n_keep),
            status::invalid_argument);
  EXPECT_EQ(heed::sink_window_keep_list(20, outside, 1, 4, keep, 16, &n_keep),
            status::invalid_argument);
  EXPECT_EQ(heed::sink_window_keep_list(20, nullptr, 2, 4, keep, 16, &n_keep),
            status::null_pointer);
  EXPECT_EQ(heed::sink_window_keep_list(20, sinks, 4, 4, keep, 16, nullptr), status::null_pointer);
  EXPECT_EQ(heed::sink_window_keep_list(20, sinks, 4, -1, keep, 16, &n_keep),
            status::invalid_argument);

  for (dtype type : {dtype::f32, dtype::bf16}) {
    for (position_mode mode : {position_mode::original, position_mode::reassigned}) {
      const std::int64_t d = 10;
      rope_config rope;
      rope.head_dim = d;
      rope.rotary_dim = 8;
      const streaming_config cfg = make_config(mode, 0, 4, 0, rope);
      const stream s(20, 1, 1, d, 15);
      kv_cache cache;
      ASSERT_EQ(cache.init({1, 1, d, type}), status::ok);
      append_tokens(cache, s, 0, 0, 20, rope, 0);
      ASSERT_EQ(heed::sink_window_keep_list(20, sinks, 4, 4, keep, 16, &n_keep), status::ok);
      ASSERT_EQ(heed::streaming_keep(cache, 0, 0, keep, n_keep, cfg), status::ok);
      std::map<std::int64_t, int> rerot;
      if (mode == position_mode::reassigned)
        for (std::int64_t p : {5, 13, 16, 17, 18, 19}) rerot[p] = 1;
      check_layer(cache, s, 0, cfg, {0, 5, 13, 16, 17, 18, 19}, rerot);
      std::int64_t pos = -1;
      ASSERT_EQ(heed::streaming_next_position(cache, 0, 0, cfg, &pos), status::ok);
      EXPECT_EQ(pos, mode == position_mode::reassigned ? 7 : 20);
    }
  }
}

TEST(StreamingCacheErrors, BadInputs) {
  rope_config rope;
  rope.head_dim = 8;
  streaming_config cfg = make_config(position_mode::reassigned, 4, 8, 0, rope);
  EXPECT_EQ(heed::validate(cfg), status::ok);
  streaming_config bad = cfg;
  bad.window = -1;
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad.window = 0;
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad = cfg;
  bad.n_sink = -1;
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad = cfg;
  bad.slack = -1;
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad = cfg;
  bad.window = std::int64_t(1) << 40;
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad = cfg;
  bad.mode = static_cast<position_mode>(3);
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad = cfg;
  bad.rope.rotary_dim = 5;  // odd
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad.rope.rotary_dim = 10;  // > head_dim
  EXPECT_EQ(heed::validate(bad), status::invalid_argument);
  bad.mode = position_mode::original;  // the rope config is not used in original mode
  EXPECT_EQ(heed::validate(bad), status::ok);

  kv_cache empty;
  heed::streaming_scratch scratch;
  std::int64_t pos = 0;
  EXPECT_EQ(heed::streaming_evict(empty, 0, cfg, scratch), status::invalid_argument);
  EXPECT_EQ(heed::streaming_next_position(empty, 0, 0, cfg, &pos), status::invalid_argument);

  kv_cache cache;
  ASSERT_EQ(cache.init({2, 2, 8, dtype::f32}), status::ok);
  const stream s(20, 2, 2, 8, 16);
  append_tokens(cache, s, 0, 0, 20, rope, 0);
  const std::vector<float> k0(reinterpret_cast<const float*>(cache.keys(0, 0).data),
                              reinterpret_cast<const float*>(cache.keys(0, 0).data) + 20 * 8);
  EXPECT_EQ(heed::streaming_evict(cache, -1, cfg, scratch), status::invalid_argument);
  EXPECT_EQ(heed::streaming_evict(cache, 2, cfg, scratch), status::invalid_argument);
  bad = cfg;
  bad.window = -3;
  EXPECT_EQ(heed::streaming_evict(cache, 0, bad, scratch), status::invalid_argument);
  bad = cfg;
  bad.rope.rotary_dim = 3;
  EXPECT_EQ(heed::streaming_evict(cache, 0, bad, scratch), status::invalid_argument);
  bad = cfg;
  bad.rope.head_dim = 16;  // not the cache's head_dim
  EXPECT_EQ(heed::streaming_evict(cache, 0, bad, scratch), status::shape_mismatch);
  EXPECT_EQ(heed::streaming_next_position(cache, 0, 2, cfg, &pos), status::invalid_argument);
  EXPECT_EQ(heed::streaming_next_position(cache, 3, 0, cfg, &pos), status::invalid_argument);
  EXPECT_EQ(heed::streaming_next_position(cache, 0, 0, cfg, nullptr), status::null_pointer);
  EXPECT_EQ(heed::streaming_key_position(cache, 0, 0, 20, cfg, &pos), status::invalid_argument);
  EXPECT_EQ(heed::streaming_key_position(cache, 0, 0, -1, cfg, &pos), status::invalid_argument);
  EXPECT_EQ(heed::streaming_key_position(cache, 0, 0, 3, cfg, nullptr), status::null_pointer);
  const std::int32_t descending[] = {3, 1};
  EXPECT_EQ(heed::streaming_keep(cache, 0, 0, descending, 2, cfg), status::invalid_argument);
  EXPECT_EQ(heed::streaming_keep(cache, 0, 0, nullptr, 2, cfg), status::null_pointer);
  EXPECT_EQ(heed::streaming_keep(cache, 0, 5, descending, 0, cfg), status::invalid_argument);
  // Nothing changed by the failed calls.
  EXPECT_EQ(cache.length(0, 0), 20);
  EXPECT_EQ(cache.length(0, 1), 20);
  const float* k_now = static_cast<const float*>(cache.keys(0, 0).data);
  EXPECT_TRUE(std::equal(k0.begin(), k0.end(), k_now));
}

}  // namespace
