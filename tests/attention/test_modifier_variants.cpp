// The header-only modifier variants a user composes at compile time (scalable_softmax,
// entropy_invariant_scale, key_bias, zero_tuning, sigmoid_attention) against the float64
// reference, through the slow materializing path (heed/scoring/materialize.hpp), which runs the
// same hooks as the kernels. The kernels' use of the same hooks is covered for every ISA by the
// built-in variant in test_dense_variants.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/variants/chain.hpp"
#include "heed/attention/variants/key_bias.hpp"
#include "heed/attention/variants/length_scaling.hpp"
#include "heed/attention/variants/sigmoid_attention.hpp"
#include "heed/attention/variants/sliding_window.hpp"
#include "heed/attention/variants/softcap.hpp"
#include "heed/scoring/materialize.hpp"

namespace heed_test {
namespace {

struct probe {
  std::vector<int> heads;
  std::vector<std::int64_t> rows;
};

template <class Variant>
void expect_probs(const dense_setup& s, const Variant& var, const heed_ref::attention_result& r) {
  probe pr;
  for (int h = 0; h < s.c.hq; ++h) pr.heads.push_back(h);
  for (std::int64_t i = 0; i < s.c.lq; i += 3) pr.rows.push_back(i);
  std::vector<float> out(pr.heads.size() * pr.rows.size() * std::size_t(s.c.lk));
  ASSERT_EQ(heed::materialize_attention_t(s.params, var, pr.heads.data(), int(pr.heads.size()),
                                          pr.rows.data(), int(pr.rows.size()),
                                          heed::attention_values::probs, out.data()),
            heed::status::ok);
  double worst = 0.0;
  std::size_t n = 0;
  for (std::size_t hi = 0; hi < pr.heads.size(); ++hi)
    for (std::size_t ri = 0; ri < pr.rows.size(); ++ri)
      for (std::int64_t j = 0; j < s.c.lk; ++j) {
        const double got = out[(hi * pr.rows.size() + ri) * std::size_t(s.c.lk) + std::size_t(j)];
        const double want = r.prob_at(pr.heads[hi], pr.rows[ri], j);
        worst = std::max(worst, std::fabs(got - want) / (1e-6 + 1e-4 * std::fabs(want)));
        ++n;
      }
  EXPECT_GT(n, 0u);
  EXPECT_LE(worst, 1.0) << "worst error / tolerance";
}

dense_case shape(const char* name, bool causal) {
  dense_case c;
  c.name = name;
  c.lq = 40;
  c.lk = 90;
  c.hq = 4;
  c.hkv = 2;
  c.d = 48;
  c.causal = causal;
  c.want_entropy = false;
  return c;
}

TEST(ModifierVariants, ScalableSoftmax) {
  for (bool causal : {true, false}) {
    dense_setup s(shape("ssmax", causal));
    const std::vector<float> a = {0.3f, 0.45f, 0.6f, 0.25f};
    s.ref.ssmax.assign(a.begin(), a.end());
    expect_probs(s, heed::scalable_softmax(a.data()), heed_ref::naive_attention(s.ref));
  }
}

TEST(ModifierVariants, EntropyInvariantScale) {
  for (bool causal : {true, false}) {
    dense_setup s(shape("length_scale", causal));
    s.ref.length_scale_base = 32;
    s.ref.length_scale_floor = 0.8;
    expect_probs(s, heed::entropy_invariant_scale(32, 0.8f), heed_ref::naive_attention(s.ref));
  }
}

TEST(ModifierVariants, KeyBiasAndZeroTuning) {
  dense_setup s(shape("key_bias", true));
  std::vector<float> table;
  for (int h = 0; h < 4; ++h)
    for (int j = 0; j < 25; ++j) table.push_back(0.1f * float((h * 7 + j * 3) % 19) - 0.9f);
  s.ref.key_bias.assign(table.begin(), table.end());
  s.ref.key_bias_len = 25;
  expect_probs(s, heed::key_bias(table.data(), 25), heed_ref::naive_attention(s.ref));

  dense_setup z(shape("zero_tuning", true));
  const std::vector<float> zt = {std::log(0.2f), std::log(3.f), 0.f, std::log(0.5f)};
  z.ref.key_bias.assign(zt.begin(), zt.end());
  z.ref.key_bias_len = 1;
  expect_probs(z, heed::zero_tuning(zt.data()), heed_ref::naive_attention(z.ref));
}

TEST(ModifierVariants, SigmoidAttention) {
  for (bool causal : {true, false}) {
    dense_setup s(shape("sigmoid", causal));
    const std::vector<float> b = {-1.f, 0.f, -0.5f, 0.7f};
    s.ref.sigmoid = true;
    s.ref.sigmoid_bias.assign(b.begin(), b.end());
    expect_probs(s, heed::sigmoid_attention(b.data()), heed_ref::naive_attention(s.ref));
  }
}

// chain<> composes in order: SSMax row scale, ZeroTuning bias, soft-capping and a window.
TEST(ModifierVariants, ChainComposesInOrder) {
  dense_setup s(shape("chain", true));
  const std::vector<float> a = {0.3f, 0.45f, 0.6f, 0.25f};
  const std::vector<float> zt = {std::log(0.2f), std::log(3.f), 0.f, std::log(0.5f)};
  s.ref.ssmax.assign(a.begin(), a.end());
  s.ref.key_bias.assign(zt.begin(), zt.end());
  s.ref.key_bias_len = 1;
  s.ref.softcap = 2.0;
  s.ref.window_left = 20;
  const heed::chain<heed::scalable_softmax, heed::zero_tuning, heed::softcap, heed::sliding_window>
      var{heed::scalable_softmax(a.data()), heed::zero_tuning(zt.data()), heed::softcap(2.f),
          heed::sliding_window(20)};
  static_assert(decltype(var)::has_query_scale && decltype(var)::has_logits_transform &&
                    decltype(var)::has_logits_mask && decltype(var)::has_key_range &&
                    !decltype(var)::has_row_finalize,
                "chain flags are the union of its members' flags");
  expect_probs(s, var, heed_ref::naive_attention(s.ref));
}

}  // namespace
}  // namespace heed_test
