// heed's dense kernel, per ISA the CPU runs: prefill (f32 K/V, with and without the LSE + entropy
// observer) and decode (one query token; f16, bf16, f32, q8 or q4 K/V, GQA 1-8, both layouts).
// Names: BM_dense_prefill/<isa>/<L>/<threads>, BM_dense_decode/<isa>/<layout>/<dtype>/g<G>/<L>/
// <threads> (layout seq_head = [seq, heads, d], llama.cpp's cache; head_seq = [heads, seq, d],
// heed's). Counters: GFLOPS (useful flops) or GBps (K and V bytes), and roofline (roofline.hpp);
// BM_prefill_quant_paired/<isa>/<q8|q4>/<L>/<threads> and BM_decode_quant_paired/...:
// quant_over_f16, the quantized and the f16 step timed in the same iterations;
// BM_decode_integer_paired/avx512/<layout>/q8/g<G>/<L>/<threads> (CPUs with AVX-512 VNNI):
// integer_over_float, q8 decode with the integer and with the f32 logits.
// BM_dense_prefill_observed_paired: observed_speed, plain and observed timed in the same
// iterations (time(plain) / time(observed)).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/quant/quantize.hpp"
#include "heed/simd/integer_dot.hpp"
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

// Rows of kD random normal values quantized to q8 / q4 (default group), kept for the process
// like shared_random_vector (one buffer per (format, seed), the last size).
const aligned_vector<unsigned char>& shared_quantized_rows(heed::dtype t, std::size_t rows,
                                                           unsigned seed) {
  static std::list<std::pair<unsigned, aligned_vector<unsigned char>>> cache;
  const std::size_t rb = heed::quant::row_bytes(t, kD, heed::quant::default_group);
  const unsigned key = seed * 8 + unsigned(t);
  for (auto& e : cache)
    if (e.first == key && e.second.size() == rows * rb) return e.second;
  const aligned_vector<float> x = random_vector<float>(rows * kD, seed);
  aligned_vector<unsigned char> out(rows * rb);
  for (std::size_t r = 0; r < rows; ++r)
    if (heed::quant::quantize_row(t, x.data() + r * kD, kD, heed::quant::default_group,
                                  out.data() + r * rb) != heed::status::ok)
      std::abort();
  for (auto& e : cache)
    if (e.first == key) {
      e.second = std::move(out);
      return e.second;
    }
  cache.emplace_back(key, std::move(out));
  return cache.back().second;
}

// One decode step's inputs: f32 queries, K/V of the case's type and layout (random normal
// values, quantized for q8 / q4).
struct decode_problem {
  std::int64_t L;
  int hkv;
  aligned_vector<float> q;
  std::vector<float> o;
  heed::dense_params p;
  double bytes = 0;  // of K and V
  decode_problem(std::int64_t len, const decode_case& c)
      : L(len), hkv(kHq / c.group), q(random_vector<float>(std::size_t(kHq) * kD, 1)), o(q.size()) {
    const std::size_t rows = std::size_t(L) * std::size_t(hkv);
    const void *k = nullptr, *v = nullptr;
    switch (c.kv_type) {
      case heed::dtype::f16:
        k = shared_random_vector<heed::f16>(rows * kD, 2).data();
        v = shared_random_vector<heed::f16>(rows * kD, 3).data();
        break;
      case heed::dtype::bf16:
        k = shared_random_vector<heed::bf16>(rows * kD, 2).data();
        v = shared_random_vector<heed::bf16>(rows * kD, 3).data();
        break;
      case heed::dtype::q8:
      case heed::dtype::q4:
        k = shared_quantized_rows(c.kv_type, rows, 2).data();
        v = shared_quantized_rows(c.kv_type, rows, 3).data();
        break;
      default:
        k = shared_random_vector<float>(rows * kD, 2).data();
        v = shared_random_vector<float>(rows * kD, 3).data();
    }
    p.q = heed::make_view(q.data(), 1, kHq, kD);
    p.k = heed::make_view(k, c.kv_type, L, hkv, kD, c.kv_layout);
    p.v = heed::make_view(v, c.kv_type, L, hkv, kD, c.kv_layout);
    p.o = heed::make_mutable_view(o.data(), 1, kHq, kD);
    p.causal = true;
    bytes = 2.0 * double(rows) * double(p.k.row_extent() * heed::dtype_size(c.kv_type));
  }
  double flops() const { return 4.0 * kHq * kD * double(L); }
};

void run_decode(benchmark::State& state, heed::isa isa, const decode_case& c) {
  const int threads = static_cast<int>(state.range(1));
  decode_problem pb(state.range(0), c);
  const heed::dense_params& p = pb.p;
  const double bytes = pb.bytes;
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(p, threads, isa));
  set_roofline(state, isa, ex, {bytes, pb.flops()});
  for (auto _ : state) {
    const heed::status s = heed::dense_attention(p, {ws.data(), ws.size()}, ex, isa);
    if (s != heed::status::ok) state.SkipWithError(heed::status_string(s));
    benchmark::DoNotOptimize(pb.o.data());
    benchmark::ClobberMemory();
  }
  state.counters["GBps"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// One decode step of pb (false: the call failed).
bool decode_step(decode_problem& pb, std::vector<char>& ws, heed::executor& ex, heed::isa isa) {
  const bool ok = heed::dense_attention(pb.p, {ws.data(), ws.size()}, ex, isa) == heed::status::ok;
  benchmark::DoNotOptimize(pb.o.data());
  return ok;
}

// A quantized decode and the same step with f16 K/V, timed in the same iterations
// (paired_time_ratio): counter quant_over_f16 = time(quantized) / time(f16).
void run_decode_quant_paired(benchmark::State& state, heed::isa isa, const decode_case& c) {
  const int threads = static_cast<int>(state.range(1));
  decode_problem quant(state.range(0), c);
  decode_problem half(state.range(0), decode_case{c.kv_layout, heed::dtype::f16, c.group});
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(std::max(heed::dense_workspace_size(quant.p, threads, isa),
                                heed::dense_workspace_size(half.p, threads, isa)));
  state.counters["quant_over_f16"] = paired_time_ratio(
      state, [&] { return decode_step(half, ws, ex, isa); },
      [&] { return decode_step(quant, ws, ex, isa); });
}
// q8 decode on the AVX-512 kernels with the integer logits (AVX-512 VNNI) and with the f32 ones
// (heed::set_integer_dot(false)), timed in the same iterations: counter integer_over_float =
// time(integer) / time(f32). Registered where the CPU has AVX-512 VNNI.
void run_decode_integer_paired(benchmark::State& state, heed::isa isa, const decode_case& c) {
  const int threads = static_cast<int>(state.range(1));
  decode_problem pb(state.range(0), c);
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(heed::dense_workspace_size(pb.p, threads, isa));
  auto step = [&](bool integer) {
    heed::set_integer_dot(integer);
    return decode_step(pb, ws, ex, isa);
  };
  state.counters["integer_over_float"] = paired_time_ratio(
      state, [&] { return step(false); }, [&] { return step(true); });
  heed::set_integer_dot(true);
}

// Prefill with f16 K/V and with quantized K/V (q8 / q4, the default group) of the same values,
// timed in the same iterations (paired_time_ratio): counter quant_over_f16 = time(quantized) /
// time(f16) (issue 19: q8 prefill at >= 0.9 of the f16 prefill's GFLOP/s, a ratio <= 1.11).
void run_prefill_quant_paired(benchmark::State& state, heed::isa isa, heed::dtype t) {
  const int threads = static_cast<int>(state.range(1));
  prefill_problem pb(state.range(0));
  const std::size_t rows = std::size_t(pb.L) * kHkv;
  const std::size_t rb = heed::quant::row_bytes(t, kD, heed::quant::default_group);
  std::vector<heed::f16> kh(pb.k.size()), vh(pb.v.size());
  for (std::size_t i = 0; i < kh.size(); ++i) {
    kh[i] = heed::to_f16(pb.k[i]);
    vh[i] = heed::to_f16(pb.v[i]);
  }
  std::vector<unsigned char> kq(rows * rb), vq(rows * rb);
  for (std::size_t r = 0; r < rows; ++r)
    if (heed::quant::quantize_row(t, pb.k.data() + r * kD, kD, heed::quant::default_group,
                                  kq.data() + r * rb) != heed::status::ok ||
        heed::quant::quantize_row(t, pb.v.data() + r * kD, kD, heed::quant::default_group,
                                  vq.data() + r * rb) != heed::status::ok)
      std::abort();
  heed::dense_params half = pb.params(false), quant = half;
  half.k = heed::make_view(kh.data(), pb.L, kHkv, kD);
  half.v = heed::make_view(vh.data(), pb.L, kHkv, kD);
  quant.k = heed::make_view<const void*>(kq.data(), t, pb.L, kHkv, kD);
  quant.v = heed::make_view<const void*>(vq.data(), t, pb.L, kHkv, kD);
  heed::thread_pool_executor ex(threads);
  std::vector<char> ws(std::max(heed::dense_workspace_size(half, threads, isa),
                                heed::dense_workspace_size(quant, threads, isa)));
  auto step = [&](const heed::dense_params& p) {
    const bool ok = heed::dense_attention(p, {ws.data(), ws.size()}, ex, isa) == heed::status::ok;
    benchmark::DoNotOptimize(pb.o.data());
    return ok;
  };
  state.counters["quant_over_f16"] = paired_time_ratio(
      state, [&] { return step(half); }, [&] { return step(quant); });
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
    for (heed::dtype t : {heed::dtype::q8, heed::dtype::q4})
      timed(benchmark::RegisterBenchmark(
                ("BM_prefill_quant_paired" + tag + "/" + heed::dtype_name(t)).c_str(),
                [isa, t](benchmark::State& s) { run_prefill_quant_paired(s, isa, t); }))
          ->ArgsProduct({{4096}, {1}});
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
      for (heed::dtype t : {heed::dtype::q8, heed::dtype::q4}) {
        add(t, 4, {4096, 32768}, {1, 2});
        const std::string name =
            "BM_decode_quant_paired" + tag + ltag + "/" + heed::dtype_name(t) + "/g4";
        const decode_case c{lay, t, 4};
        timed(benchmark::RegisterBenchmark(name.c_str(), [isa, c](benchmark::State& s) {
          run_decode_quant_paired(s, isa, c);
        }))->ArgsProduct({{4096, 32768}, {1, 2}});
      }
      if (isa == heed::isa::avx512 && heed::cpu_has_avx512_vnni())
        for (int g : {1, 4, 8}) {
          const decode_case c{lay, heed::dtype::q8, g};
          timed(benchmark::RegisterBenchmark(
                    ("BM_decode_integer_paired" + tag + ltag + "/q8/g" + std::to_string(g)).c_str(),
                    [isa, c](benchmark::State& s) { run_decode_integer_paired(s, isa, c); }))
              ->ArgsProduct({{4096, 32768}, {1, 2}});
        }
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
