// heed's dense kernel: prefill (f32 K/V, with and without the LSE + entropy observer) and
// decode (f16 K/V, one query token). Counters: GFLOPS (useful flops) and GBps (K and V bytes);
// BM_dense_prefill_observed_paired: observed_speed, plain and observed timed in the same
// iterations (time(plain) / time(observed)).
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/core/thread_pool.hpp"

namespace {

using namespace heed_bench;

// Prefill inputs of length L (causal, f32 K/V, [seq, heads, d]) and their parameters, plain or
// with the LSE + entropy observer on.
struct prefill_problem {
  std::int64_t L;
  aligned_vector<float> q, k, v;
  std::vector<float> o, lse, ent;
  explicit prefill_problem(std::int64_t len)
      : L(len),
        q(random_vector<float>(std::size_t(len) * kHq * kD, 1)),
        k(random_vector<float>(std::size_t(len) * kHkv * kD, 2)),
        v(random_vector<float>(std::size_t(len) * kHkv * kD, 3)),
        o(q.size()),
        lse(std::size_t(len) * kHq),
        ent(std::size_t(len) * kHq) {}
  heed::dense_params params(bool observed) {
    heed::dense_params p;
    p.q = heed::make_view(q.data(), L, kHq, kD);
    p.k = heed::make_view(k.data(), L, kHkv, kD);
    p.v = heed::make_view(v.data(), L, kHkv, kD);
    p.o = heed::make_mutable_view(o.data(), L, kHq, kD);
    p.causal = true;
    if (observed) {
      p.lse = lse.data();
      p.entropy = ent.data();
    }
    return p;
  }
};

void run_prefill(benchmark::State& state, bool observed) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  prefill_problem pb(L);
  const heed::dense_params p = pb.params(observed);
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(p, threads));
  for (auto _ : state) {
    const heed::status s = heed::dense_attention(p, {ws.data(), ws.size()}, ex);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(pb.o.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(causal_flops(L, L, kHq, kD) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_dense_prefill(benchmark::State& state) { run_prefill(state, false); }
void BM_dense_prefill_observed(benchmark::State& state) { run_prefill(state, true); }

// Plain and observed prefill in every iteration (paired_time_ratio): counter observed_speed =
// time(plain) / time(observed), the observer's target being >= 0.97.
void BM_dense_prefill_observed_paired(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(1));
  prefill_problem pb(state.range(0));
  const heed::dense_params plain = pb.params(false), observed = pb.params(true);
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(observed, threads));
  auto step = [&](const heed::dense_params& p) {
    const bool ok = heed::dense_attention(p, {ws.data(), ws.size()}, ex) == heed::status::ok;
    benchmark::DoNotOptimize(pb.o.data());
    return ok;
  };
  state.counters["observed_speed"] =
      1.0 / paired_time_ratio(
                state, [&] { return step(plain); }, [&] { return step(observed); });
}

void run_decode(benchmark::State& state, heed::layout kv_layout) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  auto k = random_vector<heed::f16>(std::size_t(L) * kHkv * kD, 2);
  auto v = random_vector<heed::f16>(std::size_t(L) * kHkv * kD, 3);
  std::vector<float> o(q.size());
  heed::dense_params p;
  p.q = heed::make_view(q.data(), 1, kHq, kD);
  p.k = heed::make_view(k.data(), L, kHkv, kD, kv_layout);
  p.v = heed::make_view(v.data(), L, kHkv, kD, kv_layout);
  p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  p.causal = true;
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(p, threads));
  for (auto _ : state) {
    const heed::status s = heed::dense_attention(p, {ws.data(), ws.size()}, ex);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(o.data());
    benchmark::ClobberMemory();
  }
  const double bytes = 2.0 * double(L) * kHkv * kD * sizeof(heed::f16);
  state.counters["GBps"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// K/V laid out [seq, kv_heads, d] (llama.cpp's cache) and [kv_heads, seq, d].
void BM_dense_decode(benchmark::State& state) { run_decode(state, heed::layout::seq_head_dim); }
void BM_dense_decode_head_major(benchmark::State& state) {
  run_decode(state, heed::layout::head_seq_dim);
}

}  // namespace

BENCHMARK(BM_dense_prefill)
    ->ArgsProduct({{1024, 4096}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
// The prefill that BM_snapkv_window (bench_policy.cpp) is compared with; a few seconds each.
BENCHMARK(BM_dense_prefill)
    ->Args({8192, 1})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dense_prefill_observed)
    ->ArgsProduct({{1024, 4096}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dense_prefill_observed_paired)
    ->ArgsProduct({{4096}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dense_decode)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dense_decode_head_major)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
