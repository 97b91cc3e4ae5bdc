// ChunkKV (Liu et al. 2025, arXiv 2502.00299; kvpress ChunkKVPress) as a wrapper: any policy's
// scores, averaged over fixed chunks of consecutive tokens, so that whole chunks are kept.
//
//   chunked(inner, chunk_size)        chunk_size 10 (the paper's default; kvpress uses 20)
//
// Per KV head: the inner policy scores every entry; entry j belongs to chunk position_j /
// chunk_size (its original token position, so a chunk is a run of consecutive entries and stays
// the same chunk across evictions; before any eviction, chunk c holds entries [c C, c C + C), as
// in kvpress). Every entry of a chunk gets the chunk's score, the mean of its entries' inner
// scores (kvpress: the mean over the chunk, a trailing partial chunk included; averaging keeps a
// chunk that earlier evictions thinned out comparable with the full ones). The rules of the mean:
//   - NaN inner scores are left out; a chunk of only NaN scores is NaN (ranks lowest);
//   - a chunk with a +inf score is +inf (it holds an entry its policy must keep), else one with a
//     -inf score is -inf; else the mean of the finite scores, summed in double.
// A head with fewer entries than chunk_size keeps the inner scores (kvpress then lets the inner
// policy compress on its own).
//
// Budget: the selection (the inner policy's, with its protected sinks and window) still keeps
// exactly the target count. The chunks with the best means are kept whole; of the one chunk that
// fits only partly, the entries kept are its most recent ones (equal scores rank the higher index
// above, select.hpp), so the kept set is whole chunks plus the newest part of one chunk. kvpress
// instead rounds to whole chunks (it keeps about n_chunks * (1 - ratio) chunks, not an exact
// count) and takes one selection for all KV heads (scores summed over heads); heed selects per
// KV head, as every heed policy does, since heads may hold different entries.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>

#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"

namespace heed {

inline constexpr std::int64_t chunkkv_default_chunk_size = 10;

// Replaces scores[0, n) by the mean of their chunk (the rules above): entries i and j share a
// chunk when positions[i] / chunk_size == positions[j] / chunk_size (positions ascending; null:
// the entry indices). invalid_argument for chunk_size < 1 or n < 0.
inline status chunk_mean_scores(float* scores, const std::int64_t* positions, std::int64_t n,
                                std::int64_t chunk_size) noexcept {
  if (chunk_size < 1 || n < 0) return status::invalid_argument;
  if (n > 0 && scores == nullptr) return status::null_pointer;
  auto chunk_of = [&](std::int64_t j) { return (positions ? positions[j] : j) / chunk_size; };
  for (std::int64_t a = 0; a < n;) {
    const std::int64_t c = chunk_of(a);
    std::int64_t b = a + 1;
    while (b < n && chunk_of(b) == c) ++b;
    double sum = 0.0;
    std::int64_t count = 0;
    bool pos_inf = false, neg_inf = false;
    for (std::int64_t j = a; j < b; ++j) {
      const float s = scores[j];
      if (std::isnan(s)) continue;
      if (std::isinf(s)) {
        (s > 0.f ? pos_inf : neg_inf) = true;
        continue;
      }
      sum += double(s);
      ++count;
    }
    float m = std::numeric_limits<float>::quiet_NaN();
    if (pos_inf) {
      m = std::numeric_limits<float>::infinity();
    } else if (neg_inf) {
      m = -std::numeric_limits<float>::infinity();
    } else if (count > 0) {
      m = float(sum / double(count));
    }
    for (std::int64_t j = a; j < b; ++j) scores[j] = m;
    a = b;
  }
  return status::ok;
}

template <class Inner>
struct chunkkv_policy : detail::wrapper_base<Inner> {
  using detail::wrapper_base<Inner>::inner;
  std::int64_t chunk_size = chunkkv_default_chunk_size;

  const char* name() const noexcept { return "chunkkv"; }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    if (chunk_size < 1) return status::invalid_argument;
    HEED_RETURN_IF_ERROR(inner.score(in, head, out, ws));
    const std::int64_t n = in.length(head);
    if (n < chunk_size) return status::ok;  // no complete chunk: the inner policy's own scores
    return chunk_mean_scores(out, in.positions(head), n, chunk_size);
  }
};
template <class Inner>
chunkkv_policy<Inner> chunked(Inner inner, std::int64_t chunk_size = chunkkv_default_chunk_size) {
  detail::check_policy<Inner>();
  return {{std::move(inner)}, chunk_size};
}

}  // namespace heed
