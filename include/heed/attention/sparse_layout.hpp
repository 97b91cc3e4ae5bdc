// Index lists of the sparse attention kernels and their validation.
//
// Block-sparse: per (query head h, query block qb) a ragged list of key blocks in CSR form.
//   Query block qb holds query rows [qb * block_q, (qb + 1) * block_q) (rows, not positions);
//   key block kb holds keys [kb * block_k, (kb + 1) * block_k). Row r = h * q_blocks + qb of the
//   CSR lists its key blocks in col_idx[row_ptr[r] .. row_ptr[r + 1]), strictly ascending.
//   force_sink adds key block 0 to every row; force_diagonal adds the key blocks holding the
//   positions (q_offset + i) of the block's own queries. Inside the kept blocks the causal mask,
//   the window and every other variant mask still apply element by element.
//
// Vertical-slash: per query head h a set of key columns (v_idx[v_ptr[h] .. v_ptr[h + 1]),
//   strictly ascending key indices) and a set of diagonals (s_off[s_ptr[h] .. s_ptr[h + 1]),
//   strictly ascending offsets t = q_pos - k_pos). Query i (position q_offset + i) sees key j when
//   j is a listed column or (q_offset + i) - j is a listed offset, and the causal mask and the
//   variant allow it.
#pragma once

#include <cstdint>

#include "heed/attention/params.hpp"
#include "heed/config.hpp"
#include "heed/core/status.hpp"

namespace heed {

struct block_sparse_layout {
  std::int32_t block_q = 64;              // 32, 64, 128 or 256
  std::int32_t block_k = 64;              // 32, 64, 128 or 256
  const std::int32_t* row_ptr = nullptr;  // [Hq * q_blocks + 1], row_ptr[0] == 0, non-decreasing
  const std::int32_t* col_idx = nullptr;  // [row_ptr[last]] key blocks
  bool force_sink = true;
  bool force_diagonal = true;
};

struct vertical_slash_layout {
  const std::int32_t* v_ptr = nullptr;  // [Hq + 1]
  const std::int32_t* v_idx = nullptr;  // key indices in [0, Lk)
  const std::int32_t* s_ptr = nullptr;  // [Hq + 1]
  const std::int32_t* s_off = nullptr;  // offsets q_pos - k_pos in (-2^30, 2^30)
};

HEED_ISA_BEGIN
inline constexpr bool valid_sparse_block(std::int32_t b) noexcept {
  return b == 32 || b == 64 || b == 128 || b == 256;
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept { return (a + b - 1) / b; }

namespace detail {
// Checks one CSR: ptr[0] == 0, non-decreasing, entries strictly ascending within [lo, hi).
inline status validate_csr(const std::int32_t* ptr, const std::int32_t* idx, std::int64_t rows,
                           std::int64_t lo, std::int64_t hi) noexcept {
  if (ptr == nullptr) return status::null_pointer;
  if (ptr[0] != 0) return status::invalid_argument;
  for (std::int64_t r = 0; r < rows; ++r)
    if (ptr[r + 1] < ptr[r]) return status::invalid_argument;
  if (ptr[rows] > 0 && idx == nullptr) return status::null_pointer;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int32_t e = ptr[r]; e < ptr[r + 1]; ++e) {
      if (idx[e] < lo || idx[e] >= hi) return status::invalid_argument;         // out of range
      if (e > ptr[r] && idx[e] <= idx[e - 1]) return status::invalid_argument;  // unsorted/dup
    }
  }
  return status::ok;
}
}  // namespace detail

// The dense checks, the decode tap (not reported by the sparse kernels), then the lists.
inline status validate(const dense_params& p, const block_sparse_layout& l) noexcept {
  HEED_RETURN_IF_ERROR(validate_dense(p));
  if (p.prob_tap != nullptr) return status::invalid_argument;
  if (!valid_sparse_block(l.block_q) || !valid_sparse_block(l.block_k))
    return status::invalid_argument;
  const std::int64_t rows = p.q_heads() * ceil_div(p.q_len(), l.block_q);
  return detail::validate_csr(l.row_ptr, l.col_idx, rows, 0, ceil_div(p.kv_len(), l.block_k));
}

inline status validate(const dense_params& p, const vertical_slash_layout& l) noexcept {
  HEED_RETURN_IF_ERROR(validate_dense(p));
  if (p.prob_tap != nullptr) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::validate_csr(l.v_ptr, l.v_idx, p.q_heads(), 0, p.kv_len()));
  constexpr std::int64_t lim = std::int64_t(1) << 30;
  return detail::validate_csr(l.s_ptr, l.s_off, p.q_heads(), -lim + 1, lim);
}
HEED_ISA_END

}  // namespace heed
