// Sparse prefill against the dense kernel on the same inputs, in the same run.
//
// Inputs have the structure that makes sparse prefill worth it: RoPE-rotated shared content
// (attention peaks at the diagonal and decays with distance), four sink tokens, and noise; Hq 2,
// Hkv 1, head_dim 128, f32 K/V, causal, 2 threads. The dense baseline for each L is timed once
// per process (median of 3 runs) and its LSE kept, so every sparse benchmark reports:
//   speedup_vs_dense  dense median time / this benchmark's median iteration time
//   recall            mean over rows and heads of exp(LSE_sparse - LSE_dense): the fraction of
//                     the dense attention mass the pattern keeps
//   density           fraction of the causal (query, key) pairs the pattern computes
//   rel_error         ||O - O_dense|| / ||O_dense||
// Benchmarks whose name ends in the estimator's name time the estimator and the kernel together.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "bench_common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/sparse/delta_correction.hpp"
#include "heed/sparse/flexprefill.hpp"
#include "heed/sparse/minference.hpp"
#include "heed/sparse/xattention.hpp"

namespace {

constexpr int kHq = 2, kHkv = 1, kD = 128, kThreads = 2;

struct problem {
  std::int64_t L;
  std::vector<float> q, k, v, o, lse;
  heed::dense_params p;
  double dense_seconds = 0;
  std::vector<float> dense_lse, dense_o;
};

// q_i = noise + R(i) a + s, k_j = noise + R(j) a (+ s for sinks): R rotates channel pairs
// (64 + 2f, 65 + 2f) by angle pos * 10000^(-f / 32) like RoPE, a has amplitude 2 there, and s
// (amplitude 6 on channel 0) makes keys 0..3 sinks. Noise: N(0, 0.5) on channels 1..63.
void fill(problem& pr) {
  const std::int64_t L = pr.L;
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.f, 1.f), noise(0.f, 0.5f);
  pr.q.assign(std::size_t(L * kHq * kD), 0.f);
  pr.k.assign(std::size_t(L * kHkv * kD), 0.f);
  pr.v.resize(pr.k.size());
  for (float& x : pr.v) x = nd(rng);
  auto row = [&](float* x, std::int64_t pos, bool sink, bool query) {
    for (int c = 1; c < 64; ++c) x[c] = noise(rng);
    x[0] = query || sink ? 6.f : 0.f;
    for (int f = 0; f < 32; ++f) {
      const double w = std::pow(10000.0, -double(f) / 32.0), ang = w * double(pos);
      x[64 + 2 * f] = 2.f * float(std::cos(ang));
      x[65 + 2 * f] = 2.f * float(std::sin(ang));
    }
  };
  for (std::int64_t i = 0; i < L; ++i) {
    for (int h = 0; h < kHq; ++h) row(&pr.q[std::size_t((i * kHq + h) * kD)], i, false, true);
    for (int h = 0; h < kHkv; ++h) row(&pr.k[std::size_t((i * kHkv + h) * kD)], i, i < 4, false);
  }
  pr.o.resize(pr.q.size());
  pr.lse.resize(std::size_t(L * kHq));
  pr.p.q = heed::make_view(pr.q.data(), L, kHq, kD);
  pr.p.k = heed::make_view(pr.k.data(), L, kHkv, kD);
  pr.p.v = heed::make_view(pr.v.data(), L, kHkv, kD);
  pr.p.o = heed::make_mutable_view(pr.o.data(), L, kHq, kD);
  pr.p.lse = pr.lse.data();
}

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

heed::thread_pool_executor& pool() {
  static heed::thread_pool_executor ex(kThreads);
  return ex;
}

// The problem of length L with its dense baseline (built on first use).
problem& get(std::int64_t L) {
  static std::map<std::int64_t, problem> cache;
  auto it = cache.find(L);
  if (it != cache.end()) return it->second;
  problem& pr = cache[L];
  pr.L = L;
  fill(pr);
  std::vector<char> ws(heed::dense_workspace_size(pr.p, kThreads));
  std::vector<double> t;
  for (int r = 0; r < 3; ++r)
    t.push_back(seconds_of([&] {
      heed_bench::bench_ok(heed::dense_attention(pr.p, {ws.data(), ws.size()}, pool()));
    }));
  std::sort(t.begin(), t.end());
  pr.dense_seconds = t[1];
  pr.dense_lse = pr.lse;
  pr.dense_o = pr.o;
  return pr;
}

// ||O - O_dense|| / ||O_dense|| over the whole output.
double rel_error(const problem& pr) {
  double e = 0, n = 0;
  for (std::size_t i = 0; i < pr.o.size(); ++i) {
    const double x = double(pr.o[i]) - double(pr.dense_o[i]);
    e += x * x;
    n += double(pr.dense_o[i]) * double(pr.dense_o[i]);
  }
  return std::sqrt(e / n);
}

double recall(const problem& pr) {
  double r = 0;
  for (std::size_t i = 0; i < pr.lse.size(); ++i)
    r += std::exp(double(pr.lse[i]) - double(pr.dense_lse[i]));
  return r / double(pr.lse.size());
}

// Runs `step` per iteration; reports the counters against the dense baseline.
template <class Step>
void measure(benchmark::State& state, problem& pr, double density, Step&& step) {
  std::vector<double> t;
  for (auto _ : state) {
    const double s = seconds_of([&] {
      if (step() != heed::status::ok) state.SkipWithError("sparse step failed");
    });
    state.SetIterationTime(s);
    t.push_back(s);
  }
  std::sort(t.begin(), t.end());
  state.counters["speedup_vs_dense"] = pr.dense_seconds / t[t.size() / 2];
  state.counters["recall"] = recall(pr);
  state.counters["rel_error"] = rel_error(pr);
  state.counters["density"] = density;
}

heed::status run_blocks(problem& pr, const heed::block_pattern& pat, std::vector<char>& ws) {
  ws.resize(heed::block_sparse_workspace_size(pr.p, pat.layout(), kThreads));
  return heed::block_sparse_attention(pr.p, pat.layout(), {ws.data(), ws.size()}, pool());
}

heed::pooled_block_options pooled_opts(std::int64_t percent) {
  heed::pooled_block_options o;
  o.block_q = o.block_k = 64;
  o.density = double(percent) / 100.0;
  return o;
}

void BM_dense_prefill_sparse_inputs(benchmark::State& state) {
  problem& pr = get(state.range(0));
  std::vector<char> ws(heed::dense_workspace_size(pr.p, kThreads));
  measure(state, pr, 1.0, [&] {
    return heed::dense_attention(pr.p, {ws.data(), ws.size()}, pool());
  });
}

// Kernel only: the pattern (pooled-block top density% per query block) is built beforehand.
void BM_block_sparse_prefill(benchmark::State& state) {
  problem& pr = get(state.range(0));
  heed::block_pattern pat;
  heed::estimate_scratch sc;
  heed_bench::bench_ok(heed::pooled_block_estimate(pr.p.q, pr.p.k, -1, pooled_opts(state.range(1)),
                                                   pat, sc, pool()));
  std::vector<char> ws;
  measure(state, pr, heed::block_density(pat, true), [&] { return run_blocks(pr, pat, ws); });
}

void BM_block_sparse_prefill_pooled(benchmark::State& state) {
  problem& pr = get(state.range(0));
  heed::block_pattern pat;
  heed::estimate_scratch sc;
  std::vector<char> ws;
  measure(state, pr, 0.0, [&] {
    const heed::status s = heed::pooled_block_estimate(
        pr.p.q, pr.p.k, -1, pooled_opts(state.range(1)), pat, sc, pool());
    return s != heed::status::ok ? s : run_blocks(pr, pat, ws);
  });
  state.counters["density"] = heed::block_density(pat, true);
}

// Pooled blocks (density%) plus delta correction with gamma 64.
void BM_block_sparse_prefill_pooled_delta(benchmark::State& state) {
  problem& pr = get(state.range(0));
  heed::block_pattern pat;
  heed::estimate_scratch sc;
  heed::delta_scratch dsc;
  std::vector<char> ws;
  measure(state, pr, 0.0, [&] {
    heed::status s = heed::pooled_block_estimate(pr.p.q, pr.p.k, -1, pooled_opts(state.range(1)),
                                                 pat, sc, pool());
    if (s == heed::status::ok) s = run_blocks(pr, pat, ws);
    return s != heed::status::ok ? s : heed::delta_correct(pr.p, 64, dsc, pool());
  });
  state.counters["density"] = heed::block_density(pat, true);
}

// MInference vertical-slash: vertical_size = slash_size = density * L / 4, so a row keeps about
// density * (L / 2) keys, the mean causal row length times density.
void BM_block_sparse_prefill_minference(benchmark::State& state) {
  problem& pr = get(state.range(0));
  heed::minference_vs_options opt;
  opt.vertical_size = opt.slash_size = state.range(0) * state.range(1) / 400;
  heed::vs_pattern pat;
  heed::estimate_scratch sc;
  std::vector<char> ws;
  measure(state, pr, double(state.range(1)) / 100.0, [&] {
    heed::status s = heed::minference_vertical_slash(pr.p.q, pr.p.k, -1, opt, pat, sc, pool());
    if (s != heed::status::ok) return s;
    ws.resize(heed::vertical_slash_workspace_size(pr.p, pat.layout(), kThreads));
    return heed::vertical_slash_attention(pr.p, pat.layout(), {ws.data(), ws.size()}, pool());
  });
}

// FlexPrefill with gamma = range(1) / 100, tau 0.1, block 128, min budget 512.
void BM_block_sparse_prefill_flexprefill(benchmark::State& state) {
  problem& pr = get(state.range(0));
  heed::flexprefill_options opt;
  opt.gamma = double(state.range(1)) / 100.0;
  heed::block_pattern pat;
  heed::flexprefill_report rep;
  heed::estimate_scratch sc;
  std::vector<char> ws;
  measure(state, pr, 0.0, [&] {
    const heed::status s =
        heed::flexprefill_estimate(pr.p.q, pr.p.k, -1, opt, pat, rep, sc, pool());
    return s != heed::status::ok ? s : run_blocks(pr, pat, ws);
  });
  state.counters["density"] = heed::block_density(pat, true);
  double qa = 0;
  for (auto k : rep.kind) qa += k == heed::flex_kind::query_aware ? 1.0 : 0.0;
  state.counters["query_aware_heads"] = qa;
}

// XAttention with threshold = range(1) / 100, stride 8, block 128.
void BM_block_sparse_prefill_xattention(benchmark::State& state) {
  problem& pr = get(state.range(0));
  heed::xattention_options opt;
  opt.threshold = double(state.range(1)) / 100.0;
  heed::block_pattern pat;
  heed::estimate_scratch sc;
  std::vector<char> ws;
  measure(state, pr, 0.0, [&] {
    const heed::status s =
        heed::xattention_estimate(pr.p.q, pr.p.k, -1, opt, pat, nullptr, sc, pool());
    return s != heed::status::ok ? s : run_blocks(pr, pat, ws);
  });
  state.counters["density"] = heed::block_density(pat, true);
}

}  // namespace

BENCHMARK(BM_dense_prefill_sparse_inputs)
    ->Arg(8192)
    ->Arg(32768)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_prefill)
    ->ArgsProduct({{8192, 32768}, {10, 25, 50}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_prefill_pooled)
    ->ArgsProduct({{8192, 32768}, {10, 25, 50}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_prefill_pooled_delta)
    ->ArgsProduct({{8192, 32768}, {10}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_prefill_minference)
    ->ArgsProduct({{8192, 32768}, {10, 25, 50}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_prefill_flexprefill)
    ->ArgsProduct({{8192, 32768}, {90}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_prefill_xattention)
    ->ArgsProduct({{8192, 32768}, {90}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
