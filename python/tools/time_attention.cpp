// The C++ side of the binding-overhead measurement (docs/python.md, "Overhead"): the prefill
// heed.attention call of python/tools/measure_overhead.py, made directly. Build against a
// build tree's library, e.g.
//   g++ -O2 -std=c++17 -Iinclude python/tools/time_attention.cpp build-py/src/libheed.a \
//       -lpthread -o /tmp/time_attention && /tmp/time_attention 4096
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"

int main(int argc, char** argv) {
  const int L = argc > 1 ? std::atoi(argv[1]) : 4096, hq = 32, hkv = 8, d = 128;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  std::mt19937 rng(1);
  std::normal_distribution<float> n01;
  std::vector<float> q(std::size_t(L) * hq * d), o(q.size());
  std::vector<heed::f16> k(std::size_t(L) * hkv * d), v(k.size());
  for (auto& x : q) x = n01(rng);
  for (auto& x : k) x = heed::to_f16(n01(rng));
  for (auto& x : v) x = heed::to_f16(n01(rng));
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    // What the binding does per call: parameters, a fresh workspace, the kernel.
    heed::dense_params p;
    p.q = heed::make_view(q.data(), L, hq, d);
    p.k = heed::make_view(k.data(), L, hkv, d);
    p.v = heed::make_view(v.data(), L, hkv, d);
    p.o = heed::make_mutable_view(o.data(), L, hq, d);
    p.causal = true;
    const std::size_t bytes = heed::dense_workspace_size(p, 1);
    std::unique_ptr<unsigned char[]> ws(new unsigned char[bytes]);
    const heed::status s = heed::dense_attention(p, {ws.get(), bytes});
    const auto t1 = std::chrono::steady_clock::now();
    if (s != heed::status::ok) return std::printf("%s\n", heed::status_string(s)), 1;
    times.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  std::sort(times.begin(), times.end());
  std::printf(
      "C++ dense_attention prefill L=%d Hq=%d Hkv=%d d=%d f16, 1 thread: median %.2f ms "
      "(min %.2f) over %d\n",
      L, hq, hkv, d, times[times.size() / 2] * 1e3, times[0] * 1e3, reps);
  return 0;
}
