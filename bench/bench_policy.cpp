// Policies' costs against the attention they serve (Hq = 32, Hkv = 8, d = 128, f16 cache):
//   BM_cache_decode/L/t       decode over the ragged KV cache, no observer (the baseline); the
//                             cache decode benchmarks have the roofline counter (roofline.hpp)
//   BM_decode_h2o_fused/L/t   the same with H2O's column mass folded in (target: <= 10% slower)
//   BM_decode_h2o_paired/L/t  both of the above in every iteration, each timed on its own:
//                             counter fused_over_plain = the median of the per-iteration time
//                             ratios (the two steps run milliseconds apart, so drifts of the
//                             machine's memory bandwidth, which separate benchmarks see at
//                             different times, cancel out)
//   BM_evict_step/budget/slack  one steady-state decode step's eviction work (H2O scores, top-k
//                             selection, compaction) plus the append of the new token; slack 0
//                             keeps the budget exact (one entry evicted per head per step), slack
//                             64 evicts 64 at once every 64 steps; compare with
//                             BM_cache_decode/budget/1 (target: <= 5%)
//   BM_cache_decode_paged/L/t, BM_evict_step_paged/budget/slack
//                             the same two on a paged cache (512-row pages): eviction compacts
//                             within pages instead of shifting half the head
//   BM_decode_tiered_paired/L/t/low%  decode with H2O over a tiered cache (f16 + q4, low% of the
//                             entries demoted) / over the f16 cache of the same entries, paired
//   BM_append_quant_paired/L/q4  the append (and quantization) of one token to an L-entry q8
//                             (q4 = 0) or q4 (1) cache against that step's attention: counter
//                             append_share (target: <= 0.02 at 4096 keys)
//   BM_snapkv_window/L        SnapKV's observation window (W = 32 queries against all L keys,
//                             from the main pass's LSE, max pooling, group mean); compare with
//                             BM_dense_prefill/automatic/L/1 (target: <= 5%)
//   BM_score_paired/L/which   one decode step (no observer) and one score of every KV head of
//                             the same cache by a policy's score(), in the same iterations:
//                             counter eviction_share = time(score) / (64 * time(decode)), the
//                             score's share of the attention when evicting every 64 steps
//                             (issue 22: <= 0.05 at 4096 keys). which: 0 q_filters (given
//                             filters), 1 leverage (kvpress's 48-column sketch, full rank),
//                             2 the same at rank 16, 3 compactor, 4 q_filters self-calibrated
//                             from 64 queries, 5 leverage with a 16-column sketch, 6 the exact
//                             leverage (no sketch)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <vector>

#include "bench_common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/cache/cache_attention.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/evict.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/leverage.hpp"
#include "heed/policy/q_filters.hpp"
#include "heed/scoring/observation_window.hpp"
#include "roofline.hpp"

namespace {

using namespace heed_bench;

// Rows per page of the paged-cache benchmarks (kv_cache_config::page_rows): 512, or
// HEED_BENCH_PAGE_ROWS.
std::int64_t page_rows_setting() {
  const char* e = std::getenv("HEED_BENCH_PAGE_ROWS");
  const long v = e ? std::atol(e) : 0;
  return v >= 16 ? v : 512;
}
const std::int64_t kPageRows = page_rows_setting();

void fill_cache(heed::kv_cache& c, std::int64_t L, int channels, std::int64_t page_rows = 0,
                heed::dtype type = heed::dtype::f16) {
  heed::kv_cache_config cfg{1, kHkv, kD, type, L + 16, channels};
  cfg.page_rows = page_rows;
  bench_ok(c.init(cfg));
  const std::int64_t chunk = 1024;
  auto k = random_vector<heed::f16>(std::size_t(chunk) * kHkv * kD, 2);
  for (std::int64_t t = 0; t < L; t += chunk) {
    const std::int64_t n = std::min(chunk, L - t);
    const auto view = heed::make_view(k.data(), n, kHkv, kD);
    bench_ok(c.append(0, view, view));
  }
}

void run_cache_decode(benchmark::State& state, bool h2o, std::int64_t page_rows = 0) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  heed::kv_cache c;
  fill_cache(c, L, 1, page_rows);
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  std::vector<float> o(q.size());
  heed::cache_attention_params p;
  p.q = heed::make_view(q.data(), 1, kHq, kD);
  p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  if (h2o) p.accumulate_channel = 0;
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, threads));
  const double bytes = 2.0 * double(L) * kHkv * kD * sizeof(heed::f16);
  set_roofline(state, heed::isa::automatic, ex, {bytes, 4.0 * kHq * kD * double(L)});
  for (auto _ : state) {
    const heed::status s = heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(o.data());
    benchmark::ClobberMemory();
  }
  state.counters["GBps"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_decode_h2o_paired(benchmark::State& state) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  heed::kv_cache c;
  fill_cache(c, L, 1);
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  std::vector<float> o(q.size());
  heed::cache_attention_params plain;
  plain.q = heed::make_view(q.data(), 1, kHq, kD);
  plain.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  heed::cache_attention_params fused = plain;
  fused.accumulate_channel = 0;
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, fused, threads));
  auto step = [&](const heed::cache_attention_params& p) {
    const bool ok = heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex) == heed::status::ok;
    benchmark::DoNotOptimize(o.data());
    return ok;
  };
  state.counters["fused_over_plain"] = paired_time_ratio(
      state, [&] { return step(plain); }, [&] { return step(fused); });
}

// Decode attention over an L-entry quantized cache (q8: range(1) = 0, q4: 1), and the same step
// plus the append of one token (its K and V rows quantized for every KV head; a keep() of the
// first L entries then drops it again without moving a row), in the same iterations: counter
// append_share = time(with append) / time(attention) - 1 (issue 19: <= 0.02 at 4096 keys).
void BM_append_quant_paired(benchmark::State& state) {
  const std::int64_t L = state.range(0);
  const heed::dtype type = state.range(1) ? heed::dtype::q4 : heed::dtype::q8;
  heed::kv_cache c;
  fill_cache(c, L, 0, 0, type);
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  auto kv = random_vector<float>(std::size_t(kHkv) * kD, 4);
  const auto token = heed::make_view(kv.data(), 1, kHkv, kD);
  std::vector<float> o(q.size());
  heed::cache_attention_params p;
  p.q = heed::make_view(q.data(), 1, kHq, kD);
  p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  p.causal = false;
  heed::thread_pool_executor ex(1);
  std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, 1));
  std::vector<std::int32_t> keep(static_cast<std::size_t>(L));
  for (std::int64_t j = 0; j < L; ++j) keep[std::size_t(j)] = std::int32_t(j);
  auto attend = [&] {
    const bool ok = heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex) == heed::status::ok;
    benchmark::DoNotOptimize(o.data());
    return ok;
  };
  auto append_and_attend = [&] {
    bool ok = c.append(0, token, token) == heed::status::ok;
    for (int h = 0; h < kHkv && ok; ++h) ok = c.keep(0, h, keep.data(), L) == heed::status::ok;
    return ok && attend();
  };
  state.counters["append_share"] = paired_time_ratio(state, attend, append_and_attend) - 1.0;
}

// Decode with H2O's column mass over an L-entry f16 cache and over a tiered one (f16, demoted to
// q4) holding the same entries with range(2) percent of them demoted (spread over the head), in
// the same iterations: counter tiered_over_f16 = time(tiered) / time(f16). The tiered head runs
// the kernel once per tier and merges them (and rescales the tap's probabilities).
void BM_decode_tiered_paired(benchmark::State& state) {
  const std::int64_t L = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const std::int64_t low_percent = state.range(2);
  heed::kv_cache plain, tiered;
  fill_cache(plain, L, 1);
  {
    heed::kv_cache_config cfg{1, kHkv, kD, heed::dtype::f16, L + 16, 1};
    cfg.tiered = true;
    cfg.low_type = heed::dtype::q4;
    bench_ok(tiered.init(cfg));
    const auto k = random_vector<heed::f16>(std::size_t(L) * kHkv * kD, 2);
    const auto view = heed::make_view(k.data(), L, kHkv, kD);
    bench_ok(tiered.append(0, view, view));
    std::vector<std::int32_t> idx;
    for (std::int64_t j = 0; j < L; ++j)
      if ((j * low_percent) / 100 != ((j + 1) * low_percent) / 100) idx.push_back(std::int32_t(j));
    for (int h = 0; h < kHkv; ++h)
      bench_ok(tiered.demote(0, h, idx.data(), std::int64_t(idx.size())));
  }
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  std::vector<float> o(q.size());
  heed::cache_attention_params p;
  p.q = heed::make_view(q.data(), 1, kHq, kD);
  p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  p.causal = false;
  p.accumulate_channel = 0;
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(std::max(heed::cache_attention_workspace_size(plain, 0, p, threads),
                                heed::cache_attention_workspace_size(tiered, 0, p, threads)));
  auto step = [&](heed::kv_cache& c) {
    const bool ok = heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex) == heed::status::ok;
    benchmark::DoNotOptimize(o.data());
    return ok;
  };
  state.counters["tiered_over_f16"] = paired_time_ratio(
      state, [&] { return step(plain); }, [&] { return step(tiered); });
  state.counters["bytes_ratio"] = double(tiered.bytes_used()) / double(plain.bytes_used());
}

void BM_cache_decode(benchmark::State& state) { run_cache_decode(state, false); }
void BM_decode_h2o_fused(benchmark::State& state) { run_cache_decode(state, true); }
void BM_cache_decode_paged(benchmark::State& state) { run_cache_decode(state, false, kPageRows); }

// Arguments: budget, slack. slack 0 evicts one entry per head every step (exact budget); slack s
// lets the cache grow to budget + s and then evicts s entries per head at once (periodic), so
// one compaction pass serves s steps. Each iteration is one decode step.
void run_evict_step(benchmark::State& state, std::int64_t page_rows) {
  const std::int64_t budget = state.range(0), slack = state.range(1);
  heed::kv_cache c;
  fill_cache(c, budget, 1, page_rows);
  bench_ok(c.shrink_to_fit(slack + 1));  // the reserve fill_cache made is not the point here
  auto scores = random_vector<float>(std::size_t(budget) + 1, 5);
  for (int h = 0; h < kHkv; ++h)
    for (std::int64_t j = 0; j < budget; ++j) c.scores(0, h, 0)[j] = std::abs(scores[j]);
  auto kt = random_vector<heed::f16>(std::size_t(kHkv) * kD, 3);
  const auto tok = heed::make_view(kt.data(), 1, kHkv, kD);
  heed::h2o_policy policy;
  heed::eviction_scratch scratch;
  std::vector<std::int64_t> target(kHkv, slack > 0 ? budget : budget - 1);
  heed::policy_input in;
  in.cache = &c;
  in.q_heads = kHq;
  in.budget = budget;
  std::int64_t step = 0;
  for (auto _ : state) {
    // Steady state: evict (every step, or once the slack is used up), append the new token.
    heed::status s = heed::status::ok;
    if (slack == 0 || c.length(0, 0) >= budget + slack)
      s = heed::evict_layer(c, policy, in, target.data(), scratch);
    if (s == heed::status::ok) s = c.append(0, tok, tok);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    // The new token's score varies so the evicted entry moves around.
    for (int h = 0; h < kHkv; ++h)
      c.scores(0, h, 0)[c.length(0, h) - 1] = std::abs(scores[step % budget]);
    ++step;
  }
}

void BM_evict_step(benchmark::State& state) { run_evict_step(state, 0); }
void BM_evict_step_paged(benchmark::State& state) { run_evict_step(state, kPageRows); }

void BM_snapkv_window(benchmark::State& state) {
  const std::int64_t L = state.range(0), W = 32;
  auto q = random_vector<float>(std::size_t(W) * kHq * kD, 1);
  auto k = random_vector<float>(std::size_t(L) * kHkv * kD, 2);
  std::vector<float> lse(std::size_t(kHq) * W, 0.f), out(std::size_t(kHkv) * L);
  // The main pass's LSE of the window rows.
  {
    std::vector<float> o(q.size());
    heed::dense_params p;
    p.q = heed::make_view(q.data(), W, kHq, kD);
    p.k = heed::make_view(k.data(), L, kHkv, kD);
    p.v = p.k;
    p.o = heed::make_mutable_view(o.data(), W, kHq, kD);
    p.lse = lse.data();
    std::vector<char> ws(heed::dense_workspace_size(p, 1));
    bench_ok(heed::dense_attention(p, {ws.data(), ws.size()}));
  }
  heed::observation_window_options opt;
  opt.pool = heed::pool_kind::max;
  std::vector<unsigned char> ws(heed::observation_window_workspace_size(L, opt));
  heed::observation_window_outputs outs;
  outs.window = out.data();
  for (auto _ : state) {
    const heed::status s = heed::observation_window_scores(
        heed::make_view(q.data(), W, kHq, kD), heed::make_view(k.data(), L, kHkv, kD), lse.data(),
        W, opt, outs, {ws.data(), ws.size()});
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(out.data());
  }
}

void BM_score_paired(benchmark::State& state) {
  const std::int64_t L = state.range(0);
  const int which = static_cast<int>(state.range(1));
  heed::kv_cache c;
  fill_cache(c, L, 1);
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  std::vector<float> o(q.size());
  heed::cache_attention_params p;
  p.q = heed::make_view(q.data(), 1, kHq, kD);
  p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  heed::thread_pool_executor ex(1);
  std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, 1));
  heed::any_policy policy;
  if (which == 0 || which == 4) {
    heed::q_filters_policy f;
    if (which == 0) {
      const auto r = random_vector<float>(std::size_t(kHkv) * kD, 4);
      f.filters.assign(r.begin(), r.end());
    }
    policy = f;
  } else if (which == 3) {
    policy = heed::compactor_policy{};
  } else {
    heed::leverage_policy lp;
    lp.options.rank = which == 2 ? 16 : 0;
    if (which == 5) lp.options.sketch = 16;
    if (which == 6) lp.options.sketch = 0;
    policy = lp;
  }
  const std::int64_t W = 64;  // the self-calibrating Q-Filters' query window
  auto window = random_vector<float>(std::size_t(W) * kHq * kD, 5);
  heed::policy_input in;
  in.cache = &c;
  in.q_heads = kHq;
  in.budget = L / 2;
  if (which == 4) in.queries = heed::make_view(window.data(), W, kHq, kD);
  std::vector<char> sws(policy.score_workspace_size(in) + 1);
  std::vector<float> scores(static_cast<std::size_t>(L));
  auto decode = [&] {
    const bool ok = heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex) == heed::status::ok;
    benchmark::DoNotOptimize(o.data());
    return ok;
  };
  auto score = [&] {
    for (int h = 0; h < kHkv; ++h)
      if (policy.score(in, h, scores.data(), {sws.data(), sws.size()}) != heed::status::ok)
        return false;
    benchmark::DoNotOptimize(scores.data());
    return true;
  };
  state.counters["eviction_share"] = paired_time_ratio(state, decode, score) / 64.0;
}

}  // namespace

BENCHMARK(BM_score_paired)
    ->ArgsProduct({{4096}, {0, 1, 2, 3, 4, 5, 6}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_snapkv_window)->Arg(8192)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cache_decode)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_h2o_fused)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_append_quant_paired)
    ->ArgsProduct({{4096}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_h2o_paired)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_tiered_paired)
    ->ArgsProduct({{4096, 32768}, {1, 2}, {50, 90}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_evict_step)
    ->Args({1024, 0})
    ->Args({4096, 0})
    ->Args({4096, 64})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cache_decode_paged)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_evict_step_paged)
    ->Args({4096, 0})
    ->Args({4096, 64})
    ->Args({32768, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
