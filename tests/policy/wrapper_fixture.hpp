// Shared pieces of the wrapper tests (ChunkKV, CriticalKV, SimLayerKV): a cache of random rows
// with chosen inner scores, and an inner policy that reads them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/policy/policy.hpp"

namespace wrapper_test {

// The inner policy of the tests: the scores stored in channel 0 of the cache (as the tests set
// them), protecting n_sink sinks and n_recent recent entries.
struct channel_scores : heed::policy_base<channel_scores> {
  std::int64_t n_sink = 0, n_recent = 0;
  const char* name() const noexcept { return "channel_scores"; }
  heed::score_needs needs() const noexcept {
    heed::score_needs n;
    n.channels = 1;
    return n;
  }
  heed::selection_spec selection(std::int64_t) const noexcept {
    heed::selection_spec s;
    s.protect = {n_sink, n_recent};
    return s;
  }
  heed::status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    std::copy(in.channel(head, 0), in.channel(head, 0) + in.length(head), out);
    return heed::status::ok;
  }
};

// Random rows (normal, times `scale`) for `layers` layers of `heads` KV heads, n tokens.
struct filled_cache {
  heed::kv_cache cache;
  std::vector<float> k, v;  // [layer][n][heads][d]
  std::int64_t n = 0, d = 0;
  int heads = 0;

  // positions: null for 0 .. n-1.
  heed::status fill(int layers, int kv_heads, std::int64_t dim, std::int64_t len, heed::dtype type,
                    unsigned seed, std::int64_t page_rows = 0,
                    const std::int64_t* positions = nullptr, float scale = 1.f) {
    n = len;
    d = dim;
    heads = kv_heads;
    heed::kv_cache_config cc{layers, kv_heads, dim, type, 0, 1};
    cc.page_rows = page_rows;
    HEED_RETURN_IF_ERROR(cache.init(cc));
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    const std::size_t per_layer = std::size_t(len * kv_heads * dim);
    k.resize(per_layer * std::size_t(layers));
    v.resize(k.size());
    for (auto& x : k) x = scale * g(rng);
    for (auto& x : v) x = g(rng);
    for (int l = 0; l < layers; ++l)
      HEED_RETURN_IF_ERROR(cache.append(
          l, heed::make_view(k.data() + std::size_t(l) * per_layer, len, kv_heads, dim),
          heed::make_view(v.data() + std::size_t(l) * per_layer, len, kv_heads, dim), positions));
    return heed::status::ok;
  }
  double key(int layer, std::int64_t j, int h, std::int64_t c) const {
    return k[std::size_t(((layer * n + j) * heads + h) * d + c)];
  }
  double value(int layer, std::int64_t j, int h, std::int64_t c) const {
    return v[std::size_t(((layer * n + j) * heads + h) * d + c)];
  }
};

inline heed::policy_input input_of(const heed::kv_cache& c, int layer, int q_heads,
                                   std::int64_t budget) {
  heed::policy_input in;
  in.cache = &c;
  in.layer = layer;
  in.n_layers = c.layers();
  in.q_heads = q_heads;
  in.budget = budget;
  return in;
}

}  // namespace wrapper_test
