// Prefill's tile: its shape per ISA (dense and sparse), the scratch of one task and the one
// function that carves (and sizes) it, and how many query heads a task attends.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/core/workspace.hpp"
#include "heed/simd/arch.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// The tile of a prefill kernel: QVn query vectors of the ISA's width (BR queries) against chunks of
// BC keys.
template <class A, int QVn>
struct prefill_cfg {
  static constexpr int L = static_cast<int>(xsimd::batch<float, A>::size);
  static constexpr int QV = QVn;                         // query vectors per tile
  static constexpr int BR = QV * L;                      // queries per tile
  static constexpr int BC = 64;                          // keys per tile (tried 96, 128: slower)
  static constexpr int NK = simd::is_avx512<A> ? 8 : 4;  // keys per S micro-block
  static constexpr int NC = simd::is_avx512<A> ? 8 : 4;  // columns per PV micro-block
  static constexpr int G = 4;  // query heads of one KV head attended together (GQA)
  static_assert(BC % NK == 0, "key tile must be a multiple of the micro-block");
  static_assert(BR <= 32, "row masks of the sparse kernels are 32-bit words");
};

// Dense prefill's tile. The S micro-block holds NK x QV accumulators, QV query vectors and one
// broadcast key value: with 16 vector registers (AVX2, SSE2) 3 query vectors fill them exactly
// (4 x 3 + 3 + 1); with 32 (AVX-512: 8 x QV accumulators), 2 measured fastest
// (docs/kernel_notes.md).
template <class A>
using dense_tile = prefill_cfg<A, simd::vector_registers<A> <= 16 ? 3 : 2>;
// The sparse kernels' tile: 2 query vectors on every ISA, since a block-sparse layout's block_q
// must be a multiple of the tile height (16 or 32 rows here, 8 with SSE2).
template <class A>
using sparse_tile = prefill_cfg<A, 2>;

// Scratch of one prefill task (floats).
struct prefill_scratch {
  float* qt;  // [d][BR] the tile's queries, transposed and pre-scaled
  float* st;  // [BC][BR] logits, then probabilities
  float* ot;  // [d][BR] the output, transposed
  float* kc;  // [BC][d] packed keys (K/V not f32, or strided rows read by several heads)
  float* vc;  // [BC][d] converted values
};

// The scratch of head g of one task of tile C (a prefill_cfg) that attends `heads` query heads:
// each head its own QT, OT and S, then the K and V chunk buffers the heads share (when convert).
// `base` is aligned; with base null nothing is carved and only the size is computed (*floats):
// the one place this layout is written.
template <class C>
HEED_FORCE_INLINE prefill_scratch carve_prefill(float* base, std::int64_t d, bool convert,
                                                int heads = 1, int g = 0,
                                                std::size_t* floats = nullptr) noexcept {
  workspace_carver c(base);
  prefill_scratch s{};
  for (int h = 0; h < heads; ++h) {
    float* qt = c.take<float>(std::size_t(d) * C::BR);
    float* ot = c.take<float>(std::size_t(d) * C::BR);
    float* st = c.take<float>(std::size_t(C::BC) * C::BR);
    if (h == g) {
      s.qt = qt;
      s.ot = ot;
      s.st = st;
    }
  }
  s.kc = convert ? c.take<float>(std::size_t(C::BC) * d) : nullptr;
  s.vc = convert ? c.take<float>(std::size_t(C::BC) * d) : nullptr;
  if (floats) *floats = c.bytes_taken() / sizeof(float);
  return s;
}

// Floats of the scratch of one task (carve_prefill's layout).
template <class C>
inline std::size_t prefill_scratch_floats(std::int64_t d, bool convert, int heads = 1) noexcept {
  std::size_t floats = 0;
  (void)carve_prefill<C>(nullptr, d, convert, heads, 0, &floats);
  return floats;
}

// Query heads per prefill task: up to g_max heads of one KV head, so that each K/V chunk is read
// from memory once and from cache by the other heads (and converted or packed once).
HEED_FORCE_INLINE int prefill_heads_per_task(const dense_params& p, int g_max) noexcept {
  return static_cast<int>(std::min<std::int64_t>(p.q_heads() / p.kv_heads(), g_max));
}
// K/V chunks are copied into contiguous f32 rows when they are not f32 already, or when their
// rows are strided and more than one head reads them.
HEED_FORCE_INLINE bool prefill_packs(const dense_params& p, int heads) noexcept {
  return p.k.type != dtype::f32 ||
         (heads > 1 && (p.k.seq_stride != p.head_dim() || p.v.seq_stride != p.head_dim()));
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
