// Owning index lists for the sparse kernels: what the pattern builders and estimators produce.
//
// block_pattern holds a block-sparse CSR (attention/sparse_layout.hpp) for Hq heads; vs_pattern
// holds vertical-slash lists. Both keep their vectors' capacity across rebuilds, so an estimator
// run every prefill allocates only when a pattern grows. layout() gives the non-owning view the
// kernels take (valid while the pattern lives and is not rebuilt).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "heed/attention/sparse_layout.hpp"
#include "heed/core/detail/no_throw.hpp"
#include "heed/core/status.hpp"

namespace heed {

struct block_pattern {
  std::int32_t block_q = 64, block_k = 64;
  bool force_sink = true, force_diagonal = true;
  std::int64_t heads = 0, q_len = 0, kv_len = 0, q_offset = 0;  // q_offset resolved (>= 0)
  std::int64_t q_blocks = 0, k_blocks = 0;
  std::vector<std::int32_t> row_ptr, col_idx;

  // Empties the lists for a new shape (q_offset -1 means kv_len - q_len).
  status reset(std::int64_t hq, std::int64_t lq, std::int64_t lk, std::int64_t offset,
               std::int32_t bq, std::int32_t bk) noexcept {
    return detail::no_throw([&]() -> status {
      if (hq < 1 || lq < 1 || lk < 1 || offset < -1 || !valid_sparse_block(bq) ||
          !valid_sparse_block(bk) || lq > (std::int64_t(1) << 30) || lk > (std::int64_t(1) << 30))
        return status::invalid_argument;
      if (offset == -1 && lk < lq) return status::invalid_argument;
      heads = hq;
      q_len = lq;
      kv_len = lk;
      q_offset = offset >= 0 ? offset : lk - lq;
      block_q = bq;
      block_k = bk;
      q_blocks = ceil_div(lq, bq);
      k_blocks = ceil_div(lk, bk);
      if (heads * q_blocks * k_blocks >= (std::int64_t(1) << 31)) return status::invalid_argument;
      row_ptr.assign(1, 0);
      col_idx.clear();
      return status::ok;
    });
  }
  // Appends the next row (head-major, then query block): strictly ascending key blocks.
  status add_row(const std::int32_t* blocks, std::int64_t n) noexcept {
    return detail::no_throw([&]() -> status {
      col_idx.insert(col_idx.end(), blocks, blocks + n);
      row_ptr.push_back(static_cast<std::int32_t>(col_idx.size()));
      return status::ok;
    });
  }
  bool complete() const noexcept {
    return static_cast<std::int64_t>(row_ptr.size()) == heads * q_blocks + 1;
  }
  // Diagonal key blocks of query block qb: [lo, hi] (empty when lo > hi).
  void diagonal(std::int64_t qb, std::int64_t& lo, std::int64_t& hi) const noexcept {
    lo = (q_offset + qb * block_q) / block_k;
    hi = std::min(k_blocks - 1, (q_offset + std::min(q_len, (qb + 1) * block_q) - 1) / block_k);
  }
  block_sparse_layout layout() const noexcept {
    block_sparse_layout l;
    l.block_q = block_q;
    l.block_k = block_k;
    l.row_ptr = row_ptr.data();
    l.col_idx = col_idx.data();
    l.force_sink = force_sink;
    l.force_diagonal = force_diagonal;
    return l;
  }
};

struct vs_pattern {
  std::vector<std::int32_t> v_ptr, v_idx, s_ptr, s_off;

  void clear() {  // keeps capacity: does not allocate after the first use
    v_ptr.assign(1, 0);
    s_ptr.assign(1, 0);
    v_idx.clear();
    s_off.clear();
  }
  // Appends the next head's columns and offsets (each strictly ascending).
  status add_head(const std::int32_t* cols, std::int64_t nc, const std::int32_t* offs,
                  std::int64_t no) noexcept {
    return detail::no_throw([&]() -> status {
      v_idx.insert(v_idx.end(), cols, cols + nc);
      s_off.insert(s_off.end(), offs, offs + no);
      v_ptr.push_back(static_cast<std::int32_t>(v_idx.size()));
      s_ptr.push_back(static_cast<std::int32_t>(s_off.size()));
      return status::ok;
    });
  }
  vertical_slash_layout layout() const noexcept {
    vertical_slash_layout l;
    l.v_ptr = v_ptr.data();
    l.v_idx = v_idx.data();
    l.s_ptr = s_ptr.data();
    l.s_off = s_off.data();
    return l;
  }
};

// Fraction of the (query, key) pairs the causal (or full) dense computation visits that head h
// of the block pattern keeps, forced blocks included: the work ratio of the sparse kernel.
inline double block_density_head(const block_pattern& pat, std::int64_t h, bool causal) {
  double kept = 0.0, total = 0.0;
  std::vector<char> on(static_cast<std::size_t>(pat.k_blocks));
  for (std::int64_t qb = 0; qb < pat.q_blocks; ++qb) {
    std::fill(on.begin(), on.end(), 0);
    const std::int64_t r = h * pat.q_blocks + qb;
    for (std::int32_t e = pat.row_ptr[r]; e < pat.row_ptr[r + 1]; ++e) on[pat.col_idx[e]] = 1;
    if (pat.force_sink) on[0] = 1;
    if (pat.force_diagonal) {
      std::int64_t lo, hi;
      pat.diagonal(qb, lo, hi);
      for (std::int64_t b = lo; b <= hi; ++b) on[b] = 1;
    }
    const std::int64_t i_end = std::min(pat.q_len, (qb + 1) * pat.block_q);
    for (std::int64_t i = qb * pat.block_q; i < i_end; ++i) {
      const std::int64_t seen = causal ? std::min(pat.kv_len, pat.q_offset + i + 1) : pat.kv_len;
      total += double(seen);
      for (std::int64_t b = 0; b * pat.block_k < seen; ++b)
        if (on[b]) kept += double(std::min<std::int64_t>(pat.block_k, seen - b * pat.block_k));
    }
  }
  return total > 0.0 ? kept / total : 0.0;
}

// The same over all heads (each head has the same number of pairs: the mean of the heads).
inline double block_density(const block_pattern& pat, bool causal) {
  double sum = 0.0;
  for (std::int64_t h = 0; h < pat.heads; ++h) sum += block_density_head(pat, h, causal);
  return pat.heads > 0 ? sum / double(pat.heads) : 0.0;
}

}  // namespace heed
