// Prefill: tiled flash attention with queries in the SIMD lanes.
//
// A task is one tile of BR queries of up to G query heads that share a KV head (GQA): each chunk
// of BC keys is packed once into contiguous f32 rows (converted from f16 / bf16, or copied when
// the rows are strided, as in [seq, heads, d]; the next chunk is prefetched meanwhile), scored
// by every head of the set while it sits in L1, then multiplied into every head's output. The
// sparse kernels use the same tile with one head per task. The tile's queries are packed transposed
// (QT[k][r], pre-scaled by scale * log2 e), so that
//   S^T = K_tile . Q^T   is broadcast(K[j][k]) x QT[k][lanes] FMAs into NK x QV registers,
//   O^T += V^T . P^T     is broadcast(V[j][c]) x PT[j][lanes] FMAs into NC x QV registers,
// and the online softmax (max, exp, sums) is purely vertical: no horizontal reductions.
// Causal tiles entirely in the future are skipped; only tiles that cross the diagonal are masked.
// Stages: prefill_tile.hpp (tile shape, scratch), prefill_pack.hpp (K/V chunks to f32 rows),
// prefill_qk.hpp (S^T = K Q^T), online_softmax.hpp (the softmax rule, shared with decode),
// prefill_pv.hpp (O^T += V^T P^T); this header: the kernel (tiles, masks, epilogue).
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstdint>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/attention/detail/online_softmax.hpp"
#include "heed/attention/detail/prefill_pack.hpp"
#include "heed/attention/detail/prefill_pv.hpp"
#include "heed/attention/detail/prefill_qk.hpp"
#include "heed/attention/detail/prefill_tile.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/convert.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

template <class A, int D, class Variant, class Obs, class Tile = dense_tile<A>>
struct prefill_kernel {
  using B = xsimd::batch<float, A>;
  using I = xsimd::batch<std::int32_t, A>;
  using C = Tile;
  static constexpr int L = C::L, QV = C::QV, BR = C::BR, BC = C::BC, NK = C::NK, NC = C::NC;
  static constexpr bool kEntropy = observer_traits<Obs>::row_stats;

  const dense_params& p;
  const Variant& var;
  Obs& obs;
  float* scratch_base;
  std::size_t scratch_floats;
  std::int64_t d, lq, lk, hq, group, offset, n_tiles;
  simd::row_shape rs{0};  // of the K and V rows (quantized rows: their group)
  float qscale;
  bool convert;          // K/V are not f32: every chunk is packed (converted) into f32 rows
  kv_pack_fn pack_rows;  // packs a chunk from the stored type

  prefill_kernel(const dense_params& params, const Variant& v, Obs& o, float* base,
                 std::size_t per_thread) noexcept
      : p(params), var(v), obs(o), scratch_base(base), scratch_floats(per_thread) {
    d = D ? D : p.head_dim();
    rs = simd::row_shape(d, p.k.quant_group());
    lq = p.q_len();
    lk = p.kv_len();
    hq = p.q_heads();
    group = hq / p.kv_heads();
    offset = p.offset();
    n_tiles = (lq + BR - 1) / BR;
    qscale = p.logit_scale() * simd::log2e;
    convert = p.k.type != dtype::f32;
    pack_rows = kv_packer<A, D>(p.k);
  }

  std::int64_t head_sets() const noexcept { return (group + C::G - 1) / C::G * p.kv_heads(); }
  std::int64_t tasks() const noexcept { return n_tiles * head_sets(); }

  // Tasks: heaviest (last) query tiles first so dynamic scheduling balances causal work.
  void run_task(std::int64_t task, int thread) const noexcept {
    HEED_DASSERT(task >= 0 && task < tasks() && thread >= 0);
    const std::int64_t sets = head_sets();
    const std::int64_t tile = n_tiles - 1 - task / sets;
    const std::int64_t set = task % sets;
    const std::int64_t per_kv = (group + C::G - 1) / C::G;
    const std::int64_t h0 = (set / per_kv) * group + (set % per_kv) * C::G;
    const int heads = static_cast<int>(std::min<std::int64_t>(C::G, group - (h0 % group)));
    run_tiles(static_cast<int>(h0), heads, tile, scratch_base + scratch_floats * thread);
  }

  // Running state of one query tile.
  struct tile_state {
    int h, kvh, nrows;
    std::int64_t i0, pos0;
    B m[QV], dsum[QV], tsum[QV];
    B alpha[QV];  // rescale of the output for the last scored chunk
    I qpos[QV];
  };

  // The same query tile of heads h0 .. h0 + heads - 1 (one KV head), chunk by chunk.
  void run_tiles(int h0, int heads, std::int64_t tile, float* base) const noexcept {
    const int gmax = prefill_heads_per_task(p, C::G);
    HEED_DASSERT(heads >= 1 && heads <= gmax && gmax <= C::G);  // the scratch holds gmax heads
    HEED_DASSERT(h0 >= 0 && h0 + heads <= hq && h0 / group == (h0 + heads - 1) / group);
    const bool pack = prefill_packs(p, gmax);
    prefill_scratch s[C::G];
    tile_state t[C::G];
    for (int g = 0; g < heads; ++g) {
      s[g] = carve_prefill<C>(base, d, pack, gmax, g);
      t[g] = tile_state{};
      begin_tile(h0 + g, tile, s[g], t[g]);
    }
    std::int64_t k_lo, k_hi;
    key_bounds(t[0], k_lo, k_hi);
    const float* kbase = static_cast<const float*>(p.k.data);
    const float* vbase = static_cast<const float*>(p.v.data);
    const int kvh = t[0].kvh;
    for (std::int64_t j0 = k_lo; j0 < k_hi; j0 += BC) {
      const int nk = static_cast<int>(std::min<std::int64_t>(BC, k_hi - j0));
      if (pack) {
        const prefill_scratch& s0 = s[0];
        // While packing this chunk, ask for the next one (into L2): strided rows are not
        // prefetched by the hardware and would stall the next packing on L3 latency. Rows 8
        // ahead of the packing go from L2 (fetched one chunk ago) into L1.
        const bool more = j0 + BC < k_hi;
        pack_rows(p, kvh, j0, nullptr, nk, true, more ? BC : 0, s0.kc, s0.vc, rs);
        // All heads' scores (the K chunk stays in L1), then all heads' outputs (the V chunk).
        for (int g = 0; g < heads; ++g)
          scores<false, false>(t[g], s[g], s0.kc, d, nk, j0, nullptr, nullptr);
        for (int g = 0; g < heads; ++g)
          pv_all<A, NC, QV>(s[g].ot, s[g].st, s0.vc, d, d, nk, t[g].alpha);
      } else {  // f32 rows read in place
        const float* kt = kbase + p.k.offset(j0, kvh);
        const float* vt = vbase + p.v.offset(j0, kvh);
        for (int g = 0; g < heads; ++g)
          scores<false, false>(t[g], s[g], kt, p.k.seq_stride, nk, j0, nullptr, nullptr);
        for (int g = 0; g < heads; ++g)
          pv_all<A, NC, QV>(s[g].ot, s[g].st, vt, p.v.seq_stride, d, nk, t[g].alpha);
      }
    }
    for (int g = 0; g < heads; ++g) end_tile(t[g], s[g]);
  }

  // The keys [k_lo, k_hi) any row of the tile may see (causal limit, variant key range).
  HEED_FORCE_INLINE void key_bounds(const tile_state& t, std::int64_t& k_lo,
                                    std::int64_t& k_hi) const noexcept {
    k_lo = 0;
    k_hi = lk;
    if (p.causal) k_hi = std::min(lk, t.pos0 + t.nrows);
    if constexpr (Variant::has_key_range) var.key_range(t.pos0, t.pos0 + t.nrows - 1, k_lo, k_hi);
    k_lo = std::max<std::int64_t>(k_lo, 0);
    HEED_DASSERT(k_hi <= lk);  // a variant's key range narrows, never widens
  }

  // Packs the tile's queries (Q^T, pre-scaled; padding rows zero) and resets the running state.
  void begin_tile(int h, std::int64_t tile, const prefill_scratch& s,
                  tile_state& t) const noexcept {
    t.h = h;
    t.kvh = static_cast<int>(h / group);
    t.i0 = tile * BR;
    t.nrows = static_cast<int>(std::min<std::int64_t>(BR, lq - t.i0));
    HEED_DASSERT(h >= 0 && h < hq && t.nrows >= 1 && t.nrows <= BR);
    t.pos0 = offset + t.i0;
    const float* qbase = static_cast<const float*>(p.q.data);
    for (int r = 0; r < BR; ++r) {
      if (r < t.nrows) {
        const float* qrow = qbase + p.q.offset(t.i0 + r, h);
        const float f = qscale * row_query_scale(var, p, h, t.pos0 + r);
        for (std::int64_t k = 0; k < d; ++k) s.qt[k * BR + r] = qrow[k] * f;
      } else {
        for (std::int64_t k = 0; k < d; ++k) s.qt[k * BR + r] = 0.f;
      }
    }
    for (int v = 0; v < QV; ++v) {
      t.m[v] = B(neg_inf);
      t.dsum[v] = B(0.f);
      t.tsum[v] = B(0.f);
    }
    for (std::int64_t i = 0; i < d * BR; i += L) B(0.f).store_aligned(s.ot + i);
    const I iota = lane_iota<A>();
    for (int v = 0; v < QV; ++v) t.qpos[v] = iota + I(static_cast<std::int32_t>(t.pos0 + v * L));
  }

  // Attends the tile to the contiguous keys [k_lo, k_hi), in chunks of BC.
  void key_range(tile_state& t, const prefill_scratch& s, std::int64_t k_lo,
                 std::int64_t k_hi) const noexcept {
    const float* kbase = static_cast<const float*>(p.k.data);
    const float* vbase = static_cast<const float*>(p.v.data);
    for (std::int64_t j0 = k_lo; j0 < k_hi; j0 += BC) {
      const int nk = static_cast<int>(std::min<std::int64_t>(BC, k_hi - j0));
      // K and V rows of this chunk as f32 rows with a stride.
      if (convert) {
        pack_rows(p, t.kvh, j0, nullptr, nk, false, 0, s.kc, s.vc, rs);
        chunk<false, false>(t, s, s.kc, s.vc, d, d, nk, j0, nullptr, nullptr);
      } else {
        chunk<false, false>(t, s, kbase + p.k.offset(j0, t.kvh), vbase + p.v.offset(j0, t.kvh),
                            p.k.seq_stride, p.v.seq_stride, nk, j0, nullptr, nullptr);
      }
    }
  }

  // Attends the tile to nk (<= BC) keys whose f32 rows are kt / vt (row strides kstride /
  // vstride). Key n sits at position j0 + n, or kidx[n] when Gathered. When Masked, bit r of
  // rowbits[n] says whether tile row r may see key n (on top of the causal mask and variant).
  template <bool Gathered, bool Masked>
  HEED_FORCE_INLINE void chunk(tile_state& t, const prefill_scratch& s, const float* kt,
                               const float* vt, std::int64_t kstride, std::int64_t vstride, int nk,
                               std::int64_t j0, const std::int32_t* kidx,
                               const std::uint32_t* rowbits) const noexcept {
    scores<Gathered, Masked>(t, s, kt, kstride, nk, j0, kidx, rowbits);
    pv_all<A, NC, QV>(s.ot, s.st, vt, vstride, d, nk, t.alpha);
  }

  // One logit of the tile: the variant's transform and mask, the causal cut, the sparse row mask.
  template <bool Gathered, bool Masked>
  HEED_FORCE_INLINE B shape_logit(const Variant& vr, B sv, const tile_state& t, int v, int n,
                                  bool causal_cut, std::int64_t j0, const std::int32_t* kidx,
                                  const std::uint32_t* rowbits) const noexcept {
    const std::int32_t kpos = Gathered ? kidx[n] : static_cast<std::int32_t>(j0 + n);
    if constexpr (Variant::has_logits_transform) {
      const lane_ctx<A> ctx{t.h, t.kvh, t.qpos[v], I(kpos)};
      sv = transform_log2(vr, sv, ctx);
    }
    if constexpr (Variant::has_logits_mask) {
      const lane_ctx<A> ctx{t.h, t.kvh, t.qpos[v], I(kpos)};
      sv = xsimd::select(vr.keep(ctx), sv, B(neg_inf));
    }
    if (causal_cut) sv = xsimd::select(xsimd::bool_cast(t.qpos[v] >= I(kpos)), sv, B(neg_inf));
    if constexpr (Masked) {
      alignas(64) std::int32_t bits[L];
      for (int l = 0; l < L; ++l) bits[l] = std::int32_t(1) << l;
      const I word(static_cast<std::int32_t>(rowbits[n] >> (v * L)));
      sv = xsimd::select(xsimd::bool_cast((word & I::load_aligned(bits)) != I(0)), sv, B(neg_inf));
    }
    return sv;
  }

  // shape_logit over the stored raw scores of a chunk, with the running tile max. The variant,
  // the tile's state and the max are local copies: the compiler cannot tell that stores to the
  // tile do not change them, and would reload them (and recompute the transform's constants)
  // for every batch.
  template <bool Gathered, bool Masked>
  HEED_NOINLINE void shape_scores(float* HEED_RESTRICT st, const tile_state& tile, int nk,
                                  bool causal_cut, std::int64_t j0, const std::int32_t* kidx,
                                  const std::uint32_t* rowbits, B (&tmax)[QV]) const noexcept {
    const Variant vr = var;
    const tile_state t = tile;
    B tm[QV];
    for (int v = 0; v < QV; ++v) tm[v] = tmax[v];
    for (int n = 0; n < nk; ++n)
      for (int v = 0; v < QV; ++v) {
        float* at = st + n * BR + v * L;
        const B sv = shape_logit<Gathered, Masked>(vr, B::load_aligned(at), t, v, n, causal_cut, j0,
                                                   kidx, rowbits);
        tm[v] = xsimd::max(tm[v], sv);
        sv.store_aligned(at);
      }
    for (int v = 0; v < QV; ++v) tmax[v] = tm[v];
  }

  // The first half of chunk(): S (then P) into s.st, the running max and sums, and t.alpha, the
  // factor the output must be rescaled by before P V is added.
  template <bool Gathered, bool Masked>
  HEED_FORCE_INLINE void scores(tile_state& t, const prefill_scratch& s, const float* kt,
                                std::int64_t kstride, int nk, std::int64_t j0,
                                const std::int32_t* kidx,
                                const std::uint32_t* rowbits) const noexcept {
    bool causal_cut;
    if constexpr (Gathered) {
      std::int32_t kmax = kidx[0];
      for (int n = 1; n < nk; ++n) kmax = std::max(kmax, kidx[n]);
      causal_cut = p.causal && kmax > t.pos0;
    } else {
      causal_cut = p.causal && (j0 + nk - 1 > t.pos0);
    }
    // S^T = K Q^T with masks and transforms; running tile max. A light transform (ALiBi) or a
    // mask alone is applied inside the Q K^T loop (a copy of the loop per variant). Otherwise the
    // shared raw_scores loop runs, and a second pass over the stored scores (shape_scores, not
    // inlined) applies a heavy transform, a mask and the causal cut where there are any: a heavy
    // transform's constants then do not stay live through the Q K^T loop, which has no registers
    // to spare for them (soft-capping inlined there spilled the loop's operands to the stack;
    // docs/kernel_notes.md).
    constexpr bool kInline =
        Variant::has_logits_transform ? !Variant::heavy_transform : Variant::has_logits_mask;
    B tmax[QV];
    if constexpr (kInline) {
      // A force-inlined functor, not a lambda, so that the shaping stays inside the loop.
      struct shaped {
        const prefill_kernel& k;
        const tile_state& t;
        bool cut;
        std::int64_t j0;
        const std::int32_t* kidx;
        const std::uint32_t* rowbits;
        HEED_FORCE_INLINE B operator()(const B& sv, int n, int v) const noexcept {
          return k.template shape_logit<Gathered, Masked>(k.var, sv, t, v, n, cut, j0, kidx,
                                                          rowbits);
        }
      };
      scores_loop<A, D, NK, QV>(s.qt, kt, kstride, d, nk, s.st, tmax,
                                shaped{*this, t, causal_cut, j0, kidx, rowbits});
    } else {
      raw_scores<A, D, NK, QV>(s.qt, kt, kstride, d, nk, s.st, tmax);
      if (Variant::has_logits_transform || Variant::has_logits_mask || Masked || causal_cut) {
        for (int v = 0; v < QV; ++v) tmax[v] = B(neg_inf);
        shape_scores<Gathered, Masked>(s.st, t, nk, causal_cut, j0, kidx, rowbits, tmax);
      }
    }

    // The running state in locals (registers), loaded only now that the Q K^T loop,
    // which needs every register, is done; written back at the end.
    B m[QV], dsum[QV], tsum[QV];
    for (int v = 0; v < QV; ++v) {
      m[v] = t.m[v];
      dsum[v] = t.dsum[v];
      tsum[v] = t.tsum[v];
    }

    // Online softmax update (online_softmax.hpp): P = exp2(S - shift), alpha for the old state.
    B alpha[QV];
    for (int v = 0; v < QV; ++v) {
      const softmax_step<B> st = softmax_advance(m[v], tmax[v], fast_exp2_fn<A>{});
      const B shift = st.shift;
      alpha[v] = st.alpha;
      B sum0(0.f), sum1(0.f), t0(0.f), t1(0.f);
      float* col = s.st + v * L;
      int j = 0;
      for (; j + 1 < nk; j += 2) {
        const B s0 = B::load_aligned(col + j * BR);
        const B s1 = B::load_aligned(col + (j + 1) * BR);
        const B p0 = simd::fast_exp2<A>(s0 - shift);
        const B p1 = simd::fast_exp2<A>(s1 - shift);
        sum0 += p0;
        sum1 += p1;
        if constexpr (kEntropy) {
          t0 = softmax_entropy_term(p0, s0, t0);
          t1 = softmax_entropy_term(p1, s1, t1);
        }
        p0.store_aligned(col + j * BR);
        p1.store_aligned(col + (j + 1) * BR);
      }
      if (j < nk) {
        const B s0 = B::load_aligned(col + j * BR);
        const B p0 = simd::fast_exp2<A>(s0 - shift);
        sum0 += p0;
        if constexpr (kEntropy) t0 = softmax_entropy_term(p0, s0, t0);
        p0.store_aligned(col + j * BR);
      }
      dsum[v] = softmax_rescaled(dsum[v], st, sum0 + sum1);
      if constexpr (kEntropy) tsum[v] = softmax_rescaled(tsum[v], st, t0 + t1);
    }

    for (int v = 0; v < QV; ++v) {
      t.m[v] = m[v];
      t.dsum[v] = dsum[v];
      t.tsum[v] = tsum[v];
      t.alpha[v] = alpha[v];
    }
  }

  // Normalizes, finalizes rows, writes O (transposing back) and row statistics.
  void end_tile(tile_state& t, const prefill_scratch& s) const noexcept {
    alignas(64) float mv[BR], dv[BR], tv[BR];
    for (int v = 0; v < QV; ++v) {
      t.m[v].store_aligned(mv + v * L);
      t.dsum[v].store_aligned(dv + v * L);
      t.tsum[v].store_aligned(tv + v * L);
    }
    float* obase = static_cast<float*>(p.o.data);
    const std::int64_t rstride = p.row_stride();
    const int h = t.h;
    for (int r = 0; r < t.nrows; ++r) {
      const std::int64_t i = t.i0 + r;
      float lse, ent;
      const float f = finish_row(var, h, t.pos0 + r, mv[r], dv[r], tv[r], lse, ent);
      float* orow = obase + p.o.offset(i, h);
      for (std::int64_t c = 0; c < d; ++c) orow[c] = s.ot[c * BR + r] * f;
      if (p.lse) p.lse[h * rstride + i] = lse;
      if constexpr (kEntropy) {
        if (p.entropy) p.entropy[h * rstride + i] = ent;
        obs.on_row(h, i, lse, ent);
      }
    }
  }
};

template <class A>
inline std::size_t prefill_thread_floats(const dense_params& p) noexcept {
  const int heads = prefill_heads_per_task(p, dense_tile<A>::G);
  return align_up(
             prefill_scratch_floats<dense_tile<A>>(p.head_dim(), prefill_packs(p, heads), heads) *
             4) /
         4;
}

template <class A>
inline std::size_t prefill_workspace_size(const dense_params& p, int threads) noexcept {
  return prefill_thread_floats<A>(p) * 4 * std::size_t(threads) + workspace_alignment;
}

template <class A, int D, class Variant, class Obs>
void run_prefill(const dense_params& p, const Variant& var, Obs& obs, workspace ws,
                 executor& ex) noexcept {
  dassert_kernel_entry<D>(p, ws.data);
  HEED_DASSERT(ws.size >= prefill_workspace_size<A>(p, ex.concurrency()));
  float* base = static_cast<float*>(workspace_carver::align_base(ws.data));
  const prefill_kernel<A, D, Variant, Obs> k(p, var, obs, base, prefill_thread_floats<A>(p));
  ex.parallel_for(k.tasks(), [&k](std::int64_t task, int thread) { k.run_task(task, thread); });
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
