// The scoring cost of issue 22's wrappers against one decode step's attention (Hq = 32, Hkv = 8,
// d = 128, f16 cache, 1 thread):
//   BM_wrapper_score_paired/L/kind  one eviction's scoring of a layer (every KV head) by the
//                             wrapper around an inner policy that only copies stored scores, and
//                             one decode step over the same L-entry cache, in the same iterations:
//                             counter share_at_64 = time(scoring) / (64 * time(decode step)), the
//                             share of attention time the wrapper adds when evicting every 64 steps
//                             (issue 22's target: <= 0.05 at 4096 keys).
//     kind 0: ChunkKV (chunked, chunk 10)       kind 1: CriticalKV without W_o (||v||_1)
//     kind 2: CriticalAdaKV (its two rankings)  kind 3: SimLayerKV's lazy test (n_last 1, every
//             query head over every key of the layer; made once per eviction, remembered for the
//             other heads)
// CriticalKV with an output projection costs O(L G d hidden) per KV head (every value projected),
// hidden / (4 d) decode steps' worth of multiply-adds per query head: it is not benchmarked here.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "bench_common.hpp"
#include "heed/cache/cache_attention.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/policy/chunkkv.hpp"
#include "heed/policy/critical_kv.hpp"
#include "heed/policy/simlayer_kv.hpp"

namespace {

using namespace heed_bench;

// The inner policy: the stored channel-0 scores.
struct stored_scores : heed::policy_base<stored_scores> {
  const char* name() const noexcept { return "stored"; }
  heed::status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    std::copy(in.channel(head, 0), in.channel(head, 0) + in.length(head), out);
    return heed::status::ok;
  }
};

// One eviction's scoring; each call is a new step (SimLayerKV remembers its decision for the
// heads of one eviction only).
template <class Policy>
bool score_layer(Policy& p, heed::policy_input& in, std::vector<float>& out,
                 std::vector<unsigned char>& ws) {
  ++in.step;
  for (int h = 0; h < kHkv; ++h) {
    benchmark::DoNotOptimize(p.head_budget(in, h, in.budget));
    if (p.score(in, h, out.data(), {ws.data(), ws.size()}) != heed::status::ok) return false;
  }
  benchmark::DoNotOptimize(out.data());
  return true;
}

template <class Policy>
void run_paired(benchmark::State& state, Policy p, bool queries) {
  const std::int64_t L = state.range(0);
  heed::kv_cache c;
  heed::kv_cache_config cfg{1, kHkv, kD, heed::dtype::f16, L + 16, 1};
  bench_ok(c.init(cfg));
  auto kv = random_vector<heed::f16>(std::size_t(L) * kHkv * kD, 2);
  bench_ok(c.append(0, heed::make_view(kv.data(), L, kHkv, kD),
                    heed::make_view(kv.data(), L, kHkv, kD)));
  auto sc = random_vector<float>(std::size_t(L), 5);
  for (int h = 0; h < kHkv; ++h)
    for (std::int64_t j = 0; j < L; ++j) c.scores(0, h, 0)[j] = std::abs(sc[std::size_t(j)]);
  auto q = random_vector<float>(std::size_t(kHq) * kD, 1);
  std::vector<float> o(q.size());
  heed::cache_attention_params ap;
  ap.q = heed::make_view(q.data(), 1, kHq, kD);
  ap.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
  heed::thread_pool_executor ex(1);
  std::vector<char> aws(heed::cache_attention_workspace_size(c, 0, ap, 1));
  heed::policy_input in;
  in.cache = &c;
  in.q_heads = kHq;
  in.budget = L / 2;
  in.step = L;
  if (queries) in.queries = heed::make_view(q.data(), 1, kHq, kD);
  std::vector<float> out(static_cast<std::size_t>(L));
  std::vector<unsigned char> ws(p.score_workspace_size(in));
  const double ratio = paired_time_ratio(
      state,
      [&] {
        const bool ok =
            heed::cache_attention(c, 0, ap, {aws.data(), aws.size()}, ex) == heed::status::ok;
        benchmark::DoNotOptimize(o.data());
        return ok;
      },
      [&] { return score_layer(p, in, out, ws); });
  state.counters["share_at_64"] = ratio / 64.0;
}

void BM_wrapper_score_paired(benchmark::State& state) {
  switch (state.range(1)) {
    case 0:
      run_paired(state, heed::chunked(stored_scores{}), false);
      break;
    case 1:
      run_paired(state, heed::critical(stored_scores{}), false);
      break;
    case 2:
      run_paired(state, heed::critical_adaptive(stored_scores{}), false);
      break;
    default: {
      heed::simlayer_options o;
      o.lazy_threshold = -1.f;  // always lazy: the test in head_budget() and in score()
      run_paired(state, heed::simlayer(stored_scores{}, o), true);
    }
  }
}

}  // namespace

BENCHMARK(BM_wrapper_score_paired)
    ->ArgsProduct({{4096}, {0, 1, 2, 3}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
