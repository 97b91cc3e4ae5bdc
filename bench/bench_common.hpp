// Shapes and inputs shared by the heed benchmarks: Hq = 32, Hkv = 8, head_dim = 128, causal.
#pragma once

#include <cstdint>
#include <random>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "heed/core/dtype.hpp"

namespace heed_bench {

constexpr int kHq = 32;
constexpr int kHkv = 8;
constexpr int kD = 128;

// Inputs are 64-byte aligned, as an engine's tensors and KV cache are (ggml aligns to 32 or 64):
// a plain std::vector of 64 MiB starts 16 bytes past a page boundary, so each 256-byte f16 row
// spans 5 cache lines; decode of [seq, heads, d] K/V measured 20% slower for that alone.
template <class T>
using aligned_vector = std::vector<T, xsimd::aligned_allocator<T, 64>>;

template <class T>
aligned_vector<T> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  aligned_vector<T> v(n);
  for (auto& x : v) x = heed::from_float<T>(nd(rng));
  return v;
}

// Useful flops of causal attention: 2 GEMMs of 2 flops per multiply-add over unmasked pairs.
inline double causal_flops(std::int64_t lq, std::int64_t lk, int hq, int d) {
  double pairs = 0;
  const std::int64_t off = lk - lq;
  for (std::int64_t i = 0; i < lq; ++i) pairs += double(off + i + 1);
  return 4.0 * hq * d * pairs;
}

}  // namespace heed_bench
