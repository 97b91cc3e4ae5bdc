// The compiled dense kernel (heed::dense_attention) against the float64 reference, for every ISA
// this machine can run: dtypes, head dims, causal / chunked / explicit offsets, decode with
// several split-KV partitions, GQA ratios, layouts and padded strides, thread counts.
// Tolerances: see dense_harness.hpp.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/core/thread_pool.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::isa;
using heed::layout;

const std::vector<isa> kIsas(std::begin(heed::platform_isas), std::end(heed::platform_isas));

#define HEED_SKIP_IF_UNAVAILABLE(i)                                                   \
  do {                                                                                \
    if (!heed::isa_available(i)) GTEST_SKIP() << heed::isa_name(i) << " unavailable"; \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Head dims x dtypes: prefill causal, prefill non-causal (chunked, Lq < Lk) and decode.

using head_dim_param = std::tuple<isa, dtype, int>;

class DenseHeadDim : public ::testing::TestWithParam<head_dim_param> {};

TEST_P(DenseHeadDim, MatchesReference) {
  const auto [i, t, d] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  std::vector<dense_case> cases;
  {
    dense_case c;
    c.name = "prefill_causal";
    c.lq = 21;
    c.lk = 45;
    c.hq = 4;
    c.hkv = 2;
    c.d = d;
    c.kv = t;
    c.seed = 100 + static_cast<std::uint32_t>(d);
    cases.push_back(c);
    c.name = "prefill_noncausal";
    c.causal = false;
    c.seed += 1;
    cases.push_back(c);
    c.name = "decode";
    c.causal = true;
    c.lq = 1;
    c.lk = 77;
    c.seed += 1;
    cases.push_back(c);
  }
  for (const dense_case& c : cases) {
    SCOPED_TRACE(c.name);
    dense_setup s(c);
    const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
    ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
    expect_matches_reference(s, r);
  }
}

INSTANTIATE_TEST_SUITE_P(All, DenseHeadDim,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::Values(dtype::f32, dtype::f16, dtype::bf16),
                                            ::testing::Values(1, 7, 33, 50, 64, 80, 96, 100, 128,
                                                              256, 300)),
                         [](const ::testing::TestParamInfo<head_dim_param>& info) {
                           return std::string(heed::isa_name(std::get<0>(info.param))) + "_" +
                                  heed::dtype_name(std::get<1>(info.param)) + "_d" +
                                  std::to_string(std::get<2>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Shapes, masks, offsets, GQA, layouts.

std::vector<dense_case> shape_cases() {
  std::vector<dense_case> v;
  auto add = [&](dense_case c) {
    c.seed = 1000 + static_cast<std::uint32_t>(v.size()) * 7;
    v.push_back(c);
  };
  auto base = [](const char* name, std::int64_t lq, std::int64_t lk) {
    dense_case c;
    c.name = name;
    c.lq = lq;
    c.lk = lk;
    c.hq = 2;
    c.hkv = 1;
    c.d = 64;
    return c;
  };
  dense_case c;

  add(base("prefill_causal_square", 40, 40));
  c = base("prefill_noncausal_square", 40, 40);
  c.causal = false;
  add(c);
  add(base("lq2", 2, 2));
  add(base("chunked_prefill", 24, 100));
  c = base("chunked_prefill_noncausal", 24, 100);
  c.causal = false;
  add(c);
  c = base("explicit_offset_causal", 20, 100);
  c.q_offset = 30;  // keys 50.. are invisible to every row
  add(c);
  c = base("explicit_offset_zero", 33, 33);
  c.q_offset = 0;
  add(c);
  c = base("explicit_offset_past_end", 20, 30);
  c.q_offset = 25;  // rows at positions >= 30 see every key
  add(c);
  c = base("noncausal_lq_gt_lk", 50, 20);
  c.causal = false;
  add(c);
  c = base("multi_tile_prefill_f16_d128", 200, 200);
  c.d = 128;
  c.kv = dtype::f16;
  add(c);
  c = base("multi_tile_prefill_bf16_d50", 130, 190);
  c.d = 50;
  c.kv = dtype::bf16;
  add(c);
  c = base("multi_tile_noncausal_f32_d80", 70, 150);
  c.d = 80;
  c.causal = false;
  add(c);
  c = base("large_logits", 64, 64);
  c.q_amp = 40.f;  // logits spread over tens of units: peaky rows
  add(c);
  c = base("large_logits_decode", 1, 600);
  c.q_amp = 40.f;
  add(c);
  c = base("custom_scale", 30, 50);
  c.scale = 0.3f;
  add(c);
  c = base("head_dim_1_prefill", 17, 23);
  c.d = 1;
  add(c);

  // GQA ratios 1, 2, 4, 6, 8 and MQA, prefill and decode (prefill attends up to 4 heads of a
  // group per task: 6 and 3 leave a partial set).
  const std::int64_t gqa[][2] = {{4, 4}, {4, 2}, {8, 2}, {12, 2}, {16, 2}, {8, 1}, {3, 1}, {32, 1}};
  const char* gqa_names[] = {"gqa1", "gqa2", "gqa4", "gqa6", "gqa8", "mqa8", "mqa3", "mqa32"};
  for (int g = 0; g < 8; ++g) {
    c = base("", 19, 52);
    c.name = std::string("prefill_") + gqa_names[g];
    c.hq = gqa[g][0];
    c.hkv = gqa[g][1];
    c.d = 32;
    add(c);
    c.name = std::string("decode_") + gqa_names[g];
    c.lq = 1;
    c.lk = 130;
    c.kv = dtype::f16;
    c.d = 64;
    add(c);
    // Head-major K/V: contiguous rows, where decode scores several keys at once (GQA 4, 8);
    // 1031 keys end a partition and a key block mid-way.
    c.name = std::string("decode_head_seq_") + gqa_names[g];
    c.lk = 1031;
    c.d = 128;
    c.kv_layout = layout::head_seq_dim;
    add(c);
  }

  // Layouts and padded strides.
  c = base("layout_head_seq", 37, 60);
  c.q_layout = c.kv_layout = c.o_layout = layout::head_seq_dim;
  c.hq = 4;
  c.hkv = 2;
  add(c);
  c = base("layout_mixed", 37, 60);
  c.kv_layout = layout::head_seq_dim;
  c.o_layout = layout::head_seq_dim;
  c.hq = 4;
  c.hkv = 2;
  c.kv = dtype::bf16;
  add(c);
  c = base("padded_strides", 37, 60);
  c.pad = 5;
  c.hq = 4;
  c.hkv = 2;
  add(c);
  c = base("padded_head_seq_f16_d96", 37, 60);
  c.pad = 3;
  c.d = 96;
  c.q_layout = c.kv_layout = c.o_layout = layout::head_seq_dim;
  c.kv = dtype::f16;
  add(c);
  c = base("padded_decode_f16_d128", 1, 300);
  c.pad = 7;
  c.d = 128;
  c.hq = 8;
  c.hkv = 2;
  c.kv = dtype::f16;
  add(c);
  c = base("padded_decode_head_seq_bf16_d33", 1, 300);
  c.pad = 2;
  c.d = 33;
  c.hq = 4;
  c.hkv = 2;
  c.kv = dtype::bf16;
  c.kv_layout = layout::head_seq_dim;
  add(c);

  // Decode: one key, partition boundaries, several partitions.
  add(base("decode_one_key", 1, 1));
  add(base("decode_100", 1, 100));
  add(base("decode_1024", 1, 1024));
  add(base("decode_1025", 1, 1025));
  c = base("decode_3000_f16_gqa4_d128", 1, 3000);
  c.hq = 8;
  c.hkv = 2;
  c.d = 128;
  c.kv = dtype::f16;
  add(c);
  c = base("decode_3000_bf16_d80", 1, 3000);
  c.d = 80;
  c.kv = dtype::bf16;
  add(c);
  c = base("decode_3000_f32_d100", 1, 3000);
  c.d = 100;
  add(c);
  c = base("decode_2100_f32_d256", 1, 2100);
  c.d = 256;
  c.hq = 4;
  c.hkv = 2;
  add(c);
  c = base("decode_2100_f16_d96_head_seq", 1, 2100);
  c.d = 96;
  c.kv = dtype::f16;
  c.kv_layout = layout::head_seq_dim;
  add(c);
  c = base("decode_offset_past_end", 1, 1500);
  c.q_offset = 4000;  // causal, but every key is in the past
  add(c);
  c = base("decode_causal_offset", 1, 3000);
  c.q_offset = 2100;  // sees keys 0..2100: three partitions, the last one short
  add(c);
  c = base("decode_causal_offset_zero", 1, 50);
  c.q_offset = 0;  // sees only key 0
  add(c);
  c = base("decode_noncausal", 1, 2500);
  c.causal = false;
  c.q_offset = 5;
  add(c);

  // Row statistics outputs.
  c = base("row_head_stride", 20, 40);
  c.hq = 4;
  c.hkv = 2;
  c.row_head_stride = 50;
  add(c);
  c = base("decode_row_head_stride", 1, 40);
  c.hq = 4;
  c.hkv = 2;
  c.row_head_stride = 3;
  add(c);
  c = base("lse_only", 20, 40);
  c.want_entropy = false;
  add(c);
  c = base("no_row_outputs", 20, 40);
  c.want_entropy = false;
  c.want_lse = false;
  add(c);
  c = base("entropy_only_prefill", 20, 40);
  c.want_lse = false;
  add(c);
  c = base("entropy_only_decode", 1, 40);
  c.want_lse = false;
  add(c);
  return v;
}

using shape_param = std::tuple<isa, dense_case>;

class DenseShapes : public ::testing::TestWithParam<shape_param> {};

TEST_P(DenseShapes, MatchesReference) {
  const auto& [i, c] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
  ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
  expect_matches_reference(s, r);
}

std::string shape_name(const ::testing::TestParamInfo<shape_param>& info) {
  return std::string(heed::isa_name(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(All, DenseShapes,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::ValuesIn(shape_cases())),
                         shape_name);

// ---------------------------------------------------------------------------------------------
// Threads: serial, a 1-thread pool and a 2-thread pool give bitwise identical results.

std::vector<dense_case> thread_cases() {
  std::vector<dense_case> v;
  dense_case c;
  c.name = "prefill_causal_multi_tile";
  c.lq = 100;
  c.lk = 100;
  c.hq = 4;
  c.hkv = 2;
  c.d = 64;
  c.seed = 7001;
  v.push_back(c);
  c.name = "prefill_chunked_noncausal_bf16_d33";
  c.lq = 45;
  c.lk = 150;
  c.d = 33;
  c.causal = false;
  c.kv = dtype::bf16;
  c.seed = 7002;
  v.push_back(c);
  c = dense_case{};
  c.name = "prefill_variants_f16_d128";
  c.lq = 70;
  c.lk = 90;
  c.hq = 4;
  c.hkv = 1;
  c.d = 128;
  c.kv = dtype::f16;
  c.window_left = 30;
  c.softcap = 8.f;
  c.alibi = true;
  c.sinks = true;
  c.seed = 7003;
  v.push_back(c);
  c = dense_case{};
  c.name = "decode_3000_f16_gqa4";
  c.lq = 1;
  c.lk = 3000;
  c.hq = 8;
  c.hkv = 2;
  c.d = 128;
  c.kv = dtype::f16;
  c.seed = 7004;
  v.push_back(c);
  c.name = "decode_2500_variants_bf16_d80";
  c.lk = 2500;
  c.d = 80;
  c.kv = dtype::bf16;
  c.window_left = 1800;
  c.sinks = true;
  c.alibi = true;
  c.seed = 7005;
  v.push_back(c);
  // [seq, heads, d] decode runs the KV heads of a partition side by side; 3 heads x 3
  // partitions split over two threads leave each thread part of a partition's heads.
  c = dense_case{};
  c.name = "decode_2100_f16_gqa4_hkv3_strided";
  c.lq = 1;
  c.lk = 2100;
  c.hq = 12;
  c.hkv = 3;
  c.d = 128;
  c.kv = dtype::f16;
  c.seed = 7006;
  v.push_back(c);
  c.name = "decode_2100_f16_gqa4_hkv3_head_seq";
  c.kv_layout = heed::layout::head_seq_dim;
  c.seed = 7007;
  v.push_back(c);
  c.name = "decode_1500_f32_d33_hkv5_padded";
  c.kv_layout = heed::layout::seq_head_dim;
  c.hq = 5;
  c.hkv = 5;
  c.lk = 1500;
  c.d = 33;
  c.kv = dtype::f32;
  c.pad = 3;
  c.seed = 7008;
  v.push_back(c);
  return v;
}

class DenseThreads : public ::testing::TestWithParam<shape_param> {};

TEST_P(DenseThreads, IdenticalForOneAndTwoThreads) {
  const auto& [i, c] = GetParam();
  HEED_SKIP_IF_UNAVAILABLE(i);
  dense_setup s(c);
  const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);

  ASSERT_EQ(run_dense(s, i, heed::default_executor()), heed::status::ok);
  expect_matches_reference(s, r);
  const std::vector<unsigned char> serial = s.result_bytes();

  heed::thread_pool_executor one(1), two(2);
  ASSERT_EQ(one.concurrency(), 1);
  ASSERT_EQ(two.concurrency(), 2);
  for (heed::executor* ex :
       {static_cast<heed::executor*>(&one), static_cast<heed::executor*>(&two)}) {
    SCOPED_TRACE("threads " + std::to_string(ex->concurrency()));
    s.reset_outputs();
    ASSERT_EQ(run_dense(s, i, *ex), heed::status::ok);
    EXPECT_TRUE(s.result_bytes() == serial) << "result differs from the serial run";
  }
  // Repeat on the 2-thread pool: scheduling varies between runs, results must not.
  for (int rep = 0; rep < 3; ++rep) {
    s.reset_outputs();
    ASSERT_EQ(run_dense(s, i, two), heed::status::ok);
    EXPECT_TRUE(s.result_bytes() == serial) << "2-thread repeat " << rep << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(All, DenseThreads,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::ValuesIn(thread_cases())),
                         shape_name);

// ---------------------------------------------------------------------------------------------
// The ISAs agree with each other (each within tolerance of the reference is checked above; here
// automatic dispatch must pick the best ISA and give its exact result).

TEST(DenseDispatch, AutomaticIsTheBestIsa) {
  const isa best = heed::best_isa();
  ASSERT_TRUE(heed::isa_available(best));
  EXPECT_TRUE(heed::isa_available(isa::automatic));
  EXPECT_NE(best, isa::automatic);
  for (isa i : kIsas) {
    if (heed::isa_available(i)) {
      EXPECT_GE(static_cast<int>(best), static_cast<int>(i));
    }
  }

  dense_case c;
  c.lq = 40;
  c.lk = 70;
  c.hq = 2;
  c.hkv = 1;
  c.d = 80;
  c.kv = dtype::f16;
  dense_setup s(c);
  ASSERT_EQ(run_dense(s, best, heed::default_executor()), heed::status::ok);
  const auto explicit_best = s.result_bytes();
  s.reset_outputs();
  ASSERT_EQ(run_dense(s, isa::automatic, heed::default_executor()), heed::status::ok);
  EXPECT_TRUE(s.result_bytes() == explicit_best);
}

TEST(DenseDispatch, WorkspaceSizeIsPositiveForEveryAvailableIsa) {
  dense_case c;
  c.lq = 8;
  c.lk = 8;
  dense_setup s(c);
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    EXPECT_GT(heed::dense_workspace_size(s.params, 1, i), 0u) << heed::isa_name(i);
  }
}

// The harness itself: a kernel run compared with a reference that uses a slightly different
// scale must fail, so the tolerances are not vacuous.
TEST(DenseHarness, DetectsASlightlyWrongReference) {
  dense_case c;
  c.lq = 16;
  c.lk = 16;
  c.hq = 1;
  c.hkv = 1;
  c.d = 64;
  dense_setup s(c);
  ASSERT_EQ(run_dense(s, isa::automatic, heed::default_executor()), heed::status::ok);
  heed_ref::attention_problem wrong = s.ref;
  wrong.scale = 1.001 / std::sqrt(double(c.d));
  const heed_ref::attention_result r = heed_ref::naive_attention(wrong);
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter intercept(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    expect_matches_reference(s, r);
  }
  EXPECT_GT(failures.size(), 0) << "a 0.1% scale error went unnoticed";
  expect_matches_reference(s, heed_ref::naive_attention(s.ref));
}

}  // namespace
}  // namespace heed_test
