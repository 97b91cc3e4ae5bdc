// The OpenMP executor adapter (built only when CMake finds OpenMP): every task once, thread ids
// within concurrency(), and the dense kernel gives the serial result bit for bit through it.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/core/openmp_executor.hpp"

namespace heed_test {
namespace {

TEST(OpenMPExecutor, CompiledWithOpenMP) {
#if defined(_OPENMP)
  SUCCEED();
#else
  FAIL() << "this test must be compiled with OpenMP";
#endif
}

TEST(OpenMPExecutor, ConcurrencyIsAsRequested) {
  EXPECT_EQ(heed::openmp_executor(2).concurrency(), 2);
  EXPECT_EQ(heed::openmp_executor(3).concurrency(), 3);
  EXPECT_EQ(heed::openmp_executor(0).concurrency(), omp_get_max_threads());
}

TEST(OpenMPExecutor, RunsEveryTaskOnce) {
  for (int threads : {1, 2, 3}) {
    heed::openmp_executor ex(threads);
    for (std::int64_t n : {0, 1, 2, 5, 100, 1000}) {
      std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
      for (auto& r : runs) r.store(0);
      std::atomic<int> bad{0};
      ex.parallel_for(n, [&](std::int64_t t, int thread) {
        if (thread < 0 || thread >= threads || t < 0 || t >= n) {
          bad.fetch_add(1);
          return;
        }
        runs[static_cast<std::size_t>(t)].fetch_add(1);
      });
      EXPECT_EQ(bad.load(), 0);
      for (std::int64_t t = 0; t < n; ++t)
        ASSERT_EQ(runs[static_cast<std::size_t>(t)].load(), 1) << "task " << t << " of " << n;
    }
  }
}

TEST(OpenMPExecutor, DenseKernelMatchesSerialBitwise) {
  dense_case prefill;
  prefill.name = "prefill";
  prefill.lq = 80;
  prefill.lk = 120;
  prefill.hq = 4;
  prefill.hkv = 2;
  prefill.d = 64;
  prefill.kv = heed::dtype::f16;
  dense_case decode = prefill;
  decode.name = "decode";
  decode.lq = 1;
  decode.lk = 3000;
  decode.sinks = true;
  heed::openmp_executor two(2);
  for (const dense_case& c : {prefill, decode}) {
    SCOPED_TRACE(c.name);
    dense_setup s(c);
    ASSERT_EQ(run_dense(s, heed::isa::automatic, heed::default_executor()), heed::status::ok);
    expect_matches_reference(s, heed_ref::naive_attention(s.ref));
    const std::vector<unsigned char> serial = s.result_bytes();
    s.reset_outputs();
    ASSERT_EQ(run_dense(s, heed::isa::automatic, two), heed::status::ok);
    EXPECT_TRUE(s.result_bytes() == serial);
  }
}

}  // namespace
}  // namespace heed_test
