// The analysis slow path (materialize_attention_t) against the float64 reference probabilities,
// and against the kernel's decode probability tap.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/variants/builtin.hpp"
#include "heed/scoring/materialize.hpp"

namespace {

struct problem {
  std::int64_t lq, lk, hq, hkv, d;
  std::vector<float> q, k, v, o;
  heed::dense_params p;
  problem(std::int64_t lq_, std::int64_t lk_, std::int64_t hq_, std::int64_t hkv_, std::int64_t d_)
      : lq(lq_), lk(lk_), hq(hq_), hkv(hkv_), d(d_) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    q.resize(std::size_t(lq * hq * d));
    k.resize(std::size_t(lk * hkv * d));
    v.resize(k.size());
    o.resize(q.size());
    for (auto* vec : {&q, &k, &v})
      for (auto& x : *vec) x = nd(rng);
    p.q = heed::make_view(q.data(), lq, hq, d);
    p.k = heed::make_view(k.data(), lk, hkv, d);
    p.v = heed::make_view(v.data(), lk, hkv, d);
    p.o = heed::make_mutable_view(o.data(), lq, hq, d);
  }
  // float64 probabilities of (row, head), with the built-in window and sinks.
  std::vector<double> ref_probs(std::int64_t row, int h, std::int64_t window,
                                const float* sinks) const {
    const std::int64_t pos = p.offset() + row, kvh = h / (hq / hkv);
    std::vector<double> s(std::size_t(lk), -INFINITY);
    double m = sinks ? double(sinks[h]) : -INFINITY;
    for (std::int64_t j = 0; j < lk; ++j) {
      if (p.causal && j > pos) continue;
      if (window >= 0 && pos - j > window) continue;
      double a = 0;
      for (std::int64_t c = 0; c < d; ++c)
        a += double(q[std::size_t((row * hq + h) * d + c)]) *
             k[std::size_t((j * hkv + kvh) * d + c)];
      s[std::size_t(j)] = a / std::sqrt(double(d));
      m = std::max(m, s[std::size_t(j)]);
    }
    double den = sinks ? std::exp(double(sinks[h]) - m) : 0.0;
    for (double x : s) den += std::isinf(x) ? 0.0 : std::exp(x - m);
    for (double& x : s) x = std::isinf(x) ? 0.0 : std::exp(x - m) / den;
    return s;
  }
};

TEST(Materialize, ProbsMatchReferenceWithWindowAndSinks) {
  problem pr(40, 100, 4, 2, 24);
  std::vector<float> sinks = {0.5f, -1.f, 2.f, 0.f};
  pr.p.window_left = 30;
  pr.p.sink_logits = sinks.data();
  const heed::builtin_variant var(pr.p);
  const int heads[] = {0, 3};
  const std::int64_t rows[] = {0, 17, 39};
  std::vector<float> out(2 * 3 * 100);
  ASSERT_EQ(heed::materialize_attention_t(pr.p, var, heads, 2, rows, 3,
                                          heed::attention_values::probs, out.data()),
            heed::status::ok);
  for (int hi = 0; hi < 2; ++hi)
    for (int ri = 0; ri < 3; ++ri) {
      const auto ref = pr.ref_probs(rows[ri], heads[hi], 30, sinks.data());
      for (std::int64_t j = 0; j < 100; ++j)
        EXPECT_NEAR(out[std::size_t((hi * 3 + ri) * 100 + j)], ref[std::size_t(j)], 2e-6)
            << "head " << heads[hi] << " row " << rows[ri] << " key " << j;
    }
}

TEST(Materialize, LogitsAreMinusInfinityWhereMasked) {
  problem pr(8, 8, 2, 2, 16);
  const int heads[] = {1};
  const std::int64_t rows[] = {3};
  std::vector<float> out(8);
  ASSERT_EQ(heed::materialize_attention_t(pr.p, heed::no_variant{}, heads, 1, rows, 1,
                                          heed::attention_values::logits, out.data()),
            heed::status::ok);
  for (int j = 0; j < 8; ++j)
    EXPECT_EQ(std::isinf(out[std::size_t(j)]) && out[std::size_t(j)]<0, j> 3) << j;
}

TEST(Materialize, AgreesWithDecodeProbabilityTap) {
  problem pr(1, 2500, 8, 2, 64);  // several split-KV partitions
  struct tap_state {
    std::vector<float> probs;
    std::int64_t lk;
  } st{std::vector<float>(std::size_t(8 * 2500), -1.f), 2500};
  pr.p.prob_tap = [](void* u, int h, std::int64_t k0, const float* p, std::int64_t n) {
    auto* s = static_cast<tap_state*>(u);
    for (std::int64_t j = 0; j < n; ++j) s->probs[std::size_t(h * s->lk + k0 + j)] = p[j];
  };
  pr.p.prob_tap_user = &st;
  std::vector<char> ws(heed::dense_workspace_size(pr.p, 1));
  ASSERT_EQ(heed::dense_attention(pr.p, {ws.data(), ws.size()}), heed::status::ok);
  const int heads[] = {0, 1, 2, 3, 4, 5, 6, 7};
  const std::int64_t rows[] = {0};
  std::vector<float> out(8 * 2500);
  ASSERT_EQ(heed::materialize_attention_t(pr.p, heed::no_variant{}, heads, 8, rows, 1,
                                          heed::attention_values::probs, out.data()),
            heed::status::ok);
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(st.probs[i], out[i], 1e-6f) << i;
}

TEST(Materialize, RejectsBadSelections) {
  problem pr(4, 4, 2, 1, 8);
  const int bad_head[] = {2};
  const std::int64_t row[] = {0}, bad_row[] = {4};
  const int head[] = {0};
  std::vector<float> out(4);
  EXPECT_EQ(heed::materialize_attention_t(pr.p, heed::no_variant{}, bad_head, 1, row, 1,
                                          heed::attention_values::probs, out.data()),
            heed::status::invalid_argument);
  EXPECT_EQ(heed::materialize_attention_t(pr.p, heed::no_variant{}, head, 1, bad_row, 1,
                                          heed::attention_values::probs, out.data()),
            heed::status::invalid_argument);
  EXPECT_EQ(heed::materialize_attention_t(pr.p, heed::no_variant{}, head, 1, row, 1,
                                          heed::attention_values::probs, nullptr),
            heed::status::null_pointer);
  EXPECT_EQ(heed::materialize_attention_t(pr.p, heed::no_variant{}, head, 1, row, 1,
                                          heed::attention_values::probs, out.data(), 2),
            heed::status::invalid_stride);
}

}  // namespace
