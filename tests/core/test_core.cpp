// Core pieces: status strings, tensor views and validate_view, the workspace carver, the serial
// and std::thread executors, and the replaceable abort handler.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "heed/config.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/core/workspace.hpp"

namespace {

using heed::layout;
using heed::status;

TEST(Status, StringsAreDistinct) {
  const status all[] = {status::ok,
                        status::null_pointer,
                        status::invalid_argument,
                        status::shape_mismatch,
                        status::invalid_stride,
                        status::unsupported_dtype,
                        status::unsupported_head_dim,
                        status::unsupported_isa,
                        status::workspace_too_small,
                        status::out_of_memory};
  std::set<std::string> seen;
  for (status s : all) {
    ASSERT_NE(heed::status_string(s), nullptr);
    EXPECT_TRUE(seen.insert(heed::status_string(s)).second) << heed::status_string(s);
    EXPECT_EQ(heed::is_ok(s), s == status::ok);
  }
  EXPECT_STREQ(heed::status_string(status::ok), "ok");
  EXPECT_STREQ(heed::status_string(static_cast<status>(1000)), "unknown status");
}

status returns_early(status inner, bool* reached_end) {
  HEED_RETURN_IF_ERROR(inner);
  *reached_end = true;
  return status::ok;
}

TEST(Status, ReturnIfError) {
  bool end = false;
  EXPECT_EQ(returns_early(status::shape_mismatch, &end), status::shape_mismatch);
  EXPECT_FALSE(end);
  EXPECT_EQ(returns_early(status::ok, &end), status::ok);
  EXPECT_TRUE(end);
}

// ---------------------------------------------------------------------------------------------
// Tensor views.

TEST(TensorView, MakeViewStrides) {
  std::vector<float> buf(5 * 3 * 8);
  const heed::tensor_view a = heed::make_view(buf.data(), 5, 3, 8);
  EXPECT_EQ(a.type, heed::dtype::f32);
  EXPECT_EQ(a.seq_stride, 24);
  EXPECT_EQ(a.head_stride, 8);
  EXPECT_EQ(a.offset(2, 1), 2 * 24 + 8);
  const heed::tensor_view b = heed::make_view(buf.data(), 5, 3, 8, layout::head_seq_dim);
  EXPECT_EQ(b.seq_stride, 8);
  EXPECT_EQ(b.head_stride, 40);
  EXPECT_EQ(b.offset(2, 1), 2 * 8 + 40);
  EXPECT_EQ(b.row<const float>(2, 1), buf.data() + 56);

  std::vector<heed::f16> h(16);
  std::vector<heed::bf16> bf(16);
  EXPECT_EQ(heed::make_view(h.data(), 2, 2, 4).type, heed::dtype::f16);
  EXPECT_EQ(heed::make_mutable_view(bf.data(), 2, 2, 4).type, heed::dtype::bf16);
  heed::mutable_tensor_view m = heed::make_mutable_view(buf.data(), 5, 3, 8);
  *m.row<float>(4, 2) = 3.f;
  EXPECT_EQ(buf[4 * 24 + 2 * 8], 3.f);
  EXPECT_EQ(heed::validate_view(a), status::ok);
  EXPECT_EQ(heed::validate_view(b), status::ok);
  EXPECT_EQ(heed::validate_view(m), status::ok);
}

heed::tensor_view view_of(std::int64_t seq, std::int64_t heads, std::int64_t dim,
                          std::int64_t seq_stride, std::int64_t head_stride) {
  static float storage[1];
  heed::tensor_view v;
  v.data = storage;
  v.seq = seq;
  v.heads = heads;
  v.dim = dim;
  v.seq_stride = seq_stride;
  v.head_stride = head_stride;
  return v;
}

TEST(TensorView, ValidateSizes) {
  EXPECT_EQ(heed::validate_view(view_of(0, 2, 4, 8, 4)), status::invalid_argument);
  EXPECT_EQ(heed::validate_view(view_of(3, 0, 4, 8, 4)), status::invalid_argument);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 0, 8, 4)), status::invalid_argument);
  EXPECT_EQ(heed::validate_view(view_of(-1, 2, 4, 8, 4)), status::invalid_argument);
  EXPECT_EQ(heed::validate_view(view_of(3, -2, 4, 8, 4)), status::invalid_argument);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, -4, 8, 4)), status::invalid_argument);
}

TEST(TensorView, ValidatePointerAndDtype) {
  heed::tensor_view v = view_of(3, 2, 4, 8, 4);
  EXPECT_EQ(heed::validate_view(v), status::ok);
  v.data = nullptr;
  EXPECT_EQ(heed::validate_view(v), status::null_pointer);
  v = view_of(3, 2, 4, 8, 4);
  v.type = static_cast<heed::dtype>(3);
  EXPECT_EQ(heed::validate_view(v), status::unsupported_dtype);
  v.type = static_cast<heed::dtype>(-1);
  EXPECT_EQ(heed::validate_view(v), status::unsupported_dtype);
}

TEST(TensorView, ValidateStrides) {
  // [seq, heads, dim] dense and padded.
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 8, 4)), status::ok);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 11, 5)), status::ok);
  // [heads, seq, dim] dense and padded.
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 4, 12)), status::ok);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 6, 19)), status::ok);
  // Negative strides.
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, -8, 4)), status::invalid_stride);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 8, -4)), status::invalid_stride);
  // Rows overlapping: inner stride below dim.
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 8, 3)), status::invalid_stride);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 3, 12)), status::invalid_stride);
  // Outer stride too small for the inner extent.
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 7, 4)), status::invalid_stride);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 4, 11)), status::invalid_stride);
  // Equal strides with several heads and positions alias.
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 4, 4)), status::invalid_stride);
  EXPECT_EQ(heed::validate_view(view_of(3, 2, 4, 0, 0)), status::invalid_stride);
  // A single position or head: its stride is irrelevant.
  EXPECT_EQ(heed::validate_view(view_of(1, 2, 4, 0, 4)), status::ok);
  EXPECT_EQ(heed::validate_view(view_of(1, 2, 4, 0, 3)), status::invalid_stride);
  EXPECT_EQ(heed::validate_view(view_of(3, 1, 4, 4, 0)), status::ok);
  EXPECT_EQ(heed::validate_view(view_of(3, 1, 4, 3, 0)), status::invalid_stride);
  EXPECT_EQ(heed::validate_view(view_of(1, 1, 4, 0, 0)), status::ok);
}

// ---------------------------------------------------------------------------------------------
// Workspace.

TEST(Workspace, AlignUp) {
  EXPECT_EQ(heed::align_up(0), 0u);
  EXPECT_EQ(heed::align_up(1), 64u);
  EXPECT_EQ(heed::align_up(64), 64u);
  EXPECT_EQ(heed::align_up(65), 128u);
  EXPECT_EQ(heed::align_up(5, 4), 8u);
  static_assert(heed::align_up(100) % heed::workspace_alignment == 0, "");
}

TEST(Workspace, CarverSizesAndPlacesAlignedPieces) {
  const std::size_t counts[] = {1, 100, 0, 17, 64};
  heed::workspace_carver sizing(nullptr);
  for (std::size_t n : counts) EXPECT_EQ(sizing.take<float>(n), nullptr);
  EXPECT_EQ(sizing.take<double>(3), nullptr);
  const std::size_t need = sizing.bytes_needed();
  EXPECT_GE(need, (1 + 100 + 17 + 64) * 4 + 3 * 8);

  for (std::size_t misalign = 0; misalign < 64; misalign += 7) {
    std::vector<unsigned char> buf(need + misalign);
    unsigned char* base = buf.data() + misalign;
    heed::workspace_carver c(heed::workspace_carver::align_base(base));
    std::vector<std::pair<const unsigned char*, std::size_t>> pieces;
    for (std::size_t n : counts)
      pieces.emplace_back(reinterpret_cast<const unsigned char*>(c.take<float>(n)), n * 4);
    pieces.emplace_back(reinterpret_cast<const unsigned char*>(c.take<double>(3)), 24);
    EXPECT_EQ(c.bytes_needed(), need);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const auto [p, bytes] = pieces[i];
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % heed::workspace_alignment, 0u);
      EXPECT_GE(p, base);
      EXPECT_LE(p + bytes, base + need) << "piece " << i << " overruns the workspace";
      if (i > 0) {
        EXPECT_GE(p, pieces[i - 1].first + pieces[i - 1].second) << "pieces overlap";
      }
    }
  }
}

TEST(Workspace, AlignBase) {
  alignas(64) unsigned char buf[256];
  EXPECT_EQ(heed::workspace_carver::align_base(buf), buf);
  EXPECT_EQ(heed::workspace_carver::align_base(buf + 1), buf + 64);
  EXPECT_EQ(heed::workspace_carver::align_base(buf + 63), buf + 64);
  EXPECT_EQ(heed::workspace_carver::align_base(buf + 64), buf + 64);
}

// ---------------------------------------------------------------------------------------------
// Executors.

TEST(Executor, SerialRunsInOrderOnThreadZero) {
  heed::serial_executor ex;
  EXPECT_EQ(ex.concurrency(), 1);
  std::vector<std::int64_t> order;
  ex.parallel_for(5, [&](std::int64_t t, int thread) {
    EXPECT_EQ(thread, 0);
    order.push_back(t);
  });
  EXPECT_EQ(order, (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  ex.parallel_for(0, [&](std::int64_t, int) { ADD_FAILURE() << "no task expected"; });
  EXPECT_EQ(heed::default_executor().concurrency(), 1);
  EXPECT_EQ(&heed::default_executor(), &heed::default_executor());
}

// Every task exactly once, thread ids within [0, concurrency), across many rounds.
void check_pool(heed::executor& ex, int expected_threads) {
  ASSERT_EQ(ex.concurrency(), expected_threads);
  for (int round = 0; round < 60; ++round) {
    const std::int64_t n = std::vector<std::int64_t>{0, 1, 2, 3, 7, 64, 1000}[round % 7];
    std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
    for (auto& r : runs) r.store(0);
    std::atomic<int> bad_thread{0};
    ex.parallel_for(n, [&](std::int64_t t, int thread) {
      if (thread < 0 || thread >= expected_threads) bad_thread.fetch_add(1);
      if (t >= 0 && t < n) runs[static_cast<std::size_t>(t)].fetch_add(1);
    });
    EXPECT_EQ(bad_thread.load(), 0);
    for (std::int64_t t = 0; t < n; ++t)
      ASSERT_EQ(runs[static_cast<std::size_t>(t)].load(), 1) << "task " << t << " of " << n;
  }
}

TEST(Executor, ThreadPoolRunsEveryTaskOnce) {
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    heed::thread_pool_executor pool(threads);
    check_pool(pool, threads);
  }
}

TEST(Executor, ThreadPoolDefaultsToHardwareThreads) {
  heed::thread_pool_executor pool(0);
  EXPECT_GE(pool.concurrency(), 1);
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw > 0) {
    EXPECT_EQ(pool.concurrency(), static_cast<int>(hw));
  }
  check_pool(pool, pool.concurrency());
}

TEST(Executor, TaskFnCallsTheCallable) {
  int sum = 0;
  auto f = [&sum](std::int64_t t, int thread) { sum += static_cast<int>(t) * 10 + thread; };
  const heed::task_fn fn(f);
  fn(3, 1);
  fn(4, 0);
  EXPECT_EQ(sum, 31 + 40);
}

// ---------------------------------------------------------------------------------------------
// Abort handler.

void marker_handler(const char* file, int line, const char* what) {
  std::fprintf(stderr, "custom-handler %s:%d %s\n", file, line, what);
}

TEST(AbortHandlerDeathTest, CustomHandlerRunsThenAborts) {
  // threadsafe (re-executes the test binary), unless the environment chose a style: under an
  // emulator (qemu-user, cross builds) the binary cannot be re-executed and "fast" is set.
  if (std::getenv("GTEST_DEATH_TEST_STYLE") == nullptr)
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        heed::set_abort_handler(&marker_handler);
        HEED_ASSERT(1 + 1 == 3);
      },
      "custom-handler .*test_core.cpp:[0-9]+ 1 \\+ 1 == 3");
  EXPECT_DEATH(HEED_ASSERT(false), "heed: invariant broken at .*false");
}

// HEED_DASSERT is HEED_ASSERT without NDEBUG (Debug builds, and the sanitizer stage of .ci/run,
// whose RelWithDebInfo flags "-O1 -g1" drop -DNDEBUG; tests/CMakeLists.txt defines
// HEED_TEST_EXPECT_DASSERT in HEED_SANITIZE builds so that losing it fails the build) and
// evaluates nothing with it.
#if defined(HEED_TEST_EXPECT_DASSERT) && defined(NDEBUG)
#error "HEED_SANITIZE builds must have HEED_DASSERT on, but NDEBUG is defined"
#endif
#ifndef NDEBUG
TEST(AbortHandlerDeathTest, DassertChecksWithoutNdebug) {
  if (std::getenv("GTEST_DEATH_TEST_STYLE") == nullptr)
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(HEED_DASSERT(2 + 2 == 5), "heed: invariant broken at .*2 \\+ 2 == 5");
  HEED_DASSERT(2 + 2 == 4);
}

// One of the library's debug invariants: tensor_view::row() indices in range.
TEST(AbortHandlerDeathTest, TensorViewRowOutOfRange) {
  if (std::getenv("GTEST_DEATH_TEST_STYLE") == nullptr)
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> buf(2 * 3 * 4);
  const heed::tensor_view v = heed::make_view(buf.data(), 2, 3, 4);
  EXPECT_EQ(v.row<const float>(1, 2), buf.data() + 1 * 12 + 2 * 4);
  EXPECT_DEATH((void)v.row<const float>(2, 0), "invariant broken at .*s < seq");
  EXPECT_DEATH((void)v.row<const float>(0, -1), "invariant broken at .*h >= 0");
}
#else
TEST(AbortHandler, DassertEvaluatesNothingUnderNdebug) {
  int evaluated = 0;
  HEED_DASSERT(++evaluated == 5);
  EXPECT_EQ(evaluated, 0);
}
#endif

TEST(AbortHandler, SetReturnsThePrevious) {
  const heed::abort_handler original = heed::set_abort_handler(&marker_handler);
  ASSERT_NE(original, nullptr);
  EXPECT_EQ(heed::set_abort_handler(nullptr), &marker_handler);  // nullptr restores the default
  EXPECT_EQ(heed::set_abort_handler(original), original);
  HEED_ASSERT(true);  // a holding assertion does nothing
}

}  // namespace
