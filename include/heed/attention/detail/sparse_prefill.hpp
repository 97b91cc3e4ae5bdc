// Sparse prefill: the dense prefill kernel's tiles, fed only the keys a layout keeps.
//
// A task is one (query head, tile of BR queries): each head has its own layout, so unlike the
// dense kernel a task does not take several heads of a KV head. A tile lies inside
// one query block (block_q is a multiple of every BR). Block-sparse tiles walk the union of their
// block list, the sink block and the diagonal blocks in ascending order and attend each block's
// contiguous keys in place. Vertical-slash tiles collect the keys their rows need (each listed
// diagonal contributes at most BR keys, each listed column one) with a per-key 32-bit row mask,
// sort them and attend them with the mask in chunks of BC: runs of consecutive keys in place,
// anything else gathered into scratch.
// Private header: include heed/attention/sparse.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "heed/attention/detail/dense_prefill.hpp"
#include "heed/attention/sparse_layout.hpp"
#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

template <class A, int D, class Variant, class Obs>
struct block_sparse_kernel {
  using K = prefill_kernel<A, D, Variant, Obs, sparse_tile<A>>;
  static constexpr int BR = K::BR;

  K k;
  const block_sparse_layout& l;
  std::int64_t q_blocks, k_blocks;

  block_sparse_kernel(const dense_params& p, const block_sparse_layout& lay, const Variant& v,
                      Obs& o, float* base, std::size_t per_thread) noexcept
      : k(p, v, o, base, per_thread), l(lay) {
    q_blocks = ceil_div(k.lq, l.block_q);
    k_blocks = ceil_div(k.lk, l.block_k);
  }

  void run_task(std::int64_t task, int thread) const noexcept {
    const std::int64_t tile = k.n_tiles - 1 - task / k.hq;
    const int h = static_cast<int>(task % k.hq);
    const prefill_scratch s =
        carve_prefill<sparse_tile<A>>(k.scratch_base + k.scratch_floats * thread, k.d, k.convert);
    typename K::tile_state t{};
    k.begin_tile(h, tile, s, t);

    std::int64_t k_lo, k_hi;
    k.key_bounds(t, k_lo, k_hi);

    const std::int64_t qb = t.i0 / l.block_q;
    const std::int64_t row = h * q_blocks + qb;
    const std::int32_t* col = l.col_idx + l.row_ptr[row];
    const std::int32_t* col_end = l.col_idx + l.row_ptr[row + 1];
    // Forced blocks: the sink block, and the diagonal range [d_lo, d_hi] of the query block.
    std::int64_t sink = l.force_sink ? 0 : k_blocks;
    std::int64_t d_lo = k_blocks, d_hi = -1;
    if (l.force_diagonal) {
      const std::int64_t first = k.offset + qb * l.block_q;
      const std::int64_t last = k.offset + std::min(k.lq, (qb + 1) * l.block_q) - 1;
      d_lo = first / l.block_k;
      d_hi = std::min(k_blocks - 1, last / l.block_k);
      if (d_lo > d_hi) d_lo = k_blocks;
    }
    // Ascending union of the three sources.
    for (;;) {
      std::int64_t b = k_blocks;
      if (col != col_end) b = *col;
      b = std::min(b, sink);
      b = std::min(b, d_lo);
      if (b >= k_blocks) break;
      if (col != col_end && *col == b) ++col;
      if (sink == b) sink = k_blocks;
      if (d_lo == b) d_lo = d_lo + 1 <= d_hi ? d_lo + 1 : k_blocks;
      const std::int64_t lo = std::max(k_lo, b * l.block_k);
      const std::int64_t hi = std::min(k_hi, (b + 1) * l.block_k);
      if (lo < hi) k.key_range(t, s, lo, hi);
    }
    k.end_tile(t, s);
  }
};

// Per-thread scratch of the vertical-slash kernel beyond the prefill scratch: the tile's key
// list and the row mask of every key (indexed by key, zero between tiles).
struct vs_scratch {
  std::int32_t* keys;    // [Lk]
  std::uint32_t* bits;   // [Lk]
  std::uint32_t* chunk;  // [BC] row masks of the current chunk
};

// The ascending order of key indices for std::sort and std::lower_bound. A type of this ISA's
// namespace (HEED_ISA_BEGIN, heed/config.hpp) puts its name into theirs: where they are not
// inlined (-O1), std::sort<int*> would otherwise be one weak symbol for every ISA.
struct key_less {
  bool operator()(std::int32_t a, std::int32_t b) const noexcept { return a < b; }
};

// One thread's scratch of the vertical-slash kernel: the prefill tile's (carve_prefill, at the
// same base), then the keys, the row masks and the chunk's masks. With base null nothing is
// carved and only the size is computed (*bytes): the one place this layout is written.
template <class A>
inline vs_scratch carve_vs(char* base, std::int64_t d, std::int64_t lk,
                           std::size_t* bytes = nullptr) noexcept {
  workspace_carver c(base);
  (void)c.take<float>(prefill_scratch_floats<sparse_tile<A>>(d, true));
  vs_scratch x;
  x.keys = c.take<std::int32_t>(std::size_t(lk));
  x.bits = c.take<std::uint32_t>(std::size_t(lk));
  x.chunk = c.take<std::uint32_t>(std::size_t(sparse_tile<A>::BC));
  if (bytes) *bytes = c.bytes_taken();
  return x;
}

template <class A>
inline std::size_t vs_thread_bytes(std::int64_t d, std::int64_t lk) noexcept {
  std::size_t bytes = 0;
  (void)carve_vs<A>(nullptr, d, lk, &bytes);
  return bytes;
}

template <class A, int D, class Variant, class Obs>
struct vertical_slash_kernel {
  using K = prefill_kernel<A, D, Variant, Obs, sparse_tile<A>>;
  static constexpr int BR = K::BR, BC = K::BC;

  K k;
  const vertical_slash_layout& l;
  char* base;
  std::size_t per_thread;

  vertical_slash_kernel(const dense_params& p, const vertical_slash_layout& lay, const Variant& v,
                        Obs& o, char* b, std::size_t bytes) noexcept
      : k(p, v, o, nullptr, 0), l(lay), base(b), per_thread(bytes) {}

  vs_scratch extra(int thread) const noexcept {
    return carve_vs<A>(base + per_thread * std::size_t(thread), k.d, k.lk);
  }

  // The row masks start at zero; each tile clears what it set.
  void clear(int threads) const noexcept {
    for (int th = 0; th < threads; ++th)
      std::memset(extra(th).bits, 0, std::size_t(k.lk) * sizeof(std::uint32_t));
  }

  void run_task(std::int64_t task, int thread) const noexcept {
    const std::int64_t tile = k.n_tiles - 1 - task / k.hq;
    const int h = static_cast<int>(task % k.hq);
    const prefill_scratch s = carve_prefill<sparse_tile<A>>(
        reinterpret_cast<float*>(base + per_thread * std::size_t(thread)), k.d, true);
    const vs_scratch x = extra(thread);
    typename K::tile_state t{};
    k.begin_tile(h, tile, s, t);

    std::int64_t k_lo, k_hi;
    k.key_bounds(t, k_lo, k_hi);

    // Collect the keys and their row masks.
    std::int64_t n = 0;
    for (std::int32_t e = l.s_ptr[h]; e < l.s_ptr[h + 1]; ++e) {
      const std::int64_t o = l.s_off[e];
      // Row r sees key pos0 + r - o; keep the rows whose key falls in [k_lo, k_hi).
      const std::int64_t r_lo = std::max<std::int64_t>(0, k_lo + o - t.pos0);
      const std::int64_t r_hi = std::min<std::int64_t>(t.nrows, k_hi + o - t.pos0);
      for (std::int64_t r = r_lo; r < r_hi; ++r) {
        const std::int64_t j = t.pos0 + r - o;
        if (x.bits[j] == 0) x.keys[n++] = static_cast<std::int32_t>(j);
        x.bits[j] |= std::uint32_t(1) << r;
      }
    }
    const std::uint32_t all = t.nrows >= 32 ? ~std::uint32_t(0) : (std::uint32_t(1) << t.nrows) - 1;
    {
      const std::int32_t* v = l.v_idx + l.v_ptr[h];
      const std::int32_t* v_end = l.v_idx + l.v_ptr[h + 1];
      v = std::lower_bound(v, v_end, static_cast<std::int32_t>(k_lo), key_less{});
      for (; v != v_end && *v < k_hi; ++v) {
        if (x.bits[*v] == 0) x.keys[n++] = *v;
        x.bits[*v] = all;
      }
    }

    // Attend them in ascending chunks of up to BC keys: a chunk of consecutive f32 keys is read
    // in place (local diagonals give long runs), any other chunk is gathered into scratch.
    std::sort(x.keys, x.keys + n, key_less{});
    const float* kbase = static_cast<const float*>(k.p.k.data);
    const float* vbase = static_cast<const float*>(k.p.v.data);
    for (std::int64_t c0 = 0; c0 < n; c0 += BC) {
      const int nk = static_cast<int>(std::min<std::int64_t>(BC, n - c0));
      const std::int32_t* idx = x.keys + c0;
      for (int j = 0; j < nk; ++j) x.chunk[j] = x.bits[idx[j]];
      if (!k.convert && idx[nk - 1] - idx[0] == nk - 1) {
        k.template chunk<false, true>(t, s, kbase + k.p.k.offset(idx[0], t.kvh),
                                      vbase + k.p.v.offset(idx[0], t.kvh), k.p.k.seq_stride,
                                      k.p.v.seq_stride, nk, idx[0], nullptr, x.chunk);
        continue;
      }
      k.pack_rows(k.p, t.kvh, 0, idx, nk, false, 0, s.kc, s.vc, k.rs);
      k.template chunk<true, true>(t, s, s.kc, s.vc, k.d, k.d, nk, 0, idx, x.chunk);
    }
    for (std::int64_t e = 0; e < n; ++e) x.bits[x.keys[e]] = 0;
    k.end_tile(t, s);
  }
};

template <class A>
inline std::size_t block_sparse_thread_floats(const dense_params& p) noexcept {
  return prefill_scratch_floats<sparse_tile<A>>(p.head_dim(), p.k.type != dtype::f32);
}

template <class A>
inline std::size_t block_sparse_workspace_size(const dense_params& p, int threads) noexcept {
  return block_sparse_thread_floats<A>(p) * 4 * std::size_t(threads) + workspace_alignment;
}

template <class A>
inline std::size_t vertical_slash_workspace_size(const dense_params& p, int threads) noexcept {
  return vs_thread_bytes<A>(p.head_dim(), p.kv_len()) * std::size_t(threads) + workspace_alignment;
}

template <class A, int D, class Variant, class Obs>
void run_block_sparse(const dense_params& p, const block_sparse_layout& l, const Variant& var,
                      Obs& obs, workspace ws, executor& ex) noexcept {
  dassert_kernel_entry<D>(p, ws.data);
  HEED_DASSERT(ws.size >= block_sparse_workspace_size<A>(p, ex.concurrency()));
  const std::size_t per_thread = block_sparse_thread_floats<A>(p);
  float* base = static_cast<float*>(workspace_carver::align_base(ws.data));
  const block_sparse_kernel<A, D, Variant, Obs> k(p, l, var, obs, base, per_thread);
  ex.parallel_for(k.k.n_tiles * k.k.hq,
                  [&k](std::int64_t task, int thread) { k.run_task(task, thread); });
}

template <class A, int D, class Variant, class Obs>
void run_vertical_slash(const dense_params& p, const vertical_slash_layout& l, const Variant& var,
                        Obs& obs, workspace ws, executor& ex) noexcept {
  dassert_kernel_entry<D>(p, ws.data);
  HEED_DASSERT(ws.size >= vertical_slash_workspace_size<A>(p, ex.concurrency()));
  char* base = static_cast<char*>(workspace_carver::align_base(ws.data));
  const vertical_slash_kernel<A, D, Variant, Obs> k(p, l, var, obs, base,
                                                    vs_thread_bytes<A>(p.head_dim(), p.kv_len()));
  k.clear(ex.concurrency());
  ex.parallel_for(k.k.n_tiles * k.k.hq,
                  [&k](std::int64_t task, int thread) { k.run_task(task, thread); });
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
