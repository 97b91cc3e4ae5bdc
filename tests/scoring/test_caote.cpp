// CAOTE re-scoring against the float64 reference (tests/reference/naive_scores.hpp).
// Tolerance: 1e-5 relative (an f32 distance over d channels times p / (1 - p)).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "heed/scoring/caote.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::head_reduce;
using heed::status;

struct caote_case {
  std::int64_t lk, hq, hkv, d;
  dtype t;
  head_reduce reduce;
};

void PrintTo(const caote_case& c, std::ostream* os) {
  *os << "lk " << c.lk << " hq " << c.hq << " hkv " << c.hkv << " d " << c.d << " "
      << heed::dtype_name(c.t) << (c.reduce == head_reduce::max ? " max" : " mean");
}

// Softmax rows of random logits (sharp enough for a few large p), one row one-hot (p = 1 and 0).
std::vector<float> make_probs(std::int64_t hq, std::int64_t lk, std::int64_t stride) {
  std::mt19937 rng(99);
  std::normal_distribution<double> nd(0.0, 3.0);
  std::vector<float> p(std::size_t(hq * stride), 0.f);
  for (std::int64_t h = 0; h < hq; ++h) {
    heed_ref::vec z(static_cast<std::size_t>(lk));
    for (auto& x : z) x = nd(rng);
    if (h == 1) {
      z.assign(z.size(), -std::numeric_limits<double>::infinity());
      z[0] = 0.0;
    }
    const auto s = heed_ref::softmax(z);
    for (std::int64_t j = 0; j < lk; ++j) p[std::size_t(h * stride + j)] = float(s[std::size_t(j)]);
  }
  return p;
}

class ScoreCaote : public ::testing::TestWithParam<caote_case> {};

TEST_P(ScoreCaote, MatchesReference) {
  const caote_case c = GetParam();
  heed_ref::stored_kv v(c.lk, c.hkv, c.d, c.t, 31, c.lk % 2 == 0, 2);
  heed_ref::stored_q o(1, c.hq, c.d, 32, 0.0, 0.5);
  const std::int64_t pstride = c.lk + 1;
  const auto p = make_probs(c.hq, c.lk, pstride);
  heed_ref::vec pref(static_cast<std::size_t>(c.hq * c.lk));
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t j = 0; j < c.lk; ++j)
      pref[std::size_t(h * c.lk + j)] = p[std::size_t(h * pstride + j)];
  std::vector<float> out(std::size_t(c.hkv * c.lk));
  ASSERT_EQ(heed::caote_scores(p.data(), pstride, o.view, v.view, c.reduce, out.data()),
            status::ok);
  const auto ref = heed_ref::caote(pref, o.ref, c.hq, v.ref, c.reduce == head_reduce::max);
  for (std::size_t i = 0; i < out.size(); ++i)
    ASSERT_NEAR(out[i], ref[i], 1e-5 * std::fabs(ref[i]) + 1e-12) << "at " << i;

  // Re-scoring arbitrary KV-head scores, some of them non-finite, in place.
  std::vector<float> sc(std::size_t(c.hkv * c.lk));
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (auto& x : sc) x = nd(rng);
  if (c.lk > 3) {
    sc[0] = std::numeric_limits<float>::infinity();
    sc[1] = -std::numeric_limits<float>::infinity();
    sc[2] = std::numeric_limits<float>::quiet_NaN();
  }
  const heed_ref::vec scref(sc.begin(), sc.end());
  std::vector<char> ws(heed::caote_rescore_workspace_size(c.lk, c.d));
  ASSERT_EQ(heed::caote_rescore_scores(sc.data(), 0, o.view, v.view, sc.data(), 0,
                                       {ws.data(), ws.size()}),
            status::ok);
  const auto ref2 = heed_ref::caote_rescore(scref, o.ref, c.hq, v.ref);
  for (std::size_t i = 0; i < sc.size(); ++i) {
    if (std::isnan(ref2[i])) {
      ASSERT_TRUE(std::isnan(sc[i])) << "at " << i;
    } else if (std::isinf(ref2[i])) {
      ASSERT_EQ(sc[i], std::numeric_limits<float>::infinity()) << "at " << i;
    } else {
      ASSERT_NEAR(sc[i], ref2[i], 1e-5 * std::fabs(ref2[i]) + 1e-12) << "at " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ScoreCaote,
    ::testing::Values(caote_case{1, 4, 4, 64, dtype::f32, head_reduce::mean},
                      caote_case{5, 4, 4, 40, dtype::f16, head_reduce::max},
                      caote_case{100, 8, 2, 128, dtype::bf16, head_reduce::mean},
                      caote_case{1037, 32, 8, 64, dtype::f16, head_reduce::max},
                      caote_case{1037, 8, 2, 40, dtype::f32, head_reduce::mean},
                      caote_case{4100, 4, 4, 128, dtype::bf16, head_reduce::mean},
                      caote_case{100, 8, 2, 128, dtype::q8, head_reduce::mean},
                      caote_case{1037, 8, 2, 40, dtype::q4, head_reduce::max}));

TEST(ScoreCaoteUnit, HandComputed) {
  // One head, d = 1: v = (0, 2, 4), p = (0.5, 0.25, 0.25), o = sum p v = 1.5.
  std::vector<float> v = {0, 2, 4}, o = {1.5f}, p = {0.5f, 0.25f, 0.25f}, out(3);
  ASSERT_EQ(heed::caote_scores(p.data(), 0, heed::make_view(o.data(), 1, 1, 1),
                               heed::make_view(v.data(), 3, 1, 1), head_reduce::mean, out.data()),
            status::ok);
  EXPECT_NEAR(out[0], 1.0 * 1.5, 1e-6);
  EXPECT_NEAR(out[1], 1.0 / 3.0 * 0.5, 1e-6);
  EXPECT_NEAR(out[2], 1.0 / 3.0 * 2.5, 1e-6);
  // p = 1 uses the finite guard, p > 1 too; the product is clamped to the largest float.
  p = {1.f, 0.f, 2.f};
  v = {1.5f, 1.5f, 1e20f};
  ASSERT_EQ(heed::caote_scores(p.data(), 0, heed::make_view(o.data(), 1, 1, 1),
                               heed::make_view(v.data(), 3, 1, 1), head_reduce::max, out.data()),
            status::ok);
  EXPECT_EQ(out[0], 0.f);  // p = 1 but o == v: nothing moves
  EXPECT_EQ(out[1], 0.f);
  EXPECT_EQ(out[2], std::numeric_limits<float>::max());
}

TEST(ScoreCaoteErrors, BadInputs) {
  heed_ref::stored_kv v(10, 2, 16, dtype::f16, 1);
  heed_ref::stored_q o(1, 4, 16, 2), o2(2, 4, 16, 2), o3(1, 3, 16, 2), o8(1, 4, 8, 2);
  std::vector<float> p(40, 0.1f), out(20);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, o.view, v.view, head_reduce::mean, out.data()),
            status::ok);
  EXPECT_EQ(heed::caote_scores(nullptr, 0, o.view, v.view, head_reduce::mean, out.data()),
            status::null_pointer);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, o.view, v.view, head_reduce::mean, nullptr),
            status::null_pointer);
  EXPECT_EQ(heed::caote_scores(p.data(), 4, o.view, v.view, head_reduce::mean, out.data()),
            status::invalid_stride);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, o.view, v.view, head_reduce::mean, out.data(), 3),
            status::invalid_stride);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, o2.view, v.view, head_reduce::mean, out.data()),
            status::shape_mismatch);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, o3.view, v.view, head_reduce::mean, out.data()),
            status::shape_mismatch);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, o8.view, v.view, head_reduce::mean, out.data()),
            status::shape_mismatch);
  EXPECT_EQ(heed::caote_scores(p.data(), 0, v.view, v.view, head_reduce::mean, out.data()),
            status::unsupported_dtype);
  EXPECT_EQ(
      heed::caote_scores(p.data(), 0, o.view, v.view, static_cast<head_reduce>(9), out.data()),
      status::invalid_argument);
  std::vector<char> ws(heed::caote_rescore_workspace_size(10, 16));
  EXPECT_EQ(heed::caote_rescore_scores(out.data(), 0, o.view, v.view, out.data(), 0,
                                       {ws.data(), ws.size() - 1}),
            status::workspace_too_small);
  EXPECT_EQ(heed::caote_rescore_scores(out.data(), 0, o.view, v.view, out.data(), 0,
                                       {nullptr, ws.size()}),
            status::null_pointer);
  EXPECT_EQ(
      heed::caote_rescore_scores(nullptr, 0, o.view, v.view, out.data(), 0, {ws.data(), ws.size()}),
      status::null_pointer);
  EXPECT_EQ(heed::caote_rescore_scores(out.data(), 0, o3.view, v.view, out.data(), 0,
                                       {ws.data(), ws.size()}),
            status::shape_mismatch);
}

}  // namespace
