// StreamingLLM over heed::kv_cache: every (layer, KV head) keeps its first n_sink entries (the
// attention sinks) and its most recent `window` entries; the middle is evicted.
//
// Two ways to give positions to RoPE (rope.hpp):
//   original:   a key keeps the rotation of its original position (kv_cache::positions()) and the
//               query uses its true position. Eviction only compacts the cache. Positions grow
//               past the model's trained context on long streams.
//   reassigned: positions are cache indices, as StreamingLLM does. After every eviction the kept
//               keys are re-rotated in place so that entry j sits at rotary position j, and the
//               next token (query and key) uses position = the head's length. Positions never
//               exceed n_sink + window + slack.
//
// Invariant (the rotary position of stored entry j of a head; streaming_key_position()):
//   original:   positions(layer, head)[j], as long as every key was rotated at
//               streaming_next_position() (= appended(layer, head)) before its append.
//   reassigned: j, as long as every key was rotated at streaming_next_position() (= the head's
//               length) before its append and every eviction went through streaming_evict() or
//               streaming_keep(). kv_cache::keep() called directly breaks it.
// kv_cache::positions() keeps the original positions in both modes.
//
// One decode step of a layer:
//   streaming_next_position(cache, layer, 0, cfg, &pos);   // all heads agree when append() is used
//   rope_apply(cfg.rope, q, Hq, d, pos); rope_apply(cfg.rope, k, Hkv, d, pos);
//   cache.append(layer, k_view, v_view);                    // default (original) positions
//   cache_attention(cache, layer, ...);
//   streaming_evict(cache, layer, cfg, scratch);
//
// Re-rotating 16-bit keys rounds them again each time: with slack s, a key is re-rotated about
// window / (s + 1) times during its stay in the window. f32 storage or a slack (chunked eviction)
// keeps that error small; see docs/sinks.md.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/core/detail/grow_vector.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/sinks/rope.hpp"

namespace heed {

enum class position_mode : int {
  original = 0,    // keys keep their original rotary position; queries use their true position
  reassigned = 1,  // rotary positions are cache indices (StreamingLLM)
};

struct streaming_config {
  std::int64_t n_sink = 4;  // first entries always kept (>= 0)
  std::int64_t window = 0;  // most recent entries kept (>= 1; required)
  // Evict only when a head holds more than n_sink + window + slack entries (then down to
  // n_sink + window): fewer, larger evictions (and re-rotations). 0 = StreamingLLM exactly.
  std::int64_t slack = 0;
  position_mode mode = position_mode::reassigned;
  rope_config rope{};  // how keys are rotated; used (and validated) in reassigned mode only
};

inline status validate(const streaming_config& c) noexcept {
  if (c.n_sink < 0 || c.window < 1 || c.slack < 0) return status::invalid_argument;
  const std::int64_t int32_max = std::numeric_limits<std::int32_t>::max();
  if (c.n_sink > int32_max || c.window > int32_max || c.slack > int32_max ||
      c.n_sink + c.window + c.slack > int32_max)
    return status::invalid_argument;
  if (c.mode != position_mode::original && c.mode != position_mode::reassigned)
    return status::invalid_argument;
  if (c.mode == position_mode::reassigned) HEED_RETURN_IF_ERROR(validate(c.rope));
  return status::ok;
}

// The configuration against a cache: also checks that the cache is initialized and, in
// reassigned mode, that rope.head_dim is the cache's head_dim (else shape_mismatch) and that its
// keys are not quantized (else unsupported_dtype).
inline status validate(const streaming_config& c, const kv_cache& cache) noexcept {
  HEED_RETURN_IF_ERROR(validate(c));
  if (!cache.valid(0, 0)) return status::invalid_argument;
  if (c.mode == position_mode::reassigned && c.rope.head_dim != cache.head_dim())
    return status::shape_mismatch;
  // Re-rotating quantized keys would requantize them at every eviction: not offered.
  if (c.mode == position_mode::reassigned && is_quantized(cache.type()))
    return status::unsupported_dtype;
  return status::ok;
}

// Buffers reused across evictions: they grow to n_sink + window once, then stop allocating.
struct streaming_scratch {
  std::vector<std::int32_t> keep;
};

// The rotary position of the next token of (layer, head): appended(layer, head) in original
// mode, length(layer, head) in reassigned mode. Rotate its query and key there before the append.
inline status streaming_next_position(const kv_cache& cache, int layer, int head,
                                      const streaming_config& c, std::int64_t* pos) noexcept {
  HEED_RETURN_IF_ERROR(validate(c, cache));
  if (!cache.valid(layer, head)) return status::invalid_argument;
  if (pos == nullptr) return status::null_pointer;
  *pos =
      c.mode == position_mode::original ? cache.appended(layer, head) : cache.length(layer, head);
  return status::ok;
}

// The rotary position stored entry j (< length) of (layer, head) has now (see the invariant).
inline status streaming_key_position(const kv_cache& cache, int layer, int head, std::int64_t j,
                                     const streaming_config& c, std::int64_t* pos) noexcept {
  HEED_RETURN_IF_ERROR(validate(c, cache));
  if (!cache.valid(layer, head)) return status::invalid_argument;
  if (j < 0 || j >= cache.length(layer, head)) return status::invalid_argument;
  if (pos == nullptr) return status::null_pointer;
  *pos = c.mode == position_mode::original ? cache.positions(layer, head)[j] : j;
  return status::ok;
}

namespace detail {

// Re-rotates, after a keep(), entry i from rotary position keep[i] to i: one rotation per run of
// consecutive kept entries (they share the shift i - keep[i]).
inline status streaming_reassign(kv_cache& cache, int layer, int head, const rope_config& rope,
                                 const std::int32_t* keep, std::int64_t n_keep) noexcept {
  // Runs are cut at page ends (a contiguous cache is one page).
  int pg = 0;
  for (std::int64_t i = 0; i < n_keep;) {
    const std::int64_t from = keep[i];
    std::int64_t run = 1;
    while (i + run < n_keep && keep[i + run] == from + run) ++run;
    for (std::int64_t a = i; from != i && a < i + run;) {
      while (cache.page(layer, head, pg).begin + cache.page(layer, head, pg).len <= a) ++pg;
      const kv_page page = cache.page(layer, head, pg);
      const std::int64_t b = std::min(i + run, page.begin + page.len);
      mutable_tensor_view rows = cache.mutable_page_keys(layer, head, pg);
      rows.data = static_cast<unsigned char*>(rows.data) +
                  std::size_t((a - page.begin) * rows.seq_stride) * dtype_size(rows.type);
      rows.seq = b - a;
      HEED_RETURN_IF_ERROR(rope_rerotate(rope, rows, from + (a - i), a));
      a = b;
    }
    i += run;
  }
  return status::ok;
}

}  // namespace detail

// Keeps the entries keep[0..n_keep) of (layer, head) (strictly ascending indices < length, as
// kv_cache::keep) and, in reassigned mode, re-rotates every kept key from its old index to its new
// one. Works with any keep list (detected sinks, another policy's selection).
inline status streaming_keep(kv_cache& cache, int layer, int head, const std::int32_t* keep,
                             std::int64_t n_keep, const streaming_config& c) noexcept {
  HEED_RETURN_IF_ERROR(validate(c, cache));
  if (!cache.valid(layer, head)) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(cache.keep(layer, head, keep, n_keep));  // checks the list
  if (c.mode == position_mode::reassigned)
    return detail::streaming_reassign(cache, layer, head, c.rope, keep, n_keep);
  return status::ok;
}

// Every head of `layer` holding more than n_sink + window + slack entries keeps its first n_sink
// and its last window entries. *n_evicted (optional) receives the number of entries removed from
// the layer.
inline status streaming_evict(kv_cache& cache, int layer, const streaming_config& c,
                              streaming_scratch& s, std::int64_t* n_evicted = nullptr) noexcept {
  HEED_RETURN_IF_ERROR(validate(c, cache));
  if (!cache.valid(layer, 0)) return status::invalid_argument;
  const std::int64_t kept = c.n_sink + c.window;
  bool any = false;
  for (int h = 0; h < cache.kv_heads(); ++h) {  // all checks before the first change
    const std::int64_t len = cache.length(layer, h);
    if (len > std::numeric_limits<std::int32_t>::max()) return status::invalid_argument;
    any = any || len > kept + c.slack;
  }
  if (any && !detail::grow_vector(s.keep, std::size_t(kept))) return status::out_of_memory;
  std::int64_t evicted = 0;
  for (int h = 0; h < cache.kv_heads(); ++h) {
    const std::int64_t len = cache.length(layer, h);
    if (len <= kept + c.slack) continue;
    std::int32_t* keep = s.keep.data();
    for (std::int64_t i = 0; i < c.n_sink; ++i) keep[i] = std::int32_t(i);
    for (std::int64_t i = 0; i < c.window; ++i)
      keep[c.n_sink + i] = std::int32_t(len - c.window + i);
    HEED_RETURN_IF_ERROR(streaming_keep(cache, layer, h, keep, kept, c));
    evicted += len - kept;
  }
  if (n_evicted) *n_evicted = evicted;
  return status::ok;
}

// Builds the keep list of a head of length len from sink indices found anywhere (e.g. by
// detect_sinks, sink_detection.hpp: ascending, each in [0, len), int64) and the last `window`
// entries, merged ascending without duplicates. keep has room for `capacity` entries (at most
// n_sinks + window are written); *n_keep receives the count. Feed the result to streaming_keep.
inline status sink_window_keep_list(std::int64_t len, const std::int64_t* sinks,
                                    std::int64_t n_sinks, std::int64_t window, std::int32_t* keep,
                                    std::int64_t capacity, std::int64_t* n_keep) noexcept {
  if (n_keep == nullptr) return status::null_pointer;
  if (len < 0 || len > std::numeric_limits<std::int32_t>::max() || n_sinks < 0 || window < 0 ||
      capacity < 0)
    return status::invalid_argument;
  if (n_sinks > 0 && sinks == nullptr) return status::null_pointer;
  for (std::int64_t i = 0; i < n_sinks; ++i) {
    if (sinks[i] < 0 || sinks[i] >= len) return status::invalid_argument;
    if (i > 0 && sinks[i] <= sinks[i - 1]) return status::invalid_argument;
  }
  const std::int64_t w0 = window < len ? len - window : 0;  // first entry of the window
  std::int64_t n_before = 0;                                // sinks left of the window
  while (n_before < n_sinks && sinks[n_before] < w0) ++n_before;
  const std::int64_t n = n_before + (len - w0);
  if (n > capacity) return status::workspace_too_small;
  if (n > 0 && keep == nullptr) return status::null_pointer;
  for (std::int64_t i = 0; i < n_before; ++i) keep[i] = std::int32_t(sinks[i]);
  for (std::int64_t j = w0; j < len; ++j) keep[n_before + (j - w0)] = std::int32_t(j);
  *n_keep = n;
  return status::ok;
}

}  // namespace heed
