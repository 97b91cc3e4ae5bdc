// The built-in variants of the compiled kernel (dense_params: window_left, softcap, alibi_slopes,
// sink_logits) alone and combined, fully masked rows, and the decode probability tap, for every
// ISA this machine can run, against the float64 reference. Tolerances: see dense_harness.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <iterator>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/core/thread_pool.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::isa;

const std::vector<isa> kIsas(std::begin(heed::platform_isas), std::end(heed::platform_isas));

#define HEED_SKIP_IF_UNAVAILABLE(i)                                                   \
  do {                                                                                \
    if (!heed::isa_available(i)) GTEST_SKIP() << heed::isa_name(i) << " unavailable"; \
  } while (0)

using variant_param = std::tuple<isa, dense_case>;

std::string case_name(const ::testing::TestParamInfo<variant_param>& info) {
  return std::string(heed::isa_name(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
}

dense_case base(const char* name, std::int64_t lq, std::int64_t lk) {
  dense_case c;
  c.name = name;
  c.lq = lq;
  c.lk = lk;
  c.hq = 4;
  c.hkv = 2;
  c.d = 64;
  return c;
}

std::vector<dense_case> variant_cases() {
  std::vector<dense_case> v;
  auto add = [&](dense_case c) {
    c.seed = 2000 + static_cast<std::uint32_t>(v.size()) * 13;
    v.push_back(c);
  };
  dense_case c;

  // Sliding window.
  c = base("window_prefill", 70, 70);
  c.window_left = 7;
  add(c);
  c = base("window_zero_prefill", 40, 40);
  c.window_left = 0;  // the diagonal only
  add(c);
  c = base("window_noncausal_prefill", 40, 60);
  c.causal = false;
  c.window_left = 5;  // the future stays visible
  add(c);
  c = base("window_chunked_prefill_f16_d80", 20, 150);
  c.window_left = 40;
  c.d = 80;
  c.kv = dtype::f16;
  add(c);
  c = base("window_wide_multi_tile_bf16", 150, 150);
  c.window_left = 100;
  c.kv = dtype::bf16;
  add(c);
  c = base("window_decode", 1, 200);
  c.window_left = 10;
  add(c);
  c = base("window_decode_3000", 1, 3000);
  c.window_left = 1500;  // the first partition is entirely masked
  c.kv = dtype::f16;
  add(c);

  // Soft-capping: logits large enough that the cap bends them.
  c = base("softcap_prefill", 50, 50);
  c.softcap = 5.f;
  c.q_amp = 20.f;
  add(c);
  c = base("softcap_prefill_d33", 50, 50);
  c.softcap = 2.f;
  c.q_amp = 10.f;
  c.d = 33;
  add(c);
  c = base("softcap_decode", 1, 300);
  c.softcap = 5.f;
  c.q_amp = 20.f;
  add(c);

  // ALiBi.
  c = base("alibi_prefill", 60, 60);
  c.hq = 8;
  c.alibi = true;
  add(c);
  c = base("alibi_noncausal_prefill", 30, 60);
  c.causal = false;  // negative distances raise future logits
  c.alibi = true;
  add(c);
  c = base("alibi_explicit_offset", 20, 80);
  c.q_offset = 40;
  c.alibi = true;
  add(c);
  c = base("alibi_noncausal_lq_gt_lk", 50, 20);
  c.causal = false;  // default offset Lk - Lq < 0: negative query positions
  c.alibi = true;
  c.window_left = 15;
  add(c);
  c = base("alibi_decode_3000", 1, 3000);
  c.hq = 8;
  c.alibi = true;
  c.kv = dtype::bf16;
  add(c);

  // Learned sinks.
  c = base("sinks_prefill", 50, 50);
  c.sinks = true;
  add(c);
  c = base("sinks_chunked_prefill_d96", 20, 90);
  c.sinks = true;
  c.d = 96;
  add(c);
  c = base("sinks_decode_3000", 1, 3000);
  c.sinks = true;
  c.kv = dtype::f16;
  c.d = 128;
  add(c);
  c = base("sinks_peaky_rows", 40, 40);
  c.sinks = true;
  c.q_amp = 40.f;
  add(c);

  // One per-logit built-in with the row-level ones (the dedicated instantiations when no
  // observer is on).
  c = base("alibi_sinks_ssmax_f16_d64", 70, 70);
  c.alibi = true;
  c.sinks = true;
  c.ssmax = true;
  c.kv = dtype::f16;
  c.d = 64;
  add(c);
  c = base("softcap_sinks_chunked_bf16_d128", 30, 140);
  c.softcap = 4.f;
  c.sinks = true;
  c.q_amp = 15.f;
  c.kv = dtype::bf16;
  c.d = 128;
  add(c);
  c = base("softcap_length_scale_decode_2000", 1, 2000);
  c.softcap = 4.f;
  c.length_scale_base = 64;
  c.q_amp = 15.f;
  add(c);

  // Combinations.
  c = base("all_variants_prefill", 90, 110);
  c.window_left = 30;
  c.softcap = 6.f;
  c.alibi = true;
  c.sinks = true;
  c.q_amp = 10.f;
  add(c);
  c = base("all_variants_prefill_bf16_d100", 45, 45);
  c.window_left = 12;
  c.softcap = 6.f;
  c.alibi = true;
  c.sinks = true;
  c.kv = dtype::bf16;
  c.d = 100;
  add(c);
  c = base("all_variants_decode_3000_f16_d128", 1, 3000);
  c.hq = 8;
  c.window_left = 2200;
  c.softcap = 6.f;
  c.alibi = true;
  c.sinks = true;
  c.kv = dtype::f16;
  c.d = 128;
  add(c);
  c = base("window_sinks_noncausal", 30, 50);
  c.causal = false;
  c.window_left = 4;
  c.sinks = true;
  add(c);
  c = base("softcap_alibi", 40, 40);
  c.softcap = 3.f;
  c.alibi = true;
  c.q_amp = 10.f;
  add(c);

  // Row scaling by the number of visible keys: SSMax and entropy-invariant scaling.
  c = base("ssmax_prefill", 90, 90);
  c.ssmax = true;
  add(c);
  c = base("ssmax_noncausal_chunked_d96", 30, 120);
  c.causal = false;
  c.ssmax = true;
  c.d = 96;
  add(c);
  c = base("ssmax_decode_3000_bf16", 1, 3000);
  c.ssmax = true;
  c.kv = dtype::bf16;
  add(c);
  c = base("length_scale_prefill", 100, 100);
  c.length_scale_base = 16;  // rows past 16 keys sharpen, earlier rows keep the floor
  add(c);
  c = base("length_scale_floor_decode", 1, 700);
  c.length_scale_base = 64;
  c.length_scale_floor = 0.5f;
  add(c);
  // Per-head per-key bias (ZeroTuning on key 0, and a longer table).
  c = base("zero_tuning_prefill", 60, 60);
  c.key_bias_len = 1;
  add(c);
  c = base("key_bias_chunked_f16", 40, 130);
  c.key_bias_len = 70;  // keys past the table get no bias
  c.kv = dtype::f16;
  add(c);
  c = base("key_bias_decode_3000", 1, 3000);
  c.key_bias_len = 2999;
  add(c);
  // Sigmoid attention: unnormalized rows.
  c = base("sigmoid_prefill", 70, 70);
  c.sigmoid = true;
  add(c);
  c = base("sigmoid_window_noncausal_d80", 30, 90);
  c.causal = false;
  c.window_left = 20;
  c.sigmoid = true;
  c.d = 80;
  add(c);
  c = base("sigmoid_decode_3000_f16", 1, 3000);
  c.sigmoid = true;
  c.kv = dtype::f16;
  add(c);
  // Everything that combines at once.
  c = base("modifiers_combined_prefill", 80, 100);
  c.ssmax = true;
  c.key_bias_len = 10;
  c.alibi = true;
  c.softcap = 6.f;
  c.sinks = true;
  c.window_left = 50;
  add(c);

  // Fully masked rows: O = 0, LSE = -inf, entropy 0 (with sinks: the row is all sink).
  c = base("all_rows_masked_prefill", 10, 20);
  c.causal = false;
  c.q_offset = 100;
  c.window_left = 5;
  add(c);
  c = base("some_rows_masked_prefill", 40, 30);
  c.causal = false;
  c.q_offset = 35;  // rows at positions > 39 see no key
  c.window_left = 10;
  add(c);
  c = base("some_rows_masked_prefill_sinks", 40, 30);
  c.causal = false;
  c.q_offset = 35;
  c.window_left = 10;
  c.sinks = true;
  add(c);
  c = base("masked_decode", 1, 50);
  c.causal = false;
  c.q_offset = 200;
  c.window_left = 20;
  add(c);
  c = base("masked_decode_sinks", 1, 50);
  c.causal = false;
  c.q_offset = 200;
  c.window_left = 20;
  c.sinks = true;
  add(c);
  return v;
}

class DenseVariants : public ::testing::TestWithParam<variant_param> {};

void check_against_reference(isa i, const dense_case& c) {
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
  // Sigmoid rows are unnormalized sums of up to Lk terms: the absolute error grows with Lk.
  const double atol = c.sigmoid ? kOutAtol * std::max<double>(1.0, double(c.lk) / 10.0) : kOutAtol;
  expect_matches_reference(s, r, atol);
}

TEST_P(DenseVariants, MatchesReference) {
  const auto& [i, c] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  check_against_reference(i, c);
}

// Without the entropy observer the compiled library picks other instantiations (the dedicated
// ALiBi-only and softcap-only variants, the row-only one); the output and LSE must still match.
TEST_P(DenseVariants, MatchesReferenceWithoutObserver) {
  const auto& [i, c0] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  dense_case c = c0;
  c.want_entropy = false;
  check_against_reference(i, c);
}

INSTANTIATE_TEST_SUITE_P(All, DenseVariants,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::ValuesIn(variant_cases())),
                         case_name);

// A window wider than the sequence masks nothing: the result matches the plain kernel's.
TEST(DenseVariants, WideWindowEqualsNoWindow) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    SCOPED_TRACE(heed::isa_name(i));
    dense_case c = base("wide", 50, 50);
    dense_setup plain(c);
    ASSERT_EQ(run_dense(plain, i, heed::default_executor()), heed::status::ok);
    c.window_left = 1000;
    dense_setup windowed(c);
    ASSERT_EQ(run_dense(windowed, i, heed::default_executor()), heed::status::ok);
    const std::vector<float> a = plain.output(), b = windowed.output();
    for (std::size_t e = 0; e < a.size(); ++e) ASSERT_NEAR(a[e], b[e], 1e-6f) << "element " << e;
  }
}

// ---------------------------------------------------------------------------------------------
// Decode probability tap (dense_params::prob_tap).

std::vector<dense_case> tap_cases() {
  std::vector<dense_case> v;
  auto add = [&](dense_case c) {
    c.seed = 3000 + static_cast<std::uint32_t>(v.size()) * 11;
    v.push_back(c);
  };
  dense_case c;
  add(base("tap_small", 1, 37));
  c = base("tap_one_key", 1, 1);
  add(c);
  c = base("tap_3000_gqa4_f16_d128", 1, 3000);
  c.hq = 8;
  c.d = 128;
  c.kv = dtype::f16;
  add(c);
  c = base("tap_causal_offset", 1, 3000);
  c.q_offset = 2500;  // keys beyond 2500 are invisible
  add(c);
  c = base("tap_noncausal_offset_bf16", 1, 1500);
  c.causal = false;
  c.q_offset = 700;
  c.kv = dtype::bf16;
  add(c);
  c = base("tap_window_sinks_2100", 1, 2100);
  c.window_left = 1000;
  c.sinks = true;
  add(c);
  c = base("tap_alibi_softcap_d80", 1, 1100);
  c.alibi = true;
  c.softcap = 4.f;
  c.q_amp = 10.f;
  c.d = 80;
  add(c);
  c = base("tap_mqa_d7", 1, 1030);
  c.hq = 3;
  c.hkv = 1;
  c.d = 7;
  add(c);
  c = base("tap_ssmax_zero_tuning", 1, 1500);
  c.ssmax = true;
  c.key_bias_len = 1;
  add(c);
  c = base("tap_sigmoid", 1, 1100);  // the tap reports the sigmoid probabilities themselves
  c.sigmoid = true;
  add(c);
  c = base("tap_masked_row", 1, 40);
  c.causal = false;
  c.q_offset = 100;
  c.window_left = 10;
  add(c);
  return v;
}

class DenseProbTap : public ::testing::TestWithParam<variant_param> {};

TEST_P(DenseProbTap, MatchesReferenceProbabilities) {
  const auto& [i, c] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  const std::int64_t q_pos = s.ref.offset();

  prob_recorder serial(c.hq, c.lk);
  serial.attach(s.params);
  ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
  expect_matches_reference(
      s, r, c.sigmoid ? kOutAtol * std::max<double>(1.0, double(c.lk) / 10.0) : kOutAtol);
  expect_probs_match(serial, r, q_pos, c.causal);
  const std::vector<unsigned char> serial_out = s.result_bytes();

  // Two threads: same outputs, same probabilities, bit for bit.
  heed::thread_pool_executor two(2);
  prob_recorder threaded(c.hq, c.lk);
  threaded.attach(s.params);
  s.reset_outputs();
  ASSERT_EQ(run_dense(s, i, two), heed::status::ok);
  EXPECT_TRUE(s.result_bytes() == serial_out);
  expect_probs_match(threaded, r, q_pos, c.causal);
  EXPECT_EQ(threaded.count, serial.count);
  std::int64_t differ = 0;
  for (std::size_t e = 0; e < serial.p.size(); ++e)
    if (serial.count[e] && std::memcmp(&serial.p[e], &threaded.p[e], 4) != 0) ++differ;
  EXPECT_EQ(differ, 0) << "probabilities differ between 1 and 2 threads";
}

INSTANTIATE_TEST_SUITE_P(All, DenseProbTap,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::ValuesIn(tap_cases())),
                         case_name);

// The tap does not change the attention output, and without a tap the workspace may be smaller.
TEST(DenseProbTap, TapDoesNotChangeTheOutput) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    SCOPED_TRACE(heed::isa_name(i));
    dense_case c = base("tap_vs_none", 1, 2100);
    c.sinks = true;
    dense_setup s(c);
    ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
    const std::vector<unsigned char> plain = s.result_bytes();
    const std::size_t plain_ws = heed::dense_workspace_size(s.params, 1, i);
    prob_recorder rec(c.hq, c.lk);
    rec.attach(s.params);
    EXPECT_GE(heed::dense_workspace_size(s.params, 1, i), plain_ws);
    s.reset_outputs();
    ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
    EXPECT_TRUE(s.result_bytes() == plain);
  }
}

// In prefill the tap is not called per row (it is a decode tap); the output stays correct.
TEST(DenseProbTap, PrefillWithTapStillCorrect) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    SCOPED_TRACE(heed::isa_name(i));
    dense_setup s(base("tap_prefill", 20, 30));
    const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
    prob_recorder rec(4, 30);
    rec.attach(s.params);
    ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
    expect_matches_reference(s, r);
    EXPECT_EQ(rec.bad_calls, 0);
  }
}

// Identities of the modifiers, for every ISA, prefill and decode.

// ZeroTuning: a bias of log(gamma) on key 0 equals scaling p_0 by gamma in the plain softmax and
// renormalizing the row (the expected output is built from the plain reference probabilities).
TEST(DenseModifiers, ZeroTuningEqualsScalingKeyZero) {
  const double gamma = 0.3;
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    for (std::int64_t lq : {1, 37}) {
      SCOPED_TRACE(std::string(heed::isa_name(i)) + " lq " + std::to_string(lq));
      dense_setup s(base("zero_tuning_identity", lq, 90));
      const heed_ref::attention_result plain = heed_ref::naive_attention(s.ref);
      std::vector<float> bias(static_cast<std::size_t>(s.c.hq), float(std::log(gamma)));
      s.params.key_bias = bias.data();
      s.params.key_bias_len = 1;
      ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
      const std::int64_t group = s.c.hq / s.c.hkv;
      double worst = 0.0;
      for (std::int64_t h = 0; h < s.c.hq; ++h)
        for (std::int64_t r = 0; r < lq; ++r) {
          const double p0 = plain.prob_at(h, r, 0);
          const double z = 1.0 - p0 + gamma * p0;
          for (std::int64_t x = 0; x < s.c.d; ++x) {
            double want = 0.0;
            for (std::int64_t j = 0; j < s.c.lk; ++j)
              want +=
                  plain.prob_at(h, r, j) * (j == 0 ? gamma : 1.0) / z * s.ref.v_at(j, h / group, x);
            worst = std::max(worst, std::fabs(double(s.o.load_f32(r, h, x)) - want));
          }
        }
      EXPECT_LT(worst, 2e-5);
    }
  }
}

// A learned sink with logit -inf adds nothing: the result equals plain attention (the reference,
// and bit for bit the same built-in variant path without sinks), entropy included (no NaN from
// 0 * -inf).
TEST(DenseModifiers, MinusInfinitySinkEqualsPlainAttention) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    for (std::int64_t lq : {1, 45}) {
      SCOPED_TRACE(std::string(heed::isa_name(i)) + " lq " + std::to_string(lq));
      dense_case c = base("sink_minus_inf", lq, 2100);
      c.window_left = 1 << 30;  // no effect, but takes the built-in variant path like sinks do
      dense_setup s(c);
      ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
      expect_matches_reference(s, heed_ref::naive_attention(s.ref));
      const std::vector<unsigned char> plain = s.result_bytes();
      std::vector<float> sinks(static_cast<std::size_t>(c.hq),
                               -std::numeric_limits<float>::infinity());
      s.params.sink_logits = sinks.data();
      s.reset_outputs();
      ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
      EXPECT_TRUE(s.result_bytes() == plain);
      for (float e : s.entropy) EXPECT_FALSE(std::isnan(e));
    }
  }
}

// Bad modifier parameters return a status.
TEST(DenseModifiers, BadParametersAreRejected) {
  dense_setup s(base("bad_modifiers", 8, 8));
  const std::vector<float> bias(64, 0.f);
  heed::dense_params p = s.params;
  p.length_scale_base = 1;  // log(1) = 0
  EXPECT_EQ(heed::validate(p), heed::status::invalid_argument);
  p = s.params;
  p.length_scale_base = -5;
  EXPECT_EQ(heed::validate(p), heed::status::invalid_argument);
  p = s.params;
  p.key_bias_len = 4;  // no table
  EXPECT_EQ(heed::validate(p), heed::status::null_pointer);
  p = s.params;
  p.key_bias = bias.data();  // a table of length 0
  EXPECT_EQ(heed::validate(p), heed::status::invalid_argument);
  p = s.params;
  p.sigmoid = true;
  p.sink_logits = bias.data();  // sigmoid rows have no softmax to add a sink to
  EXPECT_EQ(heed::validate(p), heed::status::invalid_argument);
  p = s.params;
  p.length_scale_floor = std::numeric_limits<float>::quiet_NaN();
  p.length_scale_base = 8;
  EXPECT_EQ(heed::validate(p), heed::status::invalid_argument);
}

}  // namespace
}  // namespace heed_test
