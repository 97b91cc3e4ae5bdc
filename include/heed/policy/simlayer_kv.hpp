// SimLayerKV (Zhang et al. 2024, arXiv 2410.13846; kvpress SimLayerKVPress) as a layer-level
// wrapper: a layer whose latest queries look only at the first and the most recent tokens is
// "lazy" and keeps just those (StreamingLLM); the other layers keep what the inner policy keeps.
//
//   simlayer(inner, options)        other layers: the inner policy at the budget
//   simlayer(full_cache_policy{})   other layers keep everything (kvpress; the registry's
//                                   "simlayer_kv"): memory is bounded in lazy layers only
//
// Options (kvpress's names and defaults, except the threshold): lazy_threshold 0.65 (the paper's
// Llama-2 setting; kvpress's default 1.0 never finds a lazy layer; the paper uses 0.9 for Llama-3,
// 0.8 for Mistral, 0.85 for Qwen), n_last 1 (the paper's decode variant), n_initial 4,
// n_recent 0 (heed: the budget's recent window, below; kvpress 1024).
//
// The test, per layer at each eviction (kvpress is_lazy): the last w = min(n_last, queries kept)
// queries of every query head attend, by softmax of their logits (the model's scale, 1/sqrt(d)
// when 0, and soft-capping; the other logit variants are not applied), to the entries they could
// see (position <= their own; query r of the window has position p_last - (w - 1 - r), p_last the
// head's newest entry). The window's own entries (the w newest positions) are in the softmax but
// not in the mass; of the other m entries (a prefix of the head), the mass counts the first
// n_initial and the last R, where R = n_recent when given, else budget - n_initial - n_last (the
// entries a lazy layer keeps besides its sinks and the window; policy_input::budget). The layer's
// score is the mean of the masses over all query heads of the layer and the w queries; the layer
// is lazy when score > lazy_threshold. No queries yet: not lazy.
//
// A lazy layer keeps its first n_initial entries and then the most recent ones up to the target
// (n_recent given: at most n_initial + n_recent - n_last entries, kvpress's count). A layer that
// is not lazy uses the inner policy (its head budget and scores); the sinks stay protected in
// every layer (selection: the inner policy's protection and n_initial sinks).
//
// The test is made again at every eviction (kvpress makes it once, after the prompt), from the
// cache as it is then, reading every KV head of the layer from the cache itself (contiguous,
// paged or tiered rows), so the decision is the same for every head and for paged and contiguous
// caches. Cost per eviction: the test is one pass over the layer's keys per window query and
// query head (n_last = 1: the logits of one decode step), made once: the decision is remembered
// for the other heads of the same eviction (simlayer_policy::lazy).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <xsimd/xsimd.hpp>

#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"
#include "heed/scoring/detail/score_kernels.hpp"

namespace heed {

struct simlayer_options {
  float lazy_threshold = 0.65f;
  std::int64_t n_last = 1;
  std::int64_t n_initial = 4;
  std::int64_t n_recent = 0;  // 0: budget - n_initial - n_last

  bool valid() const noexcept {
    return !std::isnan(lazy_threshold) && n_last >= 1 && n_last <= (1 << 16) && n_initial >= 0 &&
           n_recent >= 0;
  }
};

// Keeps everything: its head budget is the head's length (kvpress SimLayerKV's layers that are
// not lazy). Scores are the entry indices (the newest first), for a caller that still selects.
struct full_cache_policy : policy_base<full_cache_policy> {
  const char* name() const noexcept { return "full_cache"; }
  std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept {
    return std::max(target, in.length(head));
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
    return status::ok;
  }
};

namespace detail {

// Calls f(j, q . k_j) for every entry j of KV head `head`, in entry order, reading the cache's own
// rows (contiguous, paged or tiered).
template <class A, class F>
void visit_key_dots(const kv_cache& c, int layer, int head, const float* q, F&& f) noexcept {
  const std::int64_t d = c.head_dim();
  auto run = [&](const tensor_view& v, std::int64_t first, std::int64_t count) {
    with_typed(v, [&](auto base) {
      for (std::int64_t r = 0; r < count; ++r)
        f(first + r, dot_row<A>(q, base + v.offset(r, 0), d));
    });
  };
  const std::int64_t len = c.length(layer, head);
  if (len == 0) return;
  if (c.low_length(layer, head) > 0) {  // two tiers of two row types, interleaved
    const std::uint8_t* tier = c.tiers(layer, head);
    const tensor_view t[2] = {c.tier_keys(layer, head, 0), c.tier_keys(layer, head, 1)};
    std::int64_t at[2] = {0, 0};
    for (std::int64_t j = 0; j < len; ++j) {
      const int k = tier[j] ? 1 : 0;
      tensor_view one = t[k];
      with_typed(one, [&](auto base) { f(j, dot_row<A>(q, base + one.offset(at[k], 0), d)); });
      ++at[k];
    }
    return;
  }
  for (int i = 0; i < c.page_count(layer, head); ++i)
    run(c.page_keys(layer, head, i), c.page(layer, head, i).begin, c.page(layer, head, i).len);
}

// The layer's lazy score of the SimLayerKV test (above); NaN when no query is kept.
template <class A = xsimd::default_arch>
double simlayer_score(const policy_input& in, const simlayer_options& o) noexcept {
  const std::int64_t w = std::min(o.n_last, in.queries.seq);
  if (w <= 0 || in.cache == nullptr) return std::numeric_limits<double>::quiet_NaN();
  const kv_cache& c = *in.cache;
  const std::int64_t d = c.head_dim();
  const int heads = c.kv_heads(), g = in.group();
  const float scale = in.logits.scale > 0.f ? in.logits.scale : 1.f / std::sqrt(float(d));
  const float cap = in.logits.softcap;
  const std::int64_t recent =
      o.n_recent > 0 ? o.n_recent : std::max<std::int64_t>(0, in.budget - o.n_initial - o.n_last);
  double total = 0.0;
  std::int64_t rows = 0;
  for (int h = 0; h < heads; ++h) {
    const std::int64_t len = in.cache->length(in.layer, h);
    if (len == 0) continue;
    const std::int64_t* pos = c.positions(in.layer, h);
    const std::int64_t last = pos[len - 1];
    std::int64_t m = len;  // entries before the window
    while (m > 0 && pos[m - 1] > last - w) --m;
    const std::int64_t init_end = std::min(o.n_initial, m);
    const std::int64_t recent_begin = std::max(init_end, m - recent);
    for (std::int64_t r = 0; r < w; ++r) {
      const std::int64_t qpos = last - (w - 1 - r);
      for (int q = 0; q < g; ++q) {
        const float* qv = in.queries.row<const float>(in.queries.seq - w + r, h * g + q);
        float mx = -std::numeric_limits<float>::infinity();
        double z = 0.0, zs = 0.0;
        visit_key_dots<A>(c, in.layer, h, qv, [&](std::int64_t j, float dot) {
          if (pos[j] > qpos) return;
          float s = dot * scale;
          if (cap > 0.f) s = cap * std::tanh(s / cap);
          if (!(s <= mx)) {  // a new maximum (or the first logit): rescale the sums
            if (z > 0.0) {
              const double f = double(std::exp(mx - s));
              z *= f;
              zs *= f;
            }
            mx = s;
          }
          const double e = double(std::exp(s - mx));
          z += e;
          if (j < init_end || (j >= recent_begin && j < m)) zs += e;
        });
        total += z > 0.0 ? zs / z : 0.0;
        ++rows;
      }
    }
  }
  return rows > 0 ? total / double(rows) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace detail

template <class Inner>
struct simlayer_policy {
  Inner inner{};
  simlayer_options options{};

  simlayer_policy() = default;
  simlayer_policy(Inner i, simlayer_options o) noexcept : inner(std::move(i)), options(o) {}
  // Copies and moves start without a remembered decision.
  simlayer_policy(const simlayer_policy& o) : inner(o.inner), options(o.options) {}
  simlayer_policy(simlayer_policy&& o) noexcept : inner(std::move(o.inner)), options(o.options) {}
  simlayer_policy& operator=(const simlayer_policy& o) {
    inner = o.inner;
    options = o.options;
    memo_.store(0, std::memory_order_relaxed);
    return *this;
  }
  simlayer_policy& operator=(simlayer_policy&& o) noexcept {
    inner = std::move(o.inner);
    options = o.options;
    memo_.store(0, std::memory_order_relaxed);
    return *this;
  }

  const char* name() const noexcept { return "simlayer_kv"; }
  score_needs needs() const noexcept {
    score_needs n = inner.needs();
    n.query_window = std::max(n.query_window, options.n_last);
    return n;
  }
  selection_spec selection(std::int64_t budget) const noexcept {
    selection_spec s = inner.selection(budget);
    s.protect.n_sink = std::max(s.protect.n_sink, options.n_initial);
    return s;
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return inner.score_workspace_size(in);
  }
  // True when the layer of `in` is lazy now. One eviction asks for every head (head_budget and
  // score): the decision is remembered under a 62-bit hash of what it depends on (the cache and
  // layer, the step, the heads' lengths and tiers, the window's queries bit for bit, the options
  // and the budget), so the test runs once per eviction. The memory is one atomic word: policies
  // shared between threads (any_policy copies) stay correct.
  bool lazy(const policy_input& in) const noexcept {
    if (!options.valid() || in.cache == nullptr) return false;
    const std::uint64_t key = state_hash(in) & ~std::uint64_t(3);
    const std::uint64_t m = memo_.load(std::memory_order_relaxed);
    if ((m & 1u) != 0 && (m & ~std::uint64_t(3)) == key) return (m & 2u) != 0;
    const bool is_lazy = detail::simlayer_score(in, options) > double(options.lazy_threshold);
    memo_.store(key | 1u | (is_lazy ? 2u : 0u), std::memory_order_relaxed);
    return is_lazy;  // NaN (no query): false
  }
  std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept {
    const std::int64_t busy = inner.head_budget(in, head, target);
    const std::int64_t idle =
        options.n_recent == 0
            ? target
            : std::min(target, options.n_initial +
                                   std::max<std::int64_t>(0, options.n_recent - options.n_last));
    if (busy == idle) return busy;  // the decision does not matter here
    return lazy(in) ? idle : busy;
  }
  // The inner policy's write gate, if it has one (policy/admission.hpp).
  status admit(const admission_input& in, int head, bool& admitted) noexcept {
    return detail::policy_admit(inner, in, head, admitted);
  }
  bool gates() const noexcept { return detail::policy_gates(inner); }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (!options.valid()) return status::invalid_argument;
    if (!lazy(in)) return inner.score(in, head, out, ws);
    for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);  // the newest first
    return status::ok;
  }

 private:
  std::uint64_t state_hash(const policy_input& in) const noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits
    auto mix = [&h](std::uint64_t x) {
      for (int b = 0; b < 8; ++b) {
        h ^= (x >> (8 * b)) & 0xffu;
        h *= 0x100000001b3ull;
      }
    };
    auto bits = [](float f) {
      std::uint32_t u;
      std::memcpy(&u, &f, sizeof u);
      return std::uint64_t(u);
    };
    mix(std::uint64_t(reinterpret_cast<std::uintptr_t>(in.cache)));
    mix(std::uint64_t(in.layer));
    mix(std::uint64_t(in.step));
    mix(std::uint64_t(in.budget));
    mix(bits(in.logits.scale) | (bits(in.logits.softcap) << 32));
    mix(bits(options.lazy_threshold));
    mix(std::uint64_t(options.n_last) ^ (std::uint64_t(options.n_initial) << 20) ^
        (std::uint64_t(options.n_recent) << 40));
    for (int h = 0; h < in.cache->kv_heads(); ++h) {
      mix(std::uint64_t(in.cache->length(in.layer, h)));
      mix(std::uint64_t(in.cache->low_length(in.layer, h)));
      mix(std::uint64_t(in.cache->appended(in.layer, h)));
    }
    const std::int64_t w = std::min(options.n_last, in.queries.seq);
    mix(std::uint64_t(w));
    for (std::int64_t r = in.queries.seq - w; r < in.queries.seq; ++r)
      for (std::int64_t q = 0; q < in.queries.heads; ++q) {
        const float* row = in.queries.row<const float>(r, q);
        for (std::int64_t c = 0; c < in.queries.dim; c += 2)
          mix(bits(row[c]) | (c + 1 < in.queries.dim ? bits(row[c + 1]) << 32 : 0));
      }
    return h;
  }

  mutable std::atomic<std::uint64_t> memo_{0};
};

template <class Inner>
simlayer_policy<Inner> simlayer(Inner inner, simlayer_options options = {}) {
  detail::check_policy<Inner>();
  return simlayer_policy<Inner>(std::move(inner), options);
}

}  // namespace heed
