// Token pruning (FastV / LazyLLM) against a float64 recomputation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "heed/policy/token_pruning.hpp"
#include "reference/naive_attention.hpp"

namespace {

using heed::status;

struct problem {
  int hq, hkv;
  std::int64_t d, L, W;
  std::vector<float> q, k;  // q: [L, hq, d], k: [L, hkv, d]
};

problem make_problem(int hq, int hkv, std::int64_t d, std::int64_t L, std::int64_t W,
                     unsigned seed) {
  problem p{hq, hkv, d, L, W, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  p.q.resize(std::size_t(L * hq * d));
  p.k.resize(std::size_t(L * hkv * d));
  for (auto& e : p.q) e = 2.f * g(rng);
  for (auto& e : p.k) e = g(rng);
  return p;
}

// Mean over heads and the last W rows of the causal full-softmax probabilities (with `tune`
// setting the reference's logit settings).
std::vector<double> reference_scores(
    const problem& p, const std::function<void(heed_ref::attention_problem&)>& tune = {}) {
  heed_ref::attention_problem a;
  a.lq = p.L;
  a.lk = p.L;
  a.hq = p.hq;
  a.hkv = p.hkv;
  a.d = p.d;
  a.resize();
  for (std::size_t i = 0; i < p.q.size(); ++i) a.q[i] = p.q[i];
  for (std::size_t i = 0; i < p.k.size(); ++i) a.k[i] = p.k[i];
  if (tune) tune(a);
  const auto r = heed_ref::naive_attention(a);
  std::vector<double> s(std::size_t(p.L), 0.0);
  for (int h = 0; h < p.hq; ++h)
    for (std::int64_t i = p.L - p.W; i < p.L; ++i)
      for (std::int64_t j = 0; j < p.L; ++j)
        s[std::size_t(j)] += r.prob_at(h, i, j) / double(p.hq * p.W);
  return s;
}

std::vector<std::int64_t> reference_prune(const std::vector<double>& s, double drop, std::int64_t b,
                                          std::int64_t e) {
  std::vector<std::int64_t> in;
  for (std::int64_t j = b; j < e; ++j) in.push_back(j);
  std::sort(in.begin(), in.end(), [&](auto x, auto y) {
    return std::make_tuple(s[std::size_t(x)], x) > std::make_tuple(s[std::size_t(y)], y);
  });
  const std::int64_t r = e - b;
  in.resize(std::size_t(r - std::int64_t(std::floor(double(r) * drop))));
  std::vector<std::int64_t> out;
  for (std::int64_t j = 0; j < b; ++j) out.push_back(j);
  for (auto j : in) out.push_back(j);
  for (std::int64_t j = e; j < std::int64_t(s.size()); ++j) out.push_back(j);
  std::sort(out.begin(), out.end());
  return out;
}

// The model's logit settings reach the scores: soft-capping, ALiBi, a sliding window and learned
// sinks together, against the reference with the same settings.
TEST(TokenPruning, ScoresUseTheModelsLogitSettings) {
  const problem p = make_problem(4, 2, 32, 120, 6, 9);
  const std::vector<float> slopes = {0.1f, 0.02f, 0.3f, 0.f}, sinks = {1.f, 0.f, -1.f, 2.f};
  heed::logit_settings ls;
  ls.softcap = 2.5f;
  ls.alibi_slopes = slopes.data();
  ls.window_left = 50;
  ls.sink_logits = sinks.data();
  const auto ref = reference_scores(p, [&](heed_ref::attention_problem& a) {
    a.softcap = 2.5;
    a.alibi_slopes.assign(slopes.begin(), slopes.end());
    a.window_left = 50;
    a.sink_logits.assign(sinks.begin(), sinks.end());
  });
  std::vector<float> scores(std::size_t(p.L));
  std::vector<unsigned char> ws(heed::token_attention_workspace_size(p.L, p.hq));
  const auto qw = heed::make_view(p.q.data() + (p.L - p.W) * p.hq * p.d, p.W, p.hq, p.d);
  ASSERT_EQ(heed::token_attention_scores(qw, heed::make_view(p.k.data(), p.L, p.hkv, p.d), nullptr,
                                         0, ls, scores.data(), {ws.data(), ws.size()}),
            status::ok);
  for (std::int64_t j = 0; j < p.L; ++j)
    ASSERT_NEAR(scores[std::size_t(j)], ref[std::size_t(j)], 1e-6) << j;
}

TEST(TokenPruning, FastVScoresAndKeepSetsMatchFloat64) {
  for (auto shape : {std::make_tuple(8, 2, 64, 200, 1), std::make_tuple(4, 4, 40, 77, 8),
                     std::make_tuple(4, 1, 128, 300, 16)}) {
    const problem p = make_problem(std::get<0>(shape), std::get<1>(shape), std::get<2>(shape),
                                   std::get<3>(shape), std::get<4>(shape), 3);
    const auto ref = reference_scores(p);
    std::vector<float> scores(std::size_t(p.L));
    std::vector<unsigned char> ws(heed::token_attention_workspace_size(p.L, p.hq));
    const auto qw = heed::make_view(p.q.data() + (p.L - p.W) * p.hq * p.d, p.W, p.hq, p.d);
    ASSERT_EQ(heed::token_attention_scores(qw, heed::make_view(p.k.data(), p.L, p.hkv, p.d),
                                           nullptr, 0, {}, scores.data(), {ws.data(), ws.size()}),
              status::ok);
    for (std::int64_t j = 0; j < p.L; ++j)
      ASSERT_NEAR(scores[std::size_t(j)], ref[std::size_t(j)], 1e-6) << j;
    for (double drop : {0.0, 0.25, 0.5, 0.9}) {
      for (auto range : {std::make_pair<std::int64_t, std::int64_t>(0, -1),
                         std::make_pair<std::int64_t, std::int64_t>(5, 60)}) {
        heed::token_prune_options o;
        o.drop_ratio = drop;
        o.range_begin = range.first;
        o.range_end = range.second;
        std::vector<std::int32_t> keep(std::size_t(p.L)),
            scratch(std::size_t(heed::prune_tokens_scratch_size(p.L)));
        std::int64_t n = -1;
        ASSERT_EQ(heed::prune_tokens(scores.data(), p.L, o, keep.data(), &n, scratch.data()),
                  status::ok);
        const auto want =
            reference_prune(ref, drop, range.first, range.second < 0 ? p.L : range.second);
        ASSERT_EQ(n, std::int64_t(want.size()));
        std::vector<std::int64_t> got(keep.begin(), keep.begin() + n);
        if (got != want) {  // only near-ties may differ
          for (auto j : got)
            if (!std::binary_search(want.begin(), want.end(), j)) {
              double lowest = 1e300;
              for (auto w : want)
                if (w >= range.first) lowest = std::min(lowest, ref[std::size_t(w)]);
              EXPECT_NEAR(ref[std::size_t(j)], lowest, 1e-6);
            }
        }
        EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
      }
    }
  }
}

TEST(TokenPruning, LazyLLMScheduleAndBadInput) {
  std::vector<double> r(8);
  ASSERT_EQ(heed::lazyllm_schedule(8, 2, 0.25, r.data()), status::ok);
  EXPECT_EQ(r[0], 1.0);
  EXPECT_EQ(r[1], 1.0);
  EXPECT_DOUBLE_EQ(r[7], 0.25);
  for (int l = 1; l < 8; ++l) EXPECT_LE(r[l], r[l - 1]);
  EXPECT_EQ(heed::lazyllm_schedule(8, 8, 0.5, r.data()), status::invalid_argument);
  EXPECT_EQ(heed::lazyllm_schedule(8, 0, 0.0, r.data()), status::invalid_argument);
  EXPECT_EQ(heed::lazyllm_schedule(8, 0, 1.5, r.data()), status::invalid_argument);
  EXPECT_EQ(heed::lazyllm_schedule(8, 0, 0.5, nullptr), status::null_pointer);

  std::vector<float> s(10, 1.f);
  std::vector<std::int32_t> keep(10), scratch(20);
  std::int64_t n = 0;
  heed::token_prune_options o;
  for (double bad : {-0.1, 1.0, 2.0, std::nan("")}) {
    o.drop_ratio = bad;
    EXPECT_EQ(heed::prune_tokens(s.data(), 10, o, keep.data(), &n, scratch.data()),
              status::invalid_argument);
  }
  o = {};
  o.range_begin = 4;
  o.range_end = 2;
  EXPECT_EQ(heed::prune_tokens(s.data(), 10, o, keep.data(), &n, scratch.data()),
            status::invalid_argument);
  o.range_end = 11;
  EXPECT_EQ(heed::prune_tokens(s.data(), 10, o, keep.data(), &n, scratch.data()),
            status::invalid_argument);
  o = {};
  EXPECT_EQ(heed::prune_tokens(nullptr, 10, o, keep.data(), &n, scratch.data()),
            status::null_pointer);
  EXPECT_EQ(heed::prune_tokens(s.data(), 10, o, keep.data(), nullptr, scratch.data()),
            status::null_pointer);
  // All-equal scores: ties keep the later tokens.
  ASSERT_EQ(heed::prune_tokens(s.data(), 10, o, keep.data(), &n, scratch.data()), status::ok);
  ASSERT_EQ(n, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(keep[i], 5 + i);

  std::vector<float> q(2 * 6 * 8, 0.1f), k(10 * 4 * 8, 0.2f), out(10);
  std::vector<unsigned char> ws(heed::token_attention_workspace_size(10, 6));
  EXPECT_EQ(heed::token_attention_scores(heed::make_view(q.data(), 2, 6, 8),
                                         heed::make_view(k.data(), 10, 4, 8), nullptr, 0, {},
                                         out.data(), {ws.data(), ws.size()}),
            status::shape_mismatch);
  EXPECT_EQ(heed::token_attention_scores(heed::make_view(q.data(), 2, 4, 8),
                                         heed::make_view(k.data(), 10, 4, 8), nullptr, 0, {},
                                         out.data(), {ws.data(), 0}),
            status::workspace_too_small);
}

}  // namespace
