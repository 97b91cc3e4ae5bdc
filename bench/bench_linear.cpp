// Linear attention against the dense flash kernel, Hq 32, Hkv 8, head_dim 128, f32 K/V, causal,
// 1 thread, feature map elu + 1, chunk 64:
//   BM_linear_prefill/<L>   counter speedup_vs_dense = dense prefill time / linear prefill time,
//                           the dense time measured in the same process on one KV group (4
//                           query heads, 1 KV head, viewed inside the full-size tensors with
//                           their strides) and multiplied by 8 (heads are independent tasks, so
//                           the dense time is linear in them; this keeps the 32k baseline at
//                           ~7 s instead of a minute), median of 3 (1 at 32k);
//   BM_linear_decode        one recurrent step over the state (S is 128 x 128 per KV head):
//                           counter tok_per_s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>

#include "bench_common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/linear/linear_dispatch.hpp"

namespace {

using namespace heed_bench;

double seconds_of_dense(std::int64_t L) {
  static std::map<std::int64_t, double> cache;
  auto it = cache.find(L);
  if (it != cache.end()) return it->second;
  // Full-size tensors, [L, heads, d]; the kernel sees KV head 0 and its query heads through
  // views with the full strides, so its memory traffic per head is that of the full problem.
  const int hq = kHq / kHkv, hkv = 1;
  auto q = random_vector<float>(std::size_t(L) * kHq * kD, 11);
  auto k = random_vector<float>(std::size_t(L) * kHkv * kD, 12);
  auto v = random_vector<float>(std::size_t(L) * kHkv * kD, 13);
  std::vector<float> o(q.size());
  heed::dense_params p;
  p.q = heed::make_view(q.data(), L, kHq, kD);
  p.k = heed::make_view(k.data(), L, kHkv, kD);
  p.v = heed::make_view(v.data(), L, kHkv, kD);
  p.o = heed::make_mutable_view(o.data(), L, kHq, kD);
  p.q.heads = p.o.heads = hq;
  p.k.heads = p.v.heads = hkv;
  std::vector<char> ws(heed::dense_workspace_size(p, 1));
  std::vector<double> t;
  const int reps = L > 8192 ? 1 : 3;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    bench_ok(heed::dense_attention(p, {ws.data(), ws.size()}));
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return cache[L] = t[t.size() / 2] * double(kHkv);
}

struct linear_problem {
  aligned_vector<float> q, k, v, o, state;
  heed::linear_params p;
  std::vector<char> ws;

  linear_problem(std::int64_t L, bool with_state) {
    q = random_vector<float>(std::size_t(L) * kHq * kD, 21);
    k = random_vector<float>(std::size_t(L) * kHkv * kD, 22);
    v = random_vector<float>(std::size_t(L) * kHkv * kD, 23);
    o.resize(q.size());
    p.q = heed::make_view(q.data(), L, kHq, kD);
    p.k = heed::make_view(k.data(), L, kHkv, kD);
    p.v = heed::make_view(v.data(), L, kHkv, kD);
    p.o = heed::make_mutable_view(o.data(), L, kHq, kD);
    if (with_state) {
      state.assign(std::size_t(kHkv * heed::linear_state_floats(kD, kD)), 0.f);
      p.state = state.data();
      p.state_in = true;
    }
    ws.resize(heed::linear_workspace_size(p, {}, 1));
  }
};

void BM_linear_prefill(benchmark::State& state) {
  const std::int64_t L = state.range(0);
  linear_problem lp(L, false);
  std::vector<double> t;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const heed::status s = heed::linear_attention(lp.p, {}, {lp.ws.data(), lp.ws.size()});
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::ClobberMemory();
  }
  std::sort(t.begin(), t.end());
  state.counters["speedup_vs_dense"] = seconds_of_dense(L) / t[t.size() / 2];
  state.counters["tok_per_s"] =
      benchmark::Counter(double(L), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_linear_decode(benchmark::State& state) {
  linear_problem lp(1, true);
  for (auto _ : state) {
    const heed::status s = heed::linear_attention(lp.p, {}, {lp.ws.data(), lp.ws.size()});
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::ClobberMemory();
  }
  state.counters["tok_per_s"] =
      benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_linear_prefill)->Arg(4096)->Arg(32768)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_linear_decode)->UseRealTime()->Unit(benchmark::kMicrosecond);
