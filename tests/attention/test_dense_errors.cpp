// Bad input to the compiled dense kernel returns a status and never touches memory it should
// not: null pointers, bad lengths and strides, mismatched shapes and dtypes, small workspaces,
// unavailable ISAs. Unlisted head dims take the generic path and are correct.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "attention/dense_harness.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::isa;
using heed::status;

dense_case valid_case(std::int64_t lq = 6, std::int64_t lk = 9) {
  dense_case c;
  c.name = "valid";
  c.lq = lq;
  c.lk = lk;
  c.hq = 4;
  c.hkv = 2;
  c.d = 16;
  return c;
}

// Runs the mutated parameters through every entry point: can_implement, workspace_size (must be
// 0) and dense_attention with a generous workspace (must return `want` and leave O untouched).
void expect_rejected(const std::function<void(heed::dense_params&)>& mutate, status want,
                     std::int64_t lq = 6) {
  dense_setup s(valid_case(lq));
  heed::dense_params p = s.params;
  mutate(p);
  EXPECT_EQ(heed::dense_can_implement(p), want);
  EXPECT_EQ(heed::dense_workspace_size(p, 1), 0u);
  std::vector<unsigned char> ws(1 << 20);
  const std::vector<unsigned char> before = s.o.bytes;
  EXPECT_EQ(heed::dense_attention(p, {ws.data(), ws.size()}), want);
  EXPECT_TRUE(s.o.bytes == before) << "output written despite the error";
}

TEST(DenseErrors, ValidCaseIsAccepted) {
  dense_setup s(valid_case());
  EXPECT_EQ(heed::dense_can_implement(s.params), status::ok);
  EXPECT_GT(heed::dense_workspace_size(s.params, 1), 0u);
  EXPECT_EQ(run_dense(s, isa::automatic, heed::default_executor()), status::ok);
}

TEST(DenseErrors, NullPointers) {
  expect_rejected([](heed::dense_params& p) { p.q.data = nullptr; }, status::null_pointer);
  expect_rejected([](heed::dense_params& p) { p.k.data = nullptr; }, status::null_pointer);
  expect_rejected([](heed::dense_params& p) { p.v.data = nullptr; }, status::null_pointer);
  expect_rejected([](heed::dense_params& p) { p.o.data = nullptr; }, status::null_pointer);
}

TEST(DenseErrors, DefaultConstructedParams) {
  const heed::dense_params p;
  EXPECT_NE(heed::dense_can_implement(p), status::ok);
  EXPECT_EQ(heed::dense_workspace_size(p, 1), 0u);
  EXPECT_NE(heed::dense_attention(p, {}), status::ok);
}

TEST(DenseErrors, ZeroOrNegativeLengths) {
  for (std::int64_t bad : {std::int64_t(0), std::int64_t(-1), std::int64_t(-1000)}) {
    SCOPED_TRACE(bad);
    // q and o lengths together (a mismatch would be a different error).
    expect_rejected(
        [bad](heed::dense_params& p) {
          p.q.seq = bad;
          p.o.seq = bad;
        },
        status::invalid_argument);
    expect_rejected(
        [bad](heed::dense_params& p) {
          p.k.seq = bad;
          p.v.seq = bad;
        },
        status::invalid_argument);
    expect_rejected(
        [bad](heed::dense_params& p) {
          p.q.heads = bad;
          p.o.heads = bad;
        },
        status::invalid_argument);
    expect_rejected(
        [bad](heed::dense_params& p) {
          p.k.heads = bad;
          p.v.heads = bad;
        },
        status::invalid_argument);
  }
}

TEST(DenseErrors, HeadDimZeroOrNegative) {
  for (std::int64_t bad : {std::int64_t(0), std::int64_t(-16)}) {
    expect_rejected([bad](heed::dense_params& p) { p.q.dim = p.k.dim = p.v.dim = p.o.dim = bad; },
                    status::invalid_argument);
  }
}

TEST(DenseErrors, HugeLengths) {
  // Lengths above 2^30 are refused before any memory is touched.
  const std::int64_t huge = std::int64_t(1) << 40;
  expect_rejected([huge](heed::dense_params& p) { p.k.seq = p.v.seq = huge; },
                  status::invalid_argument);
  expect_rejected(
      [huge](heed::dense_params& p) {
        p.q.seq = p.o.seq = huge;
        p.causal = false;
      },
      status::invalid_argument);
  expect_rejected([](heed::dense_params& p) { p.q_offset = std::int64_t(1) << 40; },
                  status::invalid_argument);
}

TEST(DenseErrors, HeadsNotAMultiple) {
  // Hq = 4, Hkv = 3.
  dense_case c = valid_case();
  c.hkv = 3;
  dense_setup s(c);
  EXPECT_EQ(heed::dense_can_implement(s.params), status::shape_mismatch);
  EXPECT_EQ(heed::dense_workspace_size(s.params, 1), 0u);
  std::vector<unsigned char> ws(1 << 20);
  EXPECT_EQ(heed::dense_attention(s.params, {ws.data(), ws.size()}), status::shape_mismatch);
  // Hkv > Hq.
  c.hq = 2;
  c.hkv = 4;
  dense_setup t(c);
  EXPECT_EQ(heed::dense_attention(t.params, {ws.data(), ws.size()}), status::shape_mismatch);
}

TEST(DenseErrors, MismatchedShapes) {
  expect_rejected([](heed::dense_params& p) { p.k.dim = 8; }, status::shape_mismatch);
  expect_rejected([](heed::dense_params& p) { p.v.dim = 8; }, status::shape_mismatch);
  expect_rejected([](heed::dense_params& p) { p.o.dim = 8; }, status::shape_mismatch);
  expect_rejected([](heed::dense_params& p) { p.o.seq = 3; }, status::shape_mismatch);
  expect_rejected([](heed::dense_params& p) { p.o.heads = 2; }, status::shape_mismatch);
  expect_rejected([](heed::dense_params& p) { p.v.seq = 5; }, status::shape_mismatch);
  expect_rejected([](heed::dense_params& p) { p.v.heads = 1; }, status::shape_mismatch);
}

TEST(DenseErrors, BadStrides) {
  // Negative strides.
  expect_rejected([](heed::dense_params& p) { p.q.seq_stride = -p.q.seq_stride; },
                  status::invalid_stride);
  expect_rejected([](heed::dense_params& p) { p.k.head_stride = -1; }, status::invalid_stride);
  // Rows overlapping: head stride smaller than the head dim.
  expect_rejected([](heed::dense_params& p) { p.v.head_stride = p.v.dim - 1; },
                  status::invalid_stride);
  // Positions overlapping heads: seq stride smaller than heads * head stride.
  expect_rejected([](heed::dense_params& p) { p.o.seq_stride = p.o.head_stride; },
                  status::invalid_stride);
  // Both strides zero: every row aliases the first.
  expect_rejected(
      [](heed::dense_params& p) {
        p.k.seq_stride = 0;
        p.k.head_stride = 0;
      },
      status::invalid_stride);
  // LSE rows closer together than Lq.
  expect_rejected([](heed::dense_params& p) { p.row_head_stride = 3; }, status::invalid_stride);
}

TEST(DenseErrors, Dtypes) {
  expect_rejected([](heed::dense_params& p) { p.q.type = dtype::f16; }, status::unsupported_dtype);
  expect_rejected([](heed::dense_params& p) { p.o.type = dtype::bf16; }, status::unsupported_dtype);
  expect_rejected([](heed::dense_params& p) { p.v.type = dtype::f16; }, status::unsupported_dtype);
  expect_rejected([](heed::dense_params& p) { p.k.type = static_cast<dtype>(7); },
                  status::unsupported_dtype);
}

TEST(DenseErrors, BadOptions) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {-1.f, nan, inf}) {
    SCOPED_TRACE(bad);
    expect_rejected([bad](heed::dense_params& p) { p.scale = bad; }, status::invalid_argument);
    expect_rejected([bad](heed::dense_params& p) { p.softcap = bad; }, status::invalid_argument);
  }
  expect_rejected([](heed::dense_params& p) { p.window_left = -2; }, status::invalid_argument);
  expect_rejected([](heed::dense_params& p) { p.q_offset = -2; }, status::invalid_argument);
  // Causal with more queries than keys and the default offset: query positions would be negative.
  expect_rejected(
      [](heed::dense_params& p) {
        p.k.seq = p.v.seq = 3;
        p.causal = true;
      },
      status::invalid_argument);
}

TEST(DenseErrors, WorkspaceTooSmall) {
  for (std::int64_t lq : {std::int64_t(6), std::int64_t(1)}) {  // prefill and decode
    SCOPED_TRACE(lq == 1 ? "decode" : "prefill");
    dense_setup s(valid_case(lq, 3000));
    const std::size_t need = heed::dense_workspace_size(s.params, 1);
    ASSERT_GT(need, 0u);
    std::vector<unsigned char> ws(need);
    EXPECT_EQ(heed::dense_attention(s.params, {ws.data(), need - 1}), status::workspace_too_small);
    EXPECT_EQ(heed::dense_attention(s.params, {ws.data(), 0}), status::workspace_too_small);
    // A null workspace: with a size it is a null pointer, without one it is too small.
    EXPECT_EQ(heed::dense_attention(s.params, {nullptr, need}), status::null_pointer);
    EXPECT_EQ(heed::dense_attention(s.params, {nullptr, 0}), status::workspace_too_small);
    // Sized for one thread but run on an executor reporting two.
    struct two_serial final : heed::executor {
      int concurrency() const noexcept override { return 2; }
      void parallel_for(std::int64_t n, heed::task_fn fn) noexcept override {
        for (std::int64_t t = 0; t < n; ++t) fn(t, static_cast<int>(t % 2));
      }
    } two;
    const std::size_t need2 = heed::dense_workspace_size(s.params, 2);
    EXPECT_GT(need2, need);
    EXPECT_EQ(heed::dense_attention(s.params, {ws.data(), need}, two), status::workspace_too_small);
    // The probability tap needs more workspace in decode.
    if (lq == 1) {
      prob_recorder rec(4, 3000);
      rec.attach(s.params);
      const std::size_t need_tap = heed::dense_workspace_size(s.params, 1);
      EXPECT_GT(need_tap, need);
      EXPECT_EQ(heed::dense_attention(s.params, {ws.data(), need}), status::workspace_too_small);
      EXPECT_EQ(rec.calls, 0);
    }
  }
}

TEST(DenseErrors, ExecutorWithoutThreads) {
  struct no_threads final : heed::executor {
    int concurrency() const noexcept override { return 0; }
    void parallel_for(std::int64_t, heed::task_fn) noexcept override {}
  } ex;
  dense_setup s(valid_case());
  EXPECT_EQ(heed::dense_workspace_size(s.params, 0), 0u);
  std::vector<unsigned char> ws(1 << 20);
  EXPECT_NE(heed::dense_attention(s.params, {ws.data(), ws.size()}, ex), status::ok);
}

TEST(DenseErrors, NonexistentIsa) {
  dense_setup s(valid_case());
  std::vector<unsigned char> ws(1 << 20);
  const isa bogus = static_cast<isa>(99);
  EXPECT_FALSE(heed::isa_available(bogus));
  EXPECT_EQ(heed::dense_workspace_size(s.params, 1, bogus), 0u);
  const std::vector<unsigned char> before = s.o.bytes;
  EXPECT_EQ(
      heed::dense_attention(s.params, {ws.data(), ws.size()}, heed::default_executor(), bogus),
      status::unsupported_isa);
  EXPECT_TRUE(s.o.bytes == before);
}

TEST(DenseErrors, IsaThisCpuLacks) {
  dense_setup s(valid_case());
  std::vector<unsigned char> ws(1 << 20);
  bool any_missing = false;
  for (isa i : heed::platform_isas) {
    if (heed::isa_available(i)) continue;
    any_missing = true;
    SCOPED_TRACE(heed::isa_name(i));
    EXPECT_EQ(heed::dense_workspace_size(s.params, 1, i), 0u);
    EXPECT_EQ(heed::dense_attention(s.params, {ws.data(), ws.size()}, heed::default_executor(), i),
              status::unsupported_isa);
  }
  if (!any_missing) GTEST_SKIP() << "every ISA is available on this machine";
}

// Head dims without a specialization take the generic path: accepted and correct.
TEST(DenseErrors, UnlistedHeadDimsFallBack) {
  for (std::int64_t d : {std::int64_t(7), std::int64_t(300)}) {
    for (std::int64_t lq : {std::int64_t(9), std::int64_t(1)}) {
      SCOPED_TRACE("d " + std::to_string(d) + " lq " + std::to_string(lq));
      dense_case c = valid_case(lq, 40);
      c.d = d;
      c.kv = dtype::f16;
      dense_setup s(c);
      EXPECT_EQ(heed::dense_can_implement(s.params), status::ok);
      ASSERT_EQ(run_dense(s, isa::automatic, heed::default_executor()), status::ok);
      expect_matches_reference(s, heed_ref::naive_attention(s.ref));
    }
  }
}

}  // namespace
}  // namespace heed_test
