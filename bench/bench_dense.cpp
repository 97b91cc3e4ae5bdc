// heed's dense kernel, per ISA the CPU runs: prefill (f32 K/V, with and without the LSE + entropy
// observer) and decode (one query token; f16, bf16 or f32 K/V, GQA 1-8, both layouts).
// Names: BM_dense_prefill/<isa>/<L>/<threads>, BM_dense_decode/<isa>/<layout>/<dtype>/g<G>/<L>/
// <threads> (layout seq_head = [seq, heads, d], llama.cpp's cache; head_seq = [heads, seq, d],
// heed's). Counters: GFLOPS (useful flops) or GBps (K and V bytes), and roofline (roofline.hpp);
// BM_dense_prefill_observed_paired: observed_speed, plain and observed timed in the same
// iterations (time(plain) / time(observed)).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "roofline.hpp"

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

void run_prefill(benchmark::State& state, heed::isa isa, bool observed) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  prefill_problem pb(L);
  const heed::dense_params p = pb.params(observed);
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(p, threads, isa));
  const double flops = causal_flops(L, L, kHq, kD);
  set_roofline(state, isa, ex, {0.0, flops});
  for (auto _ : state) {
    const heed::status s = heed::dense_attention(p, {ws.data(), ws.size()}, ex, isa);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(pb.o.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Plain and observed prefill in every iteration (paired_time_ratio): counter observed_speed =
// time(plain) / time(observed), the observer's target being >= 0.97.
void run_prefill_observed_paired(benchmark::State& state, heed::isa isa) {
  const int threads = static_cast<int>(state.range(1));
  prefill_problem pb(state.range(0));
  const heed::dense_params plain = pb.params(false), observed = pb.params(true);
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(observed, threads, isa));
  auto step = [&](const heed::dense_params& p) {
    const bool ok = heed::dense_attention(p, {ws.data(), ws.size()}, ex, isa) == heed::status::ok;
    benchmark::DoNotOptimize(pb.o.data());
    return ok;
  };
  state.counters["observed_speed"] =
      1.0 / paired_time_ratio(
                state, [&] { return step(plain); }, [&] { return step(observed); });
}

struct decode_case {
  heed::layout kv_layout;
  heed::dtype kv_type;
  int group;  // query heads per KV head (Hq = 32)
};

template <class KV>
void run_decode_t(benchmark::State& state, heed::isa isa, const decode_case& c) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const int hkv = kHq / c.group;
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  const auto& k = shared_random_vector<KV>(std::size_t(L) * hkv * kD, 2);
  const auto& v = shared_random_vector<KV>(std::size_t(L) * hkv * kD, 3);
  std::vector<float> o(q.size());
  heed::dense_params p;
  p.q = heed::make_view(q.data(), 1, kHq, kD);
  p.k = heed::make_view(k.data(), L, hkv, kD, c.kv_layout);
  p.v = heed::make_view(v.data(), L, hkv, kD, c.kv_layout);
  p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  p.causal = true;
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(p, threads, isa));
  const double bytes = 2.0 * double(L) * hkv * kD * sizeof(KV);
  set_roofline(state, isa, ex, {bytes, 4.0 * kHq * kD * double(L)});
  for (auto _ : state) {
    const heed::status s = heed::dense_attention(p, {ws.data(), ws.size()}, ex, isa);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(o.data());
    benchmark::ClobberMemory();
  }
  state.counters["GBps"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void run_decode(benchmark::State& state, heed::isa isa, decode_case c) {
  switch (c.kv_type) {
    case heed::dtype::f16:
      return run_decode_t<heed::f16>(state, isa, c);
    case heed::dtype::bf16:
      return run_decode_t<heed::bf16>(state, isa, c);
    default:
      return run_decode_t<float>(state, isa, c);
  }
}

benchmark::internal::Benchmark* timed(benchmark::internal::Benchmark* b) {
  return b->UseRealTime()->Unit(benchmark::kMillisecond);
}

// Every benchmark once per ISA the CPU runs. The main decode set is f16 K/V, GQA 4 (the issue's
// Hq 32, Hkv 8), 4096 keys (in cache) and 32768 (from DRAM); the matrix adds f32 and bf16 and
// GQA 1, 2, 8 at 32768 keys (SSE2, the fallback ISA, has the main set only).
const int registered = [] {
  for (heed::isa isa : available_isas()) {
    const std::string tag = std::string("/") + heed::isa_name(isa);
    timed(benchmark::RegisterBenchmark(("BM_dense_prefill" + tag).c_str(),
                                       [isa](benchmark::State& s) { run_prefill(s, isa, false); }))
        ->ArgsProduct({{1024, 4096}, {1, 2}});
    timed(benchmark::RegisterBenchmark(("BM_dense_prefill_observed" + tag).c_str(),
                                       [isa](benchmark::State& s) { run_prefill(s, isa, true); }))
        ->ArgsProduct({{1024, 4096}, {1, 2}});
    timed(benchmark::RegisterBenchmark(
              ("BM_dense_prefill_observed_paired" + tag).c_str(),
              [isa](benchmark::State& s) { run_prefill_observed_paired(s, isa); }))
        ->ArgsProduct({{4096}, {1, 2}});
    for (heed::layout lay : {heed::layout::seq_head_dim, heed::layout::head_seq_dim}) {
      const std::string ltag = lay == heed::layout::seq_head_dim ? "/seq_head" : "/head_seq";
      auto add = [&](heed::dtype t, int g, std::vector<std::int64_t> lens,
                     std::vector<std::int64_t> threads) {
        const std::string name =
            "BM_dense_decode" + tag + ltag + "/" + heed::dtype_name(t) + "/g" + std::to_string(g);
        const decode_case c{lay, t, g};
        timed(benchmark::RegisterBenchmark(name.c_str(), [isa, c](benchmark::State& s) {
          run_decode(s, isa, c);
        }))->ArgsProduct({lens, threads});
      };
      add(heed::dtype::f16, 4, {4096, 32768}, {1, 2});
      if (isa == heed::isa::sse2) continue;
      add(heed::dtype::f32, 4, {32768}, {1, 2});
      add(heed::dtype::bf16, 4, {32768}, {1, 2});
      for (int g : {1, 2, 8}) add(heed::dtype::f16, g, {32768}, {1, 2});
    }
  }
  // The prefill that BM_snapkv_window (bench_policy.cpp) is compared with; a few seconds.
  timed(benchmark::RegisterBenchmark(
            "BM_dense_prefill/automatic",
            [](benchmark::State& s) { run_prefill(s, heed::isa::automatic, false); }))
      ->Args({8192, 1})
      ->Iterations(1);
  return 0;
}();

}  // namespace
