// The float64 reference against hand-computed cases, so the kernel tests rest on something
// checked independently.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "reference/naive_attention.hpp"

namespace heed_ref {
namespace {

attention_problem small(std::int64_t lq, std::int64_t lk, std::int64_t hq, std::int64_t hkv,
                        std::int64_t d) {
  attention_problem p;
  p.lq = lq;
  p.lk = lk;
  p.hq = hq;
  p.hkv = hkv;
  p.d = d;
  p.resize();
  return p;
}

TEST(NaiveAttention, EqualLogitsAverageTheValues) {
  // q = 0: all logits 0, so p = 1/n, O = mean of V, LSE = log n, H = log n.
  attention_problem p = small(1, 4, 1, 1, 2);
  p.causal = false;
  for (int j = 0; j < 4; ++j) {
    p.k_at(j, 0, 0) = j;
    p.v_at(j, 0, 0) = j;
    p.v_at(j, 0, 1) = 10.0 * j;
  }
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), 1.5, 1e-15);
  EXPECT_NEAR(r.o_at(0, 0, 1), 15.0, 1e-14);
  EXPECT_NEAR(r.lse_at(0, 0), std::log(4.0), 1e-15);
  EXPECT_NEAR(r.entropy_at(0, 0), std::log(4.0), 1e-15);
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(r.prob_at(0, 0, j), 0.25, 1e-15);
}

TEST(NaiveAttention, TwoKeysByHand) {
  // logits scale * q.k = {0, ln 3}: p = {1/4, 3/4}.
  attention_problem p = small(1, 2, 1, 1, 1);
  p.causal = false;
  p.scale = 1.0;
  p.q_at(0, 0, 0) = std::log(3.0);
  p.k_at(0, 0, 0) = 0.0;
  p.k_at(1, 0, 0) = 1.0;
  p.v_at(0, 0, 0) = 4.0;
  p.v_at(1, 0, 0) = 8.0;
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), 0.25 * 4 + 0.75 * 8, 1e-14);
  EXPECT_NEAR(r.lse_at(0, 0), std::log(4.0), 1e-15);
  EXPECT_NEAR(r.entropy_at(0, 0), -(0.25 * std::log(0.25) + 0.75 * std::log(0.75)), 1e-15);
}

TEST(NaiveAttention, DefaultScaleIsInverseSqrtD) {
  attention_problem p = small(1, 2, 1, 1, 4);
  p.causal = false;
  for (int c = 0; c < 4; ++c) {
    p.q_at(0, 0, c) = 1.0;
    p.k_at(1, 0, c) = 1.0;  // logit of key 1: 4 / sqrt(4) = 2
  }
  p.v_at(1, 0, 0) = 1.0;
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), std::exp(2.0) / (1.0 + std::exp(2.0)), 1e-15);
}

TEST(NaiveAttention, CausalWithDefaultOffsetSeesThePast) {
  // Lq = 2 queries are the last 2 of Lk = 3 keys: row 0 sees keys 0..1, row 1 sees 0..2.
  attention_problem p = small(2, 3, 1, 1, 1);
  for (int j = 0; j < 3; ++j) p.v_at(j, 0, 0) = j;
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), 0.5, 1e-15);
  EXPECT_NEAR(r.o_at(1, 0, 0), 1.0, 1e-15);
  EXPECT_EQ(r.prob_at(0, 0, 2), 0.0);
  // An explicit offset of 0: row 0 sees key 0 only.
  p.q_offset = 0;
  const attention_result r0 = naive_attention(p);
  EXPECT_NEAR(r0.o_at(0, 0, 0), 0.0, 1e-15);
  EXPECT_NEAR(r0.lse_at(0, 0), 0.0, 1e-15);
  EXPECT_NEAR(r0.entropy_at(0, 0), 0.0, 1e-15);
  EXPECT_NEAR(r0.o_at(1, 0, 0), 0.5, 1e-15);
}

TEST(NaiveAttention, WindowMasksTheFarPast) {
  attention_problem p = small(1, 5, 1, 1, 1);
  p.window_left = 1;  // query at 4 sees keys 3, 4
  for (int j = 0; j < 5; ++j) p.v_at(j, 0, 0) = j;
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), 3.5, 1e-15);
  EXPECT_EQ(r.prob_at(0, 0, 2), 0.0);
}

TEST(NaiveAttention, FullyMaskedRow) {
  attention_problem p = small(1, 3, 1, 1, 1);
  p.causal = false;
  p.q_offset = 10;
  p.window_left = 2;
  p.v_at(0, 0, 0) = 1.0;
  const attention_result r = naive_attention(p);
  EXPECT_EQ(r.o_at(0, 0, 0), 0.0);
  EXPECT_TRUE(std::isinf(r.lse_at(0, 0)) && r.lse_at(0, 0) < 0);
  EXPECT_EQ(r.entropy_at(0, 0), 0.0);
  // With a sink, the row is all sink: O = 0, LSE = sink, H = 0.
  p.sink_logits = {0.75};
  const attention_result rs = naive_attention(p);
  EXPECT_EQ(rs.o_at(0, 0, 0), 0.0);
  EXPECT_NEAR(rs.lse_at(0, 0), 0.75, 1e-15);
  EXPECT_NEAR(rs.entropy_at(0, 0), 0.0, 1e-15);
}

TEST(NaiveAttention, SinkIsAZeroValueKey) {
  // One key with logit 0 and value 1, sink logit 0: O = 1/2, LSE = log 2, H = log 2.
  attention_problem p = small(1, 1, 1, 1, 1);
  p.v_at(0, 0, 0) = 1.0;
  p.sink_logits = {0.0};
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), 0.5, 1e-15);
  EXPECT_NEAR(r.lse_at(0, 0), std::log(2.0), 1e-15);
  EXPECT_NEAR(r.entropy_at(0, 0), std::log(2.0), 1e-15);
  EXPECT_NEAR(r.sink_probs[0], 0.5, 1e-15);
  EXPECT_NEAR(r.prob_at(0, 0, 0), 0.5, 1e-15);
}

TEST(NaiveAttention, AlibiThenSoftcap) {
  // q.k = 0; ALiBi slope 2 at distance 1 gives -2; softcap 1 gives tanh(-2).
  attention_problem p = small(1, 2, 1, 1, 1);
  p.alibi_slopes = {2.0};
  p.softcap = 1.0;
  p.v_at(0, 0, 0) = 1.0;  // key 0 at distance 1, key 1 at distance 0 (logit 0)
  const attention_result r = naive_attention(p);
  const double e = std::exp(std::tanh(-2.0));
  EXPECT_NEAR(r.o_at(0, 0, 0), e / (e + 1.0), 1e-15);
}

TEST(NaiveAttention, GqaSharesKvHeads) {
  // hq = 4, hkv = 2: heads 0, 1 read kv head 0; heads 2, 3 read kv head 1.
  attention_problem p = small(1, 1, 4, 2, 1);
  p.v_at(0, 0, 0) = 3.0;
  p.v_at(0, 1, 0) = 5.0;
  const attention_result r = naive_attention(p);
  EXPECT_EQ(r.o_at(0, 0, 0), 3.0);
  EXPECT_EQ(r.o_at(0, 1, 0), 3.0);
  EXPECT_EQ(r.o_at(0, 2, 0), 5.0);
  EXPECT_EQ(r.o_at(0, 3, 0), 5.0);
}

TEST(NaiveAttention, UserHooks) {
  attention_problem p = small(1, 3, 1, 1, 1);
  p.causal = false;
  for (int j = 0; j < 3; ++j) p.v_at(j, 0, 0) = j;
  p.keep = [](int, std::int64_t, std::int64_t k) { return k != 1; };
  p.transform = [](int, std::int64_t, std::int64_t k, double s) {
    return s + (k == 2 ? std::log(3.0) : 0.0);
  };
  const attention_result r = naive_attention(p);
  EXPECT_NEAR(r.o_at(0, 0, 0), 0.75 * 2, 1e-15);
  EXPECT_EQ(r.prob_at(0, 0, 1), 0.0);
}

}  // namespace
}  // namespace heed_ref
