// Decode: one query row per head, split-KV.
//
// The keys are cut into fixed partitions (independent of the thread count). A task is one
// (KV head, partition) and serves all G = Hq / Hkv query heads of that KV head in one pass over
// its keys, so each K/V byte is read once per step. Keys are converted from f16/bf16 in
// registers, quantized rows (q8, q4) dequantized in registers. Each task leaves a partial (m, d, t,
// o) per query head; a second pass merges the partials in partition order, finalizes the rows and,
// if an observer asks, turns the stored logits into probabilities and reports them.
// Stages: decode_layout.hpp (partitions, workspace), decode_qk.hpp (Q K^T), decode_pv.hpp (P V),
// decode_core.hpp (a partition's rows, their prefetches, the loops over a key block),
// online_softmax.hpp (the softmax rule, shared with prefill); this header: the step with its
// variant and observer (block softmax, merge of the partials, probability reports).
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "heed/attention/detail/decode_core.hpp"
#include "heed/attention/detail/decode_layout.hpp"
#include "heed/attention/detail/dense_common.hpp"
#include "heed/attention/detail/online_softmax.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/convert.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// One decode step with a variant and an observer: the online softmax of each key block between
// decode_core's logits and P V, the partials' merge and the observer's reports.
template <class A, int D, class KV, class Variant, class Obs>
struct decode_kernel : decode_core<A, D, KV> {
  using core = decode_core<A, D, KV>;
  using typename core::B;
  using typename core::head_state;
  using typename core::part_rows;
  using typename core::row_fetch;
  using cursor_pair = std::pair<typename core::block_cursor, typename core::block_cursor>;
  using I = xsimd::batch<std::int32_t, A>;
  using core::buf;
  using core::d;
  using core::ds;
  using core::L;
  using core::lay;
  using core::NB;
  using core::p;
  using core::PD;
  static constexpr bool kEntropy = observer_traits<Obs>::row_stats;

  const Variant& var;
  Obs& obs;
  std::int64_t qpos;
  float qscale;
  bool stats;  // the entropy sum t (kEntropy and the observer has it on)

  decode_kernel(const dense_params& params, const Variant& v, Obs& o, const decode_layout& l,
                const decode_buffers& b) noexcept
      : core(params, l, b), var(v), obs(o) {
    qpos = p.offset();
    qscale = p.logit_scale() * simd::log2e;
    stats = kEntropy && row_stats_active(o);
  }

  // Scaled queries and an empty state for KV head kvh.
  void begin_head(int kvh, const head_state& s) const noexcept {
    const std::int64_t G = lay.group;
    const int h0 = static_cast<int>(kvh * G);
    const float* qbase = static_cast<const float*>(p.q.data);
    for (std::int64_t g = 0; g < G; ++g) {
      const float* qrow = qbase + p.q.offset(0, h0 + int(g));
      if (lay.query_group) {  // q8 keys: the quantized query of the step (quantize_queries)
        const float* qf = reinterpret_cast<const float*>(buf.query + (h0 + g) * this->qrec +
                                                         decode_query_floats_offset(lay));
        for (std::int64_t c = 0; c < d; ++c) s.qs[g * ds + c] = qf[c];
      } else {
        const float f = qscale * row_query_scale(var, p, h0 + int(g), qpos);
        for (std::int64_t c = 0; c < d; ++c) s.qs[g * ds + c] = qrow[c] * f;
      }
      for (std::int64_t c = 0; c < ds; ++c) s.oacc[g * ds + c] = 0.f;
      s.mg[g] = neg_inf;
      s.dg[g] = 0.f;
      s.tg[g] = 0.f;
    }
  }

  // q8 keys: every query row quantized to q8 once per step into buf.query (decode_qk_int.hpp),
  // with its f32 values times the row's factor for the f32 paths.
  void quantize_queries() const noexcept {
    const float* qbase = static_cast<const float*>(p.q.data);
    for (int h = 0; h < p.q_heads(); ++h) {
      std::uint8_t* rec = buf.query + h * this->qrec;
      const float f = qscale * row_query_scale(var, p, h, qpos);
      quantize_query_q8(qbase + p.q.offset(0, h), d, lay.query_group, f, rec,
                        reinterpret_cast<float*>(rec + decode_query_floats_offset(lay)));
    }
  }

  // Leave KV head kvh's partial (m, d, t, o) of partition `part`.
  void end_head(int kvh, std::int64_t part, const head_state& s) const noexcept {
    const std::int64_t G = lay.group;
    for (std::int64_t g = 0; g < G; ++g) {
      const std::size_t slot = std::size_t(kvh * G + g) * lay.n_parts + part;
      buf.part_mdt[slot * 3 + 0] = s.mg[g];
      buf.part_mdt[slot * 3 + 1] = s.dg[g];
      buf.part_mdt[slot * 3 + 2] = s.tg[g];
      float* po = buf.part_o + slot * d;
      for (std::int64_t c = 0; c < d; ++c) po[c] = s.oacc[g * ds + c];
    }
  }

  // Strided rows: one key block [j0, j0 + nb) of KV head kvh, logits, online softmax, O += P V;
  // the logits loop prefetches the next block's K rows, P V its V rows, through the cursors.
  HEED_FORCE_INLINE void block(int kvh, const head_state& s, const part_rows& rows,
                               const Variant& vr, const cursor_pair& cur, std::int64_t j0,
                               int nb) const noexcept {
    this->logits(cur.first, kvh, rows, j0, nb, s.qs, s.sb);
    softmax(kvh, s, vr, j0, nb, s.sb);
    this->pv_all(s.oacc, s.sb, rows.v + p.v.offset(j0 - rows.first, kvh), nb, cur.second, 0);
  }

  // The P V of a block whose logits are done, pending until the next block's logits run.
  struct pending_pv {
    std::int64_t j0 = 0;
    int nb = 0;              // 0: none
    bool in_second = false;  // its probabilities are in sb2 (else sb)
  };
  // Keys per piece of the interleaved logits and P V: the whole block where its K and V rows
  // take at most 32 KiB (f16 or q8 rows of head dim 128), else 16 keys. On Zen 3 pieces of 16
  // had measured fastest everywhere; on Zen 4 whole blocks of f16 rows are 4-9% faster (each
  // piece's calls, and P V passes of 16 keys, cost instructions the FMA-bound loops have no room
  // for), f32 rows 4-10% slower. Measurements: docs/kernel_notes.md.
  int pipe_keys() const noexcept {
    const std::int64_t pair = simd::kv_storage<KV>::row_bytes(this->rs) * 2;
    return pair * NB <= 32 * 1024 ? NB : 16;
  }

  // Contiguous rows: block [j0, j0 + nb)'s logits run interleaved, in pieces (pipe_keys), with
  // the P V of the block before it (pend), then its softmax; its own P V is left pending (run
  // it with finish()). The additions into the output come in the same order as block()'s (P V of
  // block b, rescale, P V of block b + 1): the same bits.
  HEED_FORCE_INLINE void pipelined(int kvh, const head_state& s, const part_rows& rows,
                                   const Variant& vr, const row_fetch& pf, std::int64_t j0, int nb,
                                   pending_pv& pend) const noexcept {
    float* cur = pend.in_second ? s.sb : s.sb2;
    const float* prev = pend.in_second ? s.sb2 : s.sb;
    const KV* vprev = pend.nb ? rows.v + p.v.offset(pend.j0 - rows.first, kvh) : nullptr;
    const std::int64_t vstride = p.v.seq_stride;
    const int piece = pipe_keys();
    for (int sub = 0; sub < NB; sub += piece) {
      if (sub < nb)
        this->logits(typename core::fetch_k_ahead{pf}, kvh, rows, j0 + sub,
                     std::min(piece, nb - sub), s.qs, cur + sub);
      if (sub < pend.nb)
        this->pv_all(s.oacc, prev + sub, vprev + sub * vstride, std::min(piece, pend.nb - sub), pf,
                     pend.j0 + sub + PD);
    }
    softmax(kvh, s, vr, j0, nb, cur);
    pend.j0 = j0;
    pend.nb = nb;
    pend.in_second = !pend.in_second;
  }
  void finish(int kvh, const head_state& s, const part_rows& rows, const row_fetch& pf,
              pending_pv& pend) const noexcept {
    if (pend.nb == 0) return;
    this->pv_all(s.oacc, pend.in_second ? s.sb2 : s.sb,
                 rows.v + p.v.offset(pend.j0 - rows.first, kvh), pend.nb, pf, pend.j0 + PD);
    pend.nb = 0;
  }

  // The online softmax of key block [j0, j0 + nb) of KV head kvh: its logits in sb ([G][NB])
  // become probabilities, the running (m, d, t) advance and the output is rescaled.
  HEED_FORCE_INLINE void softmax(int kvh, const head_state& s, const Variant& vr, std::int64_t j0,
                                 int nb, float* sb) const noexcept {
    const std::int64_t G = lay.group;
    const int h0 = static_cast<int>(kvh * G);
    const I qpos_v(static_cast<std::int32_t>(qpos));
    const I iota = lane_iota<A>();
    // Softmax block per query head; lanes are keys.
    for (std::int64_t g = 0; g < G; ++g) {
      float* srow = sb + g * NB;
      const int h = h0 + int(g);
      B bmax(neg_inf);
      for (int j = 0; j < nb; j += L) {
        B sv = B::load_aligned(srow + j);
        const I kpos = iota + I(static_cast<std::int32_t>(j0 + j));
        if constexpr (Variant::has_logits_transform) {
          const lane_ctx<A> ctx{h, kvh, qpos_v, kpos};
          sv = transform_log2(vr, sv, ctx);
        }
        auto keep = xsimd::bool_cast(kpos < I(static_cast<std::int32_t>(j0 + nb)));
        if constexpr (Variant::has_logits_mask) {
          const lane_ctx<A> ctx{h, kvh, qpos_v, kpos};
          keep = keep && vr.keep(ctx);
        }
        sv = xsimd::select(keep, sv, B(neg_inf));
        sv.store_aligned(srow + j);
        bmax = xsimd::max(bmax, sv);
      }
      if (lay.keep_logits) {
        float* lrow = buf.logits + std::size_t(h) * p.kv_len() + j0;
        int j = 0;
        for (; j + L <= nb; j += L) B::load_aligned(srow + j).store_unaligned(lrow + j);
        for (; j < nb; ++j) lrow[j] = srow[j];
      }
      const softmax_step<float> st = softmax_advance(s.mg[g], simd::hmax<A>(bmax), exact_exp2{});
      const B mu(st.shift);
      B sum(0.f), t(0.f);
      if (kEntropy && stats) {
        for (int j = 0; j < nb; j += L) {
          const B sv = B::load_aligned(srow + j);
          const B pv = simd::fast_exp2<A>(sv - mu);
          sum += pv;
          t = softmax_entropy_term(pv, sv, t);
          pv.store_aligned(srow + j);
        }
      } else {
        for (int j = 0; j < nb; j += L) {
          const B pv = simd::fast_exp2<A>(B::load_aligned(srow + j) - mu);
          sum += pv;
          pv.store_aligned(srow + j);
        }
      }
      s.dg[g] = softmax_rescaled(s.dg[g], st, simd::hsum<A>(sum));
      if (kEntropy && stats) s.tg[g] = softmax_rescaled(s.tg[g], st, simd::hsum<A>(t));
      if (st.alpha != 1.f) {
        const B av(st.alpha);
        float* og = s.oacc + g * ds;
        std::int64_t c = 0;
        for (; c + L <= d; c += L) (B::load_unaligned(og + c) * av).store_unaligned(og + c);
        for (; c < d; ++c) og[c] *= st.alpha;
      }
    }
  }

  // Heads [h_lo, h_hi) of partition `part`, side by side: each key block of every head in turn
  // (state slot i holds head h_lo + i). Contiguous rows run one head at a time, each block's
  // logits interleaved with the previous block's P V (pipelined); strided rows
  // ([seq, heads, d]) run every head of the partition the thread has, so that the thread reads
  // the K/V records of consecutive keys in order instead of 256 bytes of every record
  // (docs/kernel_notes.md). Each (head, partition) computes exactly
  // what it computes alone, so the bits do not depend on how tasks are grouped.
  void run_heads(std::int64_t part, int h_lo, int h_hi, int thread) const noexcept {
    float* base = buf.thread_base + buf.per_thread * std::size_t(thread);
    const std::size_t slot = decode_slot_floats(lay);
    auto state = [&](int h) { return this->state_at(base + slot * std::size_t(h - h_lo)); };
    for (int h = h_lo; h < h_hi; ++h) begin_head(h, state(h));
    const part_rows rows = this->rows_of(part);
    const std::int64_t b0 = this->part_begin(part), b1 = this->part_end(part);
    // A local copy: stores to the logit block could alias the variant's fields as far as the
    // compiler knows, so through `var` it reloads them (and recomputes the constants derived
    // from them) for every batch of keys.
    const Variant vr = var;
    // Pages: the keys the loop would prefetch past this page's end live at the start of the
    // next page (which this thread runs next); fetch those there, block by block. Without it
    // every page started with PD keys' worth of DRAM misses.
    const bool next_page = p.pages != nullptr && part + 1 < lay.n_parts;
    const part_rows next_rows = next_page ? this->rows_of(part + 1) : rows;
    const std::int64_t next_first = next_page ? p.pages[part + 1].begin : 0;
    cursor_pair cur = this->cursors(rows, h_lo, h_hi);
    pending_pv pend;  // contiguous rows: one head, its blocks pipelined
    for (std::int64_t j0 = b0; j0 < b1; j0 += NB) {
      const int nb = static_cast<int>(std::min<std::int64_t>(NB, b1 - j0));
      cur.first.h = cur.second.h = 0;
      cur.first.j = cur.second.j = j0 + NB;
      for (int h = h_lo; h < h_hi; ++h) {
        const row_fetch pf = this->fetcher(rows, h);
        if (next_page && j0 + nb + PD > b1) {
          const row_fetch pn = this->fetcher(next_rows, h);
          for (std::int64_t j = std::max(j0 + PD, b1); j < j0 + nb + PD; ++j)
            pn.fetch(next_first + (j - b1));
        }
        if (lay.strided)
          block(h, state(h), rows, vr, cur, j0, nb);
        else
          pipelined(h, state(h), rows, vr, pf, j0, nb, pend);
      }
    }
    if (!lay.strided) finish(h_lo, state(h_lo), rows, this->fetcher(rows, h_lo), pend);
    for (int h = h_lo; h < h_hi; ++h) end_head(h, part, state(h));
  }

  // Tasks [t0, t1) of a thread's run. Contiguous rows: task t = (head t / parts, partition
  // t % parts), one at a time. Strided rows: task t = (partition t / heads, head t % heads), the
  // heads of one partition together.
  void run_tasks(std::int64_t t0, std::int64_t t1, int thread) const noexcept {
    const std::int64_t H = p.kv_heads(), P = lay.n_parts;
    if (!lay.strided) {
      for (std::int64_t t = t0; t < t1; ++t)
        run_heads(t % P, static_cast<int>(t / P), static_cast<int>(t / P) + 1, thread);
      return;
    }
    for (std::int64_t t = t0; t < t1;) {
      const std::int64_t h_lo = t % H, h_hi = std::min(H, h_lo + (t1 - t));
      run_heads(t / H, static_cast<int>(h_lo), static_cast<int>(h_hi), thread);
      t += h_hi - h_lo;
    }
  }

  // Merge task: one kv head (all its query heads), partitions in order.
  void merge(std::int64_t kvh) const noexcept {
    const std::int64_t G = lay.group;
    float* obase = static_cast<float*>(p.o.data);
    const std::int64_t rstride = p.row_stride();
    for (std::int64_t g = 0; g < G; ++g) {
      const int h = static_cast<int>(kvh * G + g);
      const float* mdt = buf.part_mdt + std::size_t(h) * lay.n_parts * 3;
      float mx = neg_inf;
      for (std::int64_t q = 0; q < lay.n_parts; ++q) mx = std::max(mx, mdt[q * 3]);
      float dsum = 0.f, tsum = 0.f;
      float* orow = obase + p.o.offset(0, h);
      for (std::int64_t c = 0; c < d; ++c) orow[c] = 0.f;
      for (std::int64_t q = 0; q < lay.n_parts; ++q) {
        const float w = softmax_weight(mdt[q * 3], mx, exact_exp2{});
        dsum += mdt[q * 3 + 1] * w;
        tsum += mdt[q * 3 + 2] * w;
        const float* po = buf.part_o + (std::size_t(h) * lay.n_parts + q) * d;
        if (w != 0.f)
          for (std::int64_t c = 0; c < d; ++c) orow[c] += po[c] * w;
      }
      float lse, ent;
      const float f = finish_row(var, h, qpos, mx, dsum, tsum, lse, ent);
      for (std::int64_t c = 0; c < d; ++c) orow[c] *= f;
      if (p.lse) p.lse[h * rstride] = lse;
      if constexpr (kEntropy) {
        if (p.entropy) p.entropy[h * rstride] = ent;
        obs.on_row(h, 0, lse, ent);
      }
      if constexpr (observer_traits<Obs>::probs) {
        if (lay.keep_logits) buf.row_lse[h] = lse == neg_inf ? neg_inf : lse * simd::log2e;
      }
    }
  }
};

template <class A, int D, class KV, class Variant, class Obs>
struct decode_probs_task {
  using B = xsimd::batch<float, A>;
  static constexpr int L = static_cast<int>(B::size);
  static constexpr int chunk = 256;  // keys per report: the reduced row stays in L1
  const decode_kernel<A, D, KV, Variant, Obs>& k;

  // One (KV head, partition): p_j = exp2(s_j - LSE) of every query head of the group, reported
  // in key chunks, heads in order within a chunk (the observer contract).
  void operator()(std::int64_t task) const noexcept {
    const dense_params& p = k.p;
    const std::int64_t G = k.lay.group, kvh = task / k.lay.n_parts, part = task % k.lay.n_parts;
    const std::int64_t b0 = k.part_begin(part), b1 = k.part_end(part);
    alignas(64) float pb[chunk];
    for (std::int64_t j0 = b0; j0 < b1; j0 += chunk) {
      const std::int64_t n = std::min<std::int64_t>(chunk, b1 - j0);
      for (std::int64_t g = 0; g < G; ++g) {
        const int h = static_cast<int>(kvh * G + g);
        const float* lrow = k.buf.logits + std::size_t(h) * p.kv_len() + j0;
        const float l2 = k.buf.row_lse[h];
        if (l2 == neg_inf) {
          for (std::int64_t j = 0; j < n; ++j) pb[j] = 0.f;
        } else {
          const B lv(l2);
          std::int64_t j = 0;
          for (; j + L <= n; j += L)
            simd::fast_exp2<A>(B::load_unaligned(lrow + j) - lv).store_aligned(pb + j);
          for (; j < n; ++j) pb[j] = lrow[j] == neg_inf ? 0.f : std::exp2(lrow[j] - l2);
        }
        k.obs.on_probs(h, j0, pb, n);
      }
    }
  }
};

template <class A, int D, class KV, class Variant, class Obs>
void run_decode(const dense_params& p, const Variant& var, Obs& obs, workspace ws, executor& ex,
                bool keep_logits) noexcept {
  dassert_kernel_entry<D>(p, ws.data);
  HEED_DASSERT(p.q_len() == 1);
  HEED_DASSERT(!keep_logits || observer_traits<Obs>::probs);
  HEED_DASSERT(ws.size >= decode_workspace_size(p, ex.concurrency(), keep_logits));
  const decode_layout lay = make_decode_layout(p, keep_logits);
  HEED_DASSERT(lay.n_parts >= 1 && lay.group >= 1 && lay.k_hi <= p.kv_len());
  const decode_buffers buf = carve_decode(ws.data, p, lay, ex.concurrency());
  const decode_kernel<A, D, KV, Variant, Obs> k(p, var, obs, lay, buf);
  if (lay.query_group) k.quantize_queries();
  // Each thread takes one contiguous run of (KV head, partition) tasks: long sequential K/V
  // streams per core, and
  // the same partitions and merge order, hence the same bits, for any thread count.
  const std::int64_t tasks = p.kv_heads() * lay.n_parts;
  const std::int64_t runs = std::min<std::int64_t>(ex.concurrency(), tasks);
  ex.parallel_for(runs, [&k, tasks, runs](std::int64_t r, int thread) {
    k.run_tasks(tasks * r / runs, tasks * (r + 1) / runs, thread);
  });
  ex.parallel_for(p.kv_heads(), [&k](std::int64_t task, int) { k.merge(task); });
  if constexpr (observer_traits<Obs>::probs) {
    if (lay.keep_logits && obs.probs_active()) {
      const decode_probs_task<A, D, KV, Variant, Obs> probs{k};
      ex.parallel_for(p.kv_heads() * lay.n_parts,
                      [&probs](std::int64_t task, int) { probs(task); });
    }
  }
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
