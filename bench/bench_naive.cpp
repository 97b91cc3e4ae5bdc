// Baseline: naive attention with Eigen, per head: S = Q K^T (GEMM), causal mask, row softmax,
// O = P V (GEMM). Heads are spread over the threads. Same shapes and GFLOPS counter as
// BM_dense_prefill (useful flops only).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "bench_common.hpp"
#include "heed/core/thread_pool.hpp"

namespace {

using namespace heed_bench;
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using StridedOut = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

void BM_naive_prefill(benchmark::State& state) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  auto q = random_vector<float>(std::size_t(L) * kHq * kD, 1);
  auto k = random_vector<float>(std::size_t(L) * kHkv * kD, 2);
  auto v = random_vector<float>(std::size_t(L) * kHkv * kD, 3);
  std::vector<float> o(q.size());
  std::vector<RowMat> scores(static_cast<std::size_t>(threads), RowMat(L, L));
  heed::thread_pool_executor ex(threads);
  const float scale = 1.f / std::sqrt(float(kD));
  for (auto _ : state) {
    ex.parallel_for(kHq, [&](std::int64_t h, int t) {
      const std::int64_t kvh = h / (kHq / kHkv);
      Strided Q(q.data() + h * kD, L, kD, Eigen::OuterStride<>(kHq * kD));
      Strided K(k.data() + kvh * kD, L, kD, Eigen::OuterStride<>(kHkv * kD));
      Strided V(v.data() + kvh * kD, L, kD, Eigen::OuterStride<>(kHkv * kD));
      StridedOut O(o.data() + h * kD, L, kD, Eigen::OuterStride<>(kHq * kD));
      RowMat& S = scores[std::size_t(t)];
      S.noalias() = (Q * K.transpose()) * scale;
      for (std::int64_t i = 0; i < L; ++i) {
        auto row = S.row(i);
        const float m = row.head(i + 1).maxCoeff();
        row.head(i + 1) = (row.head(i + 1).array() - m).exp();
        row.head(i + 1) /= row.head(i + 1).sum();
        row.tail(L - i - 1).setZero();
      }
      O.noalias() = S * V;
    });
    benchmark::DoNotOptimize(o.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(causal_flops(L, L, kHq, kD) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_naive_prefill)
    ->ArgsProduct({{1024, 4096}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
