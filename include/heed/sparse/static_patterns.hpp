// Static block patterns: key blocks chosen from positions alone, the same for every head.
//
// For query block qb let D be the key block holding the position of its last query (the
// diagonal block). Every kind keeps the sink blocks [0, sink_blocks) and the local blocks
// [D - local_blocks + 1, D], and adds:
//   a_shape       nothing more (StreamingLLM's sinks + window, at block granularity)
//   strided       the blocks D - m * stride, m >= 1 (a strided / "fixed" sparse-transformer head)
//   dilated       the blocks D - local_blocks + 1 - m * dilation, m = 1 .. count (a dilated
//                 window continuing the local one)
//   power_of_two  the blocks D - 2^m, m >= 0 (PowerAttention: distances that double)
// Blocks right of D are never listed (causal use); the kernel's force_sink / force_diagonal are
// left on. Block-level token windows (exact per token) are the built-in variant's window_left.
#pragma once

#include <cstdint>
#include <vector>

#include "heed/core/detail/no_throw.hpp"
#include "heed/sparse/block_pattern.hpp"

namespace heed {

enum class static_kind : int { a_shape = 0, strided = 1, dilated = 2, power_of_two = 3 };

struct static_pattern_options {
  std::int32_t block_q = 64, block_k = 64;
  std::int64_t sink_blocks = 1;
  std::int64_t local_blocks = 4;  // >= 1: the diagonal block counts
  std::int64_t stride = 8;        // strided
  std::int64_t dilation = 2;      // dilated
  std::int64_t count = 8;         // dilated
};

// hq heads, lq query rows at positions q_offset + i (-1 means lk - lq), lk keys.
inline status build_static_pattern(static_kind kind, std::int64_t hq, std::int64_t lq,
                                   std::int64_t lk, std::int64_t q_offset,
                                   const static_pattern_options& o, block_pattern& out) noexcept {
  return detail::no_throw([&]() -> status {
    if (o.sink_blocks < 0 || o.local_blocks < 1 || o.stride < 1 || o.dilation < 1 || o.count < 0)
      return status::invalid_argument;
    if (kind != static_kind::a_shape && kind != static_kind::strided &&
        kind != static_kind::dilated && kind != static_kind::power_of_two)
      return status::invalid_argument;
    HEED_RETURN_IF_ERROR(out.reset(hq, lq, lk, q_offset, o.block_q, o.block_k));
    std::vector<char> on(static_cast<std::size_t>(out.k_blocks));
    std::vector<std::int32_t> ptr(1, 0), idx;  // one head's rows
    for (std::int64_t qb = 0; qb < out.q_blocks; ++qb) {
      std::int64_t first, dq;
      out.diagonal(qb, first, dq);
      std::fill(on.begin(), on.end(), 0);
      auto mark = [&](std::int64_t b) {
        if (b >= 0 && b <= dq) on[static_cast<std::size_t>(b)] = 1;
      };
      for (std::int64_t b = 0; b < o.sink_blocks; ++b) mark(b);
      for (std::int64_t b = dq - o.local_blocks + 1; b <= dq; ++b) mark(b);
      if (kind == static_kind::strided)
        for (std::int64_t b = dq - o.stride; b >= 0; b -= o.stride) mark(b);
      if (kind == static_kind::dilated)
        for (std::int64_t m = 1; m <= o.count; ++m) mark(dq - o.local_blocks + 1 - m * o.dilation);
      if (kind == static_kind::power_of_two)
        for (std::int64_t dist = 1; dist <= dq; dist *= 2) mark(dq - dist);
      for (std::int64_t b = 0; b < out.k_blocks; ++b)
        if (on[static_cast<std::size_t>(b)]) idx.push_back(static_cast<std::int32_t>(b));
      ptr.push_back(static_cast<std::int32_t>(idx.size()));
    }
    for (std::int64_t h = 0; h < hq; ++h)
      for (std::int64_t qb = 0; qb < out.q_blocks; ++qb)
        HEED_RETURN_IF_ERROR(out.add_row(idx.data() + ptr[std::size_t(qb)],
                                         ptr[std::size_t(qb + 1)] - ptr[std::size_t(qb)]));
    return status::ok;
  });
}

// Block lists for packed documents (attention/variants/document_mask.hpp): query block qb keeps
// the key blocks from the one holding the start of its first query's document up to its diagonal
// block. The sink is not forced (block 0 belongs to the first document only). Use it with the
// document_mask variant, which masks the partial blocks exactly. seg_start covers positions
// [0, n_positions), n_positions >= every query position.
inline status build_document_pattern(const std::int32_t* seg_start, std::int64_t n_positions,
                                     std::int64_t hq, std::int64_t lq, std::int64_t lk,
                                     std::int64_t q_offset, std::int32_t block_q,
                                     std::int32_t block_k, block_pattern& out) noexcept {
  return detail::no_throw([&]() -> status {
    if (seg_start == nullptr) return status::null_pointer;
    HEED_RETURN_IF_ERROR(out.reset(hq, lq, lk, q_offset, block_q, block_k));
    if (n_positions < out.q_offset + lq) return status::invalid_argument;
    for (std::int64_t p = 0; p < n_positions; ++p)
      if (seg_start[p] < 0 || seg_start[p] > p || (p > 0 && seg_start[p] < seg_start[p - 1]))
        return status::invalid_argument;
    out.force_sink = false;
    out.force_diagonal = true;
    std::vector<std::int32_t> ptr(1, 0), idx;
    for (std::int64_t qb = 0; qb < out.q_blocks; ++qb) {
      std::int64_t first, dq;
      out.diagonal(qb, first, dq);
      const std::int64_t b0 = seg_start[out.q_offset + qb * block_q] / block_k;
      for (std::int64_t b = b0; b <= dq; ++b) idx.push_back(static_cast<std::int32_t>(b));
      ptr.push_back(static_cast<std::int32_t>(idx.size()));
    }
    for (std::int64_t h = 0; h < hq; ++h)
      for (std::int64_t qb = 0; qb < out.q_blocks; ++qb)
        HEED_RETURN_IF_ERROR(out.add_row(idx.data() + ptr[std::size_t(qb)],
                                         ptr[std::size_t(qb + 1)] - ptr[std::size_t(qb)]));
    return status::ok;
  });
}

}  // namespace heed
