// Document (segment) mask for packed prompts: several documents share one sequence and each
// attends only to itself. seg_start[p] is the first position of the document holding position p
// (non-decreasing in p, seg_start[p] <= p); a query at position i sees key j only when
// j >= seg_start[i] (with the causal mask, j <= i as usual). RoPE positions that restart per
// document are the caller's (rotate Q and K with them); distances inside a document are the same.
//
// key_range skips every tile left of the first row's document, so the dense and block-sparse
// kernels skip whole tiles across documents; build_document_pattern (sparse/static_patterns.hpp)
// gives the block-sparse kernel block lists that skip them too. Header-only (pass it to
// dense_attention_t / block_sparse_attention_t); document_starts() builds seg_start from the
// documents' lengths.
#pragma once

#include <algorithm>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/attention/variant.hpp"

namespace heed {

struct document_mask : variant_base {
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_key_range = true;
  const std::int32_t* seg_start = nullptr;  // [n_positions], see above
  std::int64_t n_positions = 0;             // > every query position the kernel sees

  document_mask(const std::int32_t* starts, std::int64_t n) noexcept
      : seg_start(starts), n_positions(n) {}

  // Padding lanes of a tile may carry positions past the end: they read the last entry.
  HEED_FORCE_INLINE std::int32_t start_of(std::int64_t pos) const noexcept {
    return seg_start[std::min<std::int64_t>(std::max<std::int64_t>(pos, 0), n_positions - 1)];
  }

  template <class A>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    alignas(64) std::int32_t qp[I::size], st[I::size];
    c.q_pos.store_aligned(qp);
    for (std::size_t l = 0; l < I::size; ++l) st[l] = start_of(qp[l]);
    return xsimd::bool_cast(c.k_pos >= I::load_aligned(st));
  }
  HEED_FORCE_INLINE void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                                   std::int64_t&) const noexcept {
    k_lo = std::max<std::int64_t>(k_lo, start_of(q_lo));
  }
};

// seg_start for documents of the given lengths packed back to back (n_docs entries, each >= 1):
// out must hold the sum of the lengths.
inline void document_starts(const std::int64_t* lengths, std::int64_t n_docs,
                            std::int32_t* out) noexcept {
  std::int64_t p = 0;
  for (std::int64_t d = 0; d < n_docs; ++d) {
    for (std::int64_t i = 0; i < lengths[d]; ++i) out[p + i] = static_cast<std::int32_t>(p);
    p += lengths[d];
  }
}

}  // namespace heed
