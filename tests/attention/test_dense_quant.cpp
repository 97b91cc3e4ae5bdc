// Dense decode and prefill on quantized K/V (q8, q4; heed/quant/format.hpp) against the float64
// reference built from the dequantized values, for every ISA this machine runs: head dims
// (specialized and generic), GQA ratios, both layouts, byte-padded (unaligned) rows, variants,
// observers (LSE, entropy, the probability tap), paged rows, 1 and 2 threads bitwise; and the
// inputs the kernels refuse. Tolerances: dense_harness.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/modifiers/identity_mix.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/simd/integer_dot.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::isa;
using heed::layout;
using heed::status;

const std::vector<isa> kIsas(std::begin(heed::platform_isas), std::end(heed::platform_isas));

#define HEED_SKIP_IF_UNAVAILABLE(i)                                                   \
  do {                                                                                \
    if (!heed::isa_available(i)) GTEST_SKIP() << heed::isa_name(i) << " unavailable"; \
  } while (0)

dense_case decode_case(const std::string& name, std::int64_t lk, std::int64_t hq, std::int64_t hkv,
                       std::int64_t d, std::uint32_t seed) {
  dense_case c;
  c.name = name;
  c.lq = 1;
  c.lk = lk;
  c.hq = hq;
  c.hkv = hkv;
  c.d = d;
  c.seed = seed;
  return c;
}

// Shapes and variants; each runs with both formats (the case's kv is set by the test).
std::vector<dense_case> quant_cases() {
  std::vector<dense_case> v;
  std::uint32_t seed = 9100;
  for (layout l : {layout::head_seq_dim, layout::seq_head_dim}) {
    const std::string lt = l == layout::head_seq_dim ? "_head_seq" : "_seq_head";
    auto add = [&](dense_case c) {
      c.name += lt;
      c.kv_layout = l;
      v.push_back(c);
    };
    add(decode_case("d128_gqa4_3000", 3000, 8, 2, 128, ++seed));
    add(decode_case("d64_gqa1_700", 700, 3, 3, 64, ++seed));
    add(decode_case("d96_gqa8_1100", 1100, 8, 1, 96, ++seed));
    add(decode_case("d256_gqa2_300", 300, 4, 2, 256, ++seed));
    add(decode_case("d128_gqa16_200", 200, 16, 1, 128, ++seed));
    add(decode_case("d128_gqa3_130", 130, 6, 2, 128, ++seed));  // G does not divide a vector
    add(decode_case("d32_generic_gqa4_1500", 1500, 8, 2, 32, ++seed));
    add(decode_case("d160_generic_gqa2_400", 400, 4, 2, 160, ++seed));
    add(decode_case("d128_one_key", 1, 4, 2, 128, ++seed));
    add(decode_case("d128_63_keys", 63, 4, 2, 128, ++seed));
    dense_case c = decode_case("d128_padded_5_bytes", 1200, 8, 2, 128, ++seed);
    c.pad = 5;  // every row at an odd byte offset
    add(c);
    c = decode_case("d160_generic_padded_3_bytes", 300, 4, 2, 160, ++seed);
    c.pad = 3;
    add(c);
    c = decode_case("variants_window_alibi_sinks_softcap", 2100, 8, 2, 128, ++seed);
    c.window_left = 1500;
    c.alibi = true;
    c.sinks = true;
    c.softcap = 6.f;
    add(c);
    c = decode_case("ssmax_key_bias", 900, 4, 1, 64, ++seed);
    c.ssmax = true;
    c.key_bias_len = 50;
    add(c);
    c = decode_case("sigmoid", 300, 4, 2, 128, ++seed);
    c.sigmoid = true;
    add(c);
    c = decode_case("causal_offset_600", 1000, 4, 2, 128, ++seed);
    c.q_offset = 600;
    add(c);
    c = decode_case("noncausal", 1000, 4, 2, 128, ++seed);
    c.causal = false;
    c.q_offset = 300;
    add(c);
    c = decode_case("large_logits", 500, 4, 2, 128, ++seed);
    c.q_amp = 40.f;
    add(c);
    // Groups other than 32 (the generic path, whatever the head dim, with the group at run
    // time): 8 (stories260K's head dim), 16, 64, 128 (a scale per row); vectors that span
    // several groups are loaded value by value.
    c = decode_case("d128_gqa4_500_group128", 500, 8, 2, 128, ++seed);
    c.group = 128;
    add(c);
    for (int g : {8, 16, 64}) {
      const std::string gs = "_group" + std::to_string(g);
      c = decode_case("d128_gqa4_700" + gs, 700, 8, 2, 128, ++seed);
      c.group = g;
      add(c);
      c = decode_case("prefill_d64_gqa2_200" + gs, 200, 4, 2, 64, ++seed);
      c.lq = 120;
      c.group = g;
      add(c);
    }
    c = decode_case("d8_group8_gqa2_900", 900, 8, 4, 8, ++seed);  // stories260K's shape
    c.group = 8;
    add(c);
    c = decode_case("prefill_d8_group8_gqa2_300", 300, 8, 4, 8, ++seed);
    c.lq = 300;
    c.group = 8;
    c.pad = 1;
    add(c);
    // Prefill: the tile dequantizes each K/V chunk into f32 rows.
    c = decode_case("prefill_d128_gqa4_square", 300, 8, 2, 128, ++seed);
    c.lq = 300;
    add(c);
    c = decode_case("prefill_d64_gqa1_chunk", 700, 3, 3, 64, ++seed);
    c.lq = 90;
    add(c);
    c = decode_case("prefill_d256_noncausal", 200, 4, 2, 256, ++seed);
    c.lq = 70;
    c.causal = false;
    add(c);
    c = decode_case("prefill_generic_d160_padded_3_bytes", 260, 4, 1, 160, ++seed);
    c.lq = 100;
    c.pad = 3;
    add(c);
    c = decode_case("prefill_variants_window_alibi_sinks_softcap", 400, 8, 2, 96, ++seed);
    c.lq = 400;
    c.window_left = 150;
    c.alibi = true;
    c.sinks = true;
    c.softcap = 6.f;
    add(c);
  }
  return v;
}

using quant_param = std::tuple<isa, dtype, dense_case>;

std::string quant_name(const ::testing::TestParamInfo<quant_param>& info) {
  return std::string(heed::isa_name(std::get<0>(info.param))) + "_" +
         heed::dtype_name(std::get<1>(info.param)) + "_" + std::get<2>(info.param).name;
}

class DenseQuant : public ::testing::TestWithParam<quant_param> {};

TEST_P(DenseQuant, MatchesReferenceOnDequantizedValues) {
  const auto& [i, t, cs] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  dense_case c = cs;
  c.kv = t;
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  ASSERT_EQ(run_dense(s, i, heed::default_executor()), status::ok);
  expect_matches_reference(
      s, r, c.sigmoid ? kOutAtol * std::max<double>(1.0, double(c.lk) / 10.0) : kOutAtol);
}

INSTANTIATE_TEST_SUITE_P(All, DenseQuant,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::Values(dtype::q8, dtype::q4),
                                            ::testing::ValuesIn(quant_cases())),
                         quant_name);

// Decode over q8 keys on the AVX-512 kernels takes the integer path (vpdpbusd) where the CPU has
// AVX-512 VNNI and heed::set_integer_dot allows it, the f32 path otherwise: both against the
// reference (which reads the quantized query either way), and where the CPU has VNNI the two
// paths differ (in f32 rounding), so the integer one did run.
class IntegerDotSwitch {
 public:
  explicit IntegerDotSwitch(bool on) : old_(heed::set_integer_dot(on)) {}
  ~IntegerDotSwitch() { heed::set_integer_dot(old_); }

 private:
  bool old_;
};

class DenseQuantIntegerDot : public ::testing::TestWithParam<dense_case> {};

TEST_P(DenseQuantIntegerDot, IntegerAndFloatPathsMatchTheReference) {
  HEED_SKIP_IF_UNAVAILABLE(isa::avx512);
  dense_case c = GetParam();
  c.kv = dtype::q8;
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  std::vector<unsigned char> bytes[2];
  for (bool on : {false, true}) {
    SCOPED_TRACE(on ? "integer dot allowed" : "integer dot off");
    const IntegerDotSwitch sw(on);
    s.reset_outputs();
    ASSERT_EQ(run_dense(s, isa::avx512, heed::default_executor()), status::ok);
    expect_matches_reference(
        s, r, c.sigmoid ? kOutAtol * std::max<double>(1.0, double(c.lk) / 10.0) : kOutAtol);
    bytes[on] = s.result_bytes();
  }
  // The integer path serves the specialized head dims of whole 64-byte pieces (128 in every
  // build) in groups of 32; nothing else changes with the switch.
  const bool group32 = c.group == 0 || c.group == 32;
  const bool vnni = heed::cpu_has_avx512_vnni();
  if (vnni && group32 && c.d == 128 && c.lk > 100) {
    EXPECT_NE(bytes[0], bytes[1]) << "the integer path did not run";
  } else if (!vnni || !group32 || c.d % 64 != 0) {
    EXPECT_EQ(bytes[0], bytes[1]) << "a path without integer logits changed";
  }
}

std::vector<dense_case> decode_cases() {
  std::vector<dense_case> v;
  for (const dense_case& c : quant_cases())
    if (c.lq == 1) v.push_back(c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, DenseQuantIntegerDot, ::testing::ValuesIn(decode_cases()),
                         [](const ::testing::TestParamInfo<dense_case>& info) {
                           return info.param.name;
                         });

// Decode over q8 keys refuses a query row q8 cannot hold (a non-finite value, |q| beyond
// 127 * 65504) with invalid_argument, before it writes anything.
TEST(DenseQuantQuery, UnquantizableQueryRowIsRefused) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    for (float bad : {std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN(), 2e7f, -9e6f}) {
      SCOPED_TRACE(std::string(heed::isa_name(i)) + " " + std::to_string(bad));
      dense_case c = decode_case("bad_query", 300, 4, 2, 128, 9601);
      c.kv = dtype::q8;
      dense_setup s(c);
      s.q.store(0, 1, 5, bad);
      EXPECT_EQ(heed::dense_can_implement(s.params), status::invalid_argument);
      EXPECT_EQ(run_dense(s, i, heed::default_executor()), status::invalid_argument);
      EXPECT_EQ(s.output(), std::vector<float>(s.output().size(), kOutSentinel));
    }
  }
  // The largest magnitude q8 holds runs; q4 keys and prefill rows keep their f32 queries.
  dense_case c = decode_case("edge_query", 300, 4, 2, 128, 9602);
  c.kv = dtype::q8;
  dense_setup s(c);
  s.q.store(0, 1, 5, 8e6f);
  EXPECT_EQ(run_dense(s, isa::automatic, heed::default_executor()), status::ok);
  c.kv = dtype::q4;
  dense_setup s4(c);
  s4.q.store(0, 1, 5, 2e7f);
  EXPECT_EQ(run_dense(s4, isa::automatic, heed::default_executor()), status::ok);
}

// 1 and 2 threads, bitwise; the probability tap on the same runs (decode).
std::vector<dense_case> quant_thread_cases() {
  std::vector<dense_case> v;
  v.push_back(decode_case("gqa4_3000_head_seq", 3000, 8, 2, 128, 9301));
  dense_case c = decode_case("gqa4_2100_hkv3_seq_head", 2100, 12, 3, 128, 9302);
  c.kv_layout = layout::seq_head_dim;
  v.push_back(c);
  c = decode_case("generic_d32_hkv5_padded", 1500, 5, 5, 32, 9303);
  c.kv_layout = layout::seq_head_dim;
  c.pad = 7;
  c.alibi = true;
  v.push_back(c);
  c = decode_case("prefill_gqa4_330_seq_head", 330, 8, 2, 128, 9304);
  c.lq = 330;
  c.kv_layout = layout::seq_head_dim;
  v.push_back(c);
  return v;
}

class DenseQuantThreads : public ::testing::TestWithParam<quant_param> {};

TEST_P(DenseQuantThreads, IdenticalForOneAndTwoThreadsWithTheTap) {
  const auto& [i, t, cs] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  dense_case c = cs;
  c.kv = t;
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  const bool tap = c.lq == 1;  // the probability tap is a decode observer
  prob_recorder serial(c.hq, c.lk);
  if (tap) serial.attach(s.params);
  ASSERT_EQ(run_dense(s, i, heed::default_executor()), status::ok);
  expect_matches_reference(s, r);
  if (tap) expect_probs_match(serial, r, s.ref.offset(), c.causal);
  const std::vector<unsigned char> first = s.result_bytes();

  heed::thread_pool_executor two(2);
  for (int rep = 0; rep < 3; ++rep) {
    prob_recorder threaded(c.hq, c.lk);
    if (tap) threaded.attach(s.params);
    s.reset_outputs();
    ASSERT_EQ(run_dense(s, i, two), status::ok);
    EXPECT_TRUE(s.result_bytes() == first) << "2 threads, run " << rep << ": result differs";
    EXPECT_EQ(threaded.count, serial.count);
    std::int64_t differ = 0;
    for (std::size_t e = 0; e < serial.p.size(); ++e)
      if (serial.count[e] && std::memcmp(&serial.p[e], &threaded.p[e], 4) != 0) ++differ;
    EXPECT_EQ(differ, 0) << "probabilities differ between 1 and 2 threads";
  }
}

INSTANTIATE_TEST_SUITE_P(All, DenseQuantThreads,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::Values(dtype::q8, dtype::q4),
                                            ::testing::ValuesIn(quant_thread_cases())),
                         quant_name);

// Paged quantized rows: the same K/V cut into pages of uneven lengths (each page's pointers at
// its first row, the view's strides), against the reference.
TEST(DenseQuantPaged, MatchesReference) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    for (dtype t : {dtype::q8, dtype::q4}) {
      for (layout l : {layout::head_seq_dim, layout::seq_head_dim}) {
        SCOPED_TRACE(std::string(heed::isa_name(i)) + " " + heed::dtype_name(t) +
                     (l == layout::head_seq_dim ? " head_seq" : " seq_head"));
        dense_case c = decode_case("paged", 1300, 8, 2, 128, 9401);
        c.kv = t;
        c.kv_layout = l;
        dense_setup s(c);
        std::vector<heed::kv_page> pages;
        for (std::int64_t b = 0, n = 0; b < c.lk; b += n) {
          n = std::min<std::int64_t>(c.lk - b, pages.size() % 2 ? 100 : 517);
          heed::kv_page pg;
          pg.k = s.k.bytes.data() + s.k.index(b, 0, 0);
          pg.v = s.v.bytes.data() + s.v.index(b, 0, 0);
          pg.begin = b;
          pg.len = n;
          pages.push_back(pg);
        }
        s.params.pages = pages.data();
        s.params.n_pages = static_cast<std::int64_t>(pages.size());
        const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
        ASSERT_EQ(run_dense(s, i, heed::default_executor()), status::ok);
        expect_matches_reference(s, r);
      }
    }
  }
}

// What the kernels refuse, with the status they return and nothing written.
class DenseQuantErrors : public ::testing::Test {
 protected:
  dense_setup s{[] {
    dense_case c = decode_case("errors", 64, 4, 2, 128, 9501);
    c.kv = dtype::q8;
    c.kv_layout = layout::head_seq_dim;  // rows of 136 bytes, one after another
    return c;
  }()};
  status run() {
    std::vector<unsigned char> ws(1 << 20);
    return heed::dense_attention(s.params, {ws.data(), ws.size()});
  }
};

TEST_F(DenseQuantErrors, ValidDecodeRuns) {
  EXPECT_EQ(heed::dense_can_implement(s.params), status::ok);
  EXPECT_EQ(run(), status::ok);
}

TEST_F(DenseQuantErrors, GroupsOfKAndV) {
  s.params.k.group = s.params.v.group = 12;  // does not divide d
  EXPECT_EQ(run(), status::invalid_argument);
  s.params.k.group = s.params.v.group = -32;
  EXPECT_EQ(run(), status::invalid_argument);
  s.params.k.group = 16;  // K and V of different groups
  s.params.v.group = 32;
  s.params.k.seq_stride = 144;
  s.params.k.head_stride = 64 * 144;
  s.params.v.seq_stride = 136;
  s.params.v.head_stride = 64 * 136;
  EXPECT_EQ(heed::dense_can_implement(s.params), status::unsupported_dtype);
  EXPECT_EQ(run(), status::unsupported_dtype);
  EXPECT_EQ(s.output(), std::vector<float>(s.output().size(), kOutSentinel));
  s.params.k.group = s.params.v.group = 32;  // the default, spelled out
  s.params.k.seq_stride = s.params.v.seq_stride = 136;
  s.params.k.head_stride = s.params.v.head_stride = 64 * 136;
  EXPECT_EQ(run(), status::ok);
}

TEST_F(DenseQuantErrors, OverlappingRowsAndMixedTypes) {
  heed::dense_params p = s.params;
  p.k.seq_stride = 128;  // head-major rows of 136 bytes, 128 apart
  EXPECT_EQ(heed::dense_can_implement(p), status::invalid_stride);
  p = s.params;
  p.v.type = dtype::q4;
  EXPECT_EQ(heed::dense_can_implement(p), status::unsupported_dtype);
  p = s.params;
  p.q.group = 32;  // a group on a plain view
  EXPECT_EQ(heed::dense_can_implement(p), status::invalid_argument);
  EXPECT_EQ(s.output(), std::vector<float>(s.output().size(), kOutSentinel));
}

TEST_F(DenseQuantErrors, KernelsThatDoNotReadQuantizedRowsRefuseThem) {
  EXPECT_EQ(heed::identity_mix(s.params, 0.5f), status::unsupported_dtype);
  EXPECT_EQ(s.output(), std::vector<float>(s.output().size(), kOutSentinel));
}

}  // namespace
}  // namespace heed_test
