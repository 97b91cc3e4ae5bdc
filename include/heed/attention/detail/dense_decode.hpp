// Decode: one query row per head, split-KV.
//
// The keys are cut into fixed partitions (independent of the thread count). A task is one
// (KV head, partition) and serves all G = Hq / Hkv query heads of that KV head in one pass over
// its keys, so each K/V byte is read once per step. Keys are converted from f16/bf16 in
// registers, quantized rows (q8, q4) dequantized in registers. Each task leaves a partial (m, d, t,
// o) per query head; a second pass merges the partials in partition order, finalizes the rows and,
// if an observer asks, turns the stored logits into probabilities and reports them. Private header:
// include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/convert.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

struct decode_cfg {
  static constexpr std::int64_t partition = 1024;  // keys per split-KV partition
  static constexpr int NB = 64;                    // keys per softmax block
};

struct decode_layout {
  std::int64_t k_lo, k_hi, n_parts, group, d;
  // [seq, heads, d] (or otherwise strided) K or V rows: a thread runs the KV heads of a partition
  // side by side, key block by key block, so that it reads the records of consecutive keys in
  // order instead of one head's 256 bytes of every record (see decode_kernel::run_heads).
  bool strided;
  std::int64_t slots;  // head states per thread: kv_heads when strided, else 1
  bool keep_logits;
};

HEED_FORCE_INLINE decode_layout make_decode_layout(const dense_params& p,
                                                   bool keep_logits) noexcept {
  decode_layout l;
  l.k_lo = 0;
  l.k_hi = p.kv_len();
  if (p.causal) l.k_hi = std::min(l.k_hi, p.offset() + 1);
  l.n_parts = p.pages ? p.n_pages
                      : std::max<std::int64_t>(1, (l.k_hi - l.k_lo + decode_cfg::partition - 1) /
                                                      decode_cfg::partition);
  l.group = p.q_heads() / p.kv_heads();
  l.d = p.head_dim();
  l.strided = p.k.seq_stride > p.k.row_extent() || p.v.seq_stride > p.v.row_extent();
  l.slots = l.strided ? p.kv_heads() : 1;
  l.keep_logits = keep_logits;
  return l;
}

// Workspace: per thread and head slot [G][d] scaled queries, [G][d] output accumulators, two
// [G][NB] logit blocks, (m, d, t); shared [Hq][parts] (m, d, t) and [Hq][parts][d] partial outputs;
// optionally [Hq][Lk] logits.
struct decode_buffers {
  float* thread_base;
  std::size_t per_thread;
  float* part_mdt;  // [Hq][parts][3]
  float* part_o;    // [Hq][parts][d]
  float* logits;    // [Hq][Lk] or null
  float* row_lse;   // [Hq] base-2 LSE of each row (for the probabilities), or null
};

// Row stride of the per-thread query and output scratch: d rounded up to 16 floats (64 bytes).
inline std::int64_t decode_dstride(std::int64_t d) noexcept { return (d + 15) / 16 * 16; }

// Floats of one head slot (64-byte aligned) and of one thread's slots.
HEED_FORCE_INLINE std::size_t decode_slot_floats(const decode_layout& l) noexcept {
  const std::size_t g = std::size_t(l.group), ds = std::size_t(decode_dstride(l.d));
  return align_up((g * ds * 2 + g * decode_cfg::NB * 2 + 3 * g) * 4) / 4;
}
HEED_FORCE_INLINE std::size_t decode_per_thread_floats(const decode_layout& l) noexcept {
  return decode_slot_floats(l) * std::size_t(l.slots);
}

// The one layout of decode's workspace: carves it from ws, or with ws null only counts its bytes
// (decode_workspace_size), so the size and the carving cannot drift apart.
inline decode_buffers carve_decode(void* ws, const dense_params& p, const decode_layout& l,
                                   int threads, std::size_t* bytes = nullptr) noexcept {
  workspace_carver c(ws ? workspace_carver::align_base(ws) : nullptr);
  decode_buffers b;
  b.per_thread = decode_per_thread_floats(l);
  b.thread_base = c.take<float>(b.per_thread * std::size_t(threads));
  b.part_mdt = c.take<float>(std::size_t(p.q_heads()) * l.n_parts * 3);
  b.part_o = c.take<float>(std::size_t(p.q_heads()) * l.n_parts * l.d);
  b.logits = l.keep_logits ? c.take<float>(std::size_t(p.q_heads()) * p.kv_len()) : nullptr;
  b.row_lse = l.keep_logits ? c.take<float>(std::size_t(p.q_heads())) : nullptr;
  if (bytes) *bytes = c.bytes_needed();
  return b;
}

HEED_FORCE_INLINE std::size_t decode_workspace_size(const dense_params& p, int threads,
                                                    bool keep_logits) noexcept {
  std::size_t bytes = 0;
  (void)carve_decode(nullptr, p, make_decode_layout(p, keep_logits), threads, &bytes);
  return bytes;
}

// Dot products of one key row with G query rows: out[g] = sum_k k[k] * q[g][k].
template <class A, int D, class KV>
HEED_FORCE_INLINE void decode_qk_row(const KV* HEED_RESTRICT krow, const float* HEED_RESTRICT qs,
                                     std::int64_t g_count, simd::row_shape rs_rt,
                                     std::int64_t qstride, float* out,
                                     std::int64_t out_stride) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  const simd::row_shape rs = D ? simd::row_shape(D) : rs_rt;
  const std::int64_t d = rs.d;
  if constexpr (D != 0 && D % L == 0) {
    constexpr int NV = D / L;
    B k[NV];
    simd::col_reader<A, KV> r;
    for (int c = 0; c < NV; ++c) {
      if (c == 0 || r.starts(c * L)) r.at(krow, c * L, D);
      k[c] = r.load(krow, c * L, D);
    }
    std::int64_t g = 0;
    for (; g + 2 <= g_count; g += 2) {
      const float* q0 = qs + g * qstride;
      const float* q1 = q0 + qstride;
      B a0 = k[0] * B::load_aligned(q0), a1 = k[0] * B::load_aligned(q1);
      for (int c = 1; c < NV; ++c) {
        a0 = xsimd::fma(k[c], B::load_aligned(q0 + c * L), a0);
        a1 = xsimd::fma(k[c], B::load_aligned(q1 + c * L), a1);
      }
      out[g * out_stride] = simd::hsum<A>(a0);
      out[(g + 1) * out_stride] = simd::hsum<A>(a1);
    }
    if (g < g_count) {
      const float* q0 = qs + g * qstride;
      B a0 = k[0] * B::load_aligned(q0);
      for (int c = 1; c < NV; ++c) a0 = xsimd::fma(k[c], B::load_aligned(q0 + c * L), a0);
      out[g * out_stride] = simd::hsum<A>(a0);
    }
  } else {
    for (std::int64_t g = 0; g < g_count; ++g) {
      const float* q = qs + g * qstride;
      B a(0.f);
      std::int64_t c = 0;
      for (; c + L <= d; c += L)
        a = xsimd::fma(simd::load_cols<A>(krow, c, rs), B::load_unaligned(q + c), a);
      float sum = simd::hsum<A>(a);
      for (; c < d; ++c) sum += simd::load_col(krow, c, rs) * q[c];
      out[g * out_stride] = sum;
    }
  }
}

// Logits of KB = L / G keys for G query heads with one transpose-reduce: lane n * G + g of the
// result is dot(k_{n}, q_g). Each key row is converted once, in registers. Rows past nvalid
// repeat the last valid row. P keys are scored together (their P * G sums advance side by
// side, each query chunk loaded once for them): with one key at a time G = 4 and 8 had only 4
// and 8 independent FMA chains of D / L steps, and the logits ran at the FMA latency, not its
// throughput. Measured (one core, head-major, GB/s of K and V with 1024 keys in cache / 32768
// from DRAM): G = 4, P = 4: 39 / 29-31 against 33 / 26-28; G = 8, P = 2: 20.5 / 17.5-18.5
// against 11.8 / 11. Kept at one key: G = 1 (P = 8: 58 against 66 in cache) and G = 2 (P = 8:
// 54 against 51 in cache but 26.5-29.5 against 28-32.5 from DRAM). Strided [seq, heads, d]
// rows, once fetched in address order (decode_core::block_cursor), gain the same way: AVX2
// G = 4, P = 2 against P = 1 on AMD Zen 3, 1.19-1.29 with 1024 keys in cache.
template <class A, int D, int G, class KV>
HEED_FORCE_INLINE xsimd::batch<float, A> decode_qk_joint(const KV* HEED_RESTRICT krow,
                                                         std::int64_t kstride, int nvalid,
                                                         const float* HEED_RESTRICT qs,
                                                         std::int64_t qstride) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  constexpr int KB = L / G;
  constexpr int NV = D / L;
  static_assert(KB * G == L && D % L == 0, "joint logits need G | L and L | D");
  constexpr int P_want = G == 4 || G == 8 ? KB : 1;
  constexpr int P = P_want < KB ? P_want : KB;  // narrower vectors: fewer keys per reduction
  static_assert(KB % P == 0, "keys scored together divide the keys of one reduction");
  B acc[L];
  for (int n0 = 0; n0 < KB; n0 += P) {
    const KV* kr[P];
    simd::col_reader<A, KV> r[P];
    for (int i = 0; i < P; ++i) kr[i] = krow + std::min(n0 + i, nvalid - 1) * kstride;
    for (int i = 0; i < P; ++i) {
      r[i].at(kr[i], 0, D);
      const B k0 = r[i].load(kr[i], 0, D);
      for (int g = 0; g < G; ++g) acc[(n0 + i) * G + g] = k0 * B::load_aligned(qs + g * qstride);
    }
    for (int c = 1; c < NV; ++c) {
      B kc[P];
      if (r[0].starts(c * L))
        for (int i = 0; i < P; ++i) r[i].at(kr[i], c * L, D);
      for (int i = 0; i < P; ++i) kc[i] = r[i].load(kr[i], c * L, D);
      for (int g = 0; g < G; ++g) {
        const B qg = B::load_aligned(qs + g * qstride + c * L);
        for (int i = 0; i < P; ++i)
          acc[(n0 + i) * G + g] = xsimd::fma(kc[i], qg, acc[(n0 + i) * G + g]);
      }
    }
  }
  return simd::haddp<A>(acc);
}

// o[g][c0 .. c0 + CB*L) += sum_j p[g][j] * v[j][...] for GB query heads and nb keys (rows of D
// values). With vfetch != nullptr, also vfetch->fetch_v_part(jf + j, part, parts) for each key j.
template <class A, int D, int GB, int CB, class KV, class Fetch>
HEED_FORCE_INLINE void decode_pv_block(float* HEED_RESTRICT o, std::int64_t o_stride,
                                       const float* HEED_RESTRICT pb, const KV* vrow0,
                                       std::int64_t vstride, std::int64_t c0, int nb,
                                       const Fetch* vfetch = nullptr, std::int64_t jf = 0,
                                       int part = 0, int parts = 1) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  B acc[GB][CB];
  for (int g = 0; g < GB; ++g)
    for (int c = 0; c < CB; ++c) acc[g][c] = B::load_aligned(o + g * o_stride + c0 + c * L);
  const KV* vrow = vrow0;
  for (int j = 0; j < nb; ++j, vrow += vstride) {
    if (vfetch) vfetch->fetch_v_part(jf + j, part, parts);
    B vv[CB];
    simd::col_reader<A, KV> r;
    for (int c = 0; c < CB; ++c) {
      if (c == 0 || r.starts(c0 + c * L)) r.at(vrow, c0 + c * L, D);
      vv[c] = r.load(vrow, c0 + c * L, D);
    }
    for (int g = 0; g < GB; ++g) {
      const B pj(pb[g * decode_cfg::NB + j]);
      for (int c = 0; c < CB; ++c) acc[g][c] = xsimd::fma(pj, vv[c], acc[g][c]);
    }
  }
  for (int g = 0; g < GB; ++g)
    for (int c = 0; c < CB; ++c) acc[g][c].store_aligned(o + g * o_stride + c0 + c * L);
}

// The half of a decode step that depends on neither the variant nor the observer: where a
// partition's rows are, their prefetches, the logits of a key block and O += P V. Instantiated
// once per (arch, head dim, K/V type) and shared by every variant and observer: the compiled
// library builds eight (variant, observer) kernels per K/V type, and their own copies of these
// loops were two thirds of its compile time. The two loops are calls (one per block of NB keys).
template <class A, int D, class KV>
struct decode_core {
  using B = xsimd::batch<float, A>;
  static constexpr int L = static_cast<int>(B::size);
  static constexpr int NB = decode_cfg::NB;
  // Keys ahead whose K and V rows the loops prefetch, one row per key they score: the hardware
  // prefetchers alone left decode from DRAM at a third of the read bandwidth (compute and
  // transfer did not overlap); a burst for a whole block ahead did not help. Rows are fetched
  // into L2 (prefetcht1), not L1: an L1 prefetch holds one of the core's few L1 miss buffers
  // until the line arrives from DRAM, which capped a core near 10 GB/s on AMD Zen 4 (about as
  // many lines in flight as there are buffers, over the memory latency). Same-run A/B on Zen 4,
  // L2 against L1 for contiguous rows: 32768-key decode +24-52% (AVX-512 and AVX2, 1 and 2
  // threads), 4096 keys in cache +18-42% on one core, +4% on two; strided [seq, heads, d] rows
  // had already measured 35% faster into L2 on Zen 5. Contiguous rows: the logits loop fetches
  // the K rows PD keys ahead and the P V loop the V rows, so prefetches are issued all through
  // the block instead of in bursts during the logits (Zen 5: 25.5-26.5 against 21.9-22.2 GB/s on
  // one core). Strided rows are fetched a block ahead in address order instead (block_cursor).
  static constexpr int PD = 64;

  const dense_params& p;
  decode_layout lay;
  decode_buffers buf;
  std::int64_t d, ds;
  simd::row_shape rs;  // of the K and V rows (quantized rows: their group)

  decode_core(const dense_params& params, const decode_layout& l, const decode_buffers& b) noexcept
      : p(params), lay(l), buf(b), rs(D ? D : p.head_dim(), p.k.quant_group()) {
    d = rs.d;
    ds = decode_dstride(d);
  }

  // Partitions: fixed runs of decode_cfg::partition keys, or the pages of paged K/V.
  std::int64_t part_begin(std::int64_t part) const noexcept {
    if (p.pages) return std::min(lay.k_hi, p.pages[part].begin);
    return lay.k_lo + part * decode_cfg::partition;
  }
  std::int64_t part_end(std::int64_t part) const noexcept {
    if (p.pages) return std::min(lay.k_hi, p.pages[part].begin + p.pages[part].len);
    return std::min(lay.k_hi, part_begin(part) + decode_cfg::partition);
  }
  // Where a partition's rows live: key j at k + p.k.offset(j - first, kvh) (v likewise).
  struct part_rows {
    const KV* k;
    const KV* v;
    std::int64_t first;
  };
  part_rows rows_of(std::int64_t part) const noexcept {
    if (p.pages)
      return {static_cast<const KV*>(p.pages[part].k), static_cast<const KV*>(p.pages[part].v),
              p.pages[part].begin};
    return {static_cast<const KV*>(p.k.data), static_cast<const KV*>(p.v.data), 0};
  }

  // The addresses of key j's K and V rows as integers (key j's K row at k + j * kstep), built
  // once per partition so that the prefetches in the loops read only registers. Rows past the
  // tensor or page are harmless (a prefetch does not fault). Measured: the same prefetches with
  // addresses formed in the loop from dense_params' strides and the partition's pointers ran
  // decode from DRAM at 14-15 GB/s per core in some builds and 24 in others, moved by unrelated
  // code changes.
  struct row_fetch {
    std::uintptr_t k, v;
    std::uintptr_t kstep, vstep;
    std::int64_t bytes;  // of one row (generic head dim; row_bytes() is constant otherwise)
    // A compile-time count where the head dim is: the line loops then unroll whether or not
    // the compiler propagates `bytes` through the kernel's inlining.
    HEED_FORCE_INLINE std::int64_t row_bytes() const noexcept {
      if constexpr (D != 0)
        return simd::kv_storage<KV>::row_bytes(D);
      else
        return bytes;
    }
    // Into L2 (locality 2: prefetcht1), see PD.
    HEED_FORCE_INLINE void fetch_row(std::uintptr_t base, std::uintptr_t step,
                                     std::int64_t j) const noexcept {
      const std::uintptr_t r = base + std::uintptr_t(j) * step;
      for (std::int64_t b = 0; b < row_bytes(); b += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(r + std::uintptr_t(b)), 0, 2);
    }
    HEED_FORCE_INLINE void fetch_k(std::int64_t j) const noexcept { fetch_row(k, kstep, j); }
    HEED_FORCE_INLINE void fetch_v(std::int64_t j) const noexcept { fetch_row(v, vstep, j); }
    // Lines [part, part + 1) * lines / parts of key j's V row: P V's column passes each fetch
    // their share, so the V prefetches spread over the whole block (see pv_heads).
    HEED_FORCE_INLINE void fetch_v_part(std::int64_t j, int part, int parts) const noexcept {
      const std::int64_t lines = (row_bytes() + 63) / 64;
      const std::uintptr_t r = v + std::uintptr_t(j) * vstep;
      for (std::int64_t b = lines * part / parts; b < lines * (part + 1) / parts; ++b)
        __builtin_prefetch(reinterpret_cast<const void*>(r + std::uintptr_t(b * 64)), 0, 2);
    }
    // K and V rows of key j.
    HEED_FORCE_INLINE void fetch(std::int64_t j) const noexcept {
      const std::uintptr_t kj = k + std::uintptr_t(j) * kstep, vj = v + std::uintptr_t(j) * vstep;
      for (std::int64_t b = 0; b < row_bytes(); b += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(kj + std::uintptr_t(b)), 0, 2);
        __builtin_prefetch(reinterpret_cast<const void*>(vj + std::uintptr_t(b)), 0, 2);
      }
    }
  };
  // The prefetch that goes with each key the logits score (block's KF). Force-inlined functors,
  // not lambdas: GCC took a lambda that only prefetches for a function without side effects
  // and deleted its calls (decode from DRAM at half speed).
  struct fetch_k_ahead {  // contiguous rows: the K row PD keys ahead (P V fetches the V row)
    const row_fetch& f;
    HEED_FORCE_INLINE void operator()(std::int64_t j) const noexcept { f.fetch_k(j + PD); }
  };
  row_fetch fetcher(const part_rows& rows, int kvh) const noexcept {
    const std::int64_t e = sizeof(KV);
    row_fetch f;
    f.kstep = std::uintptr_t(p.k.seq_stride * e);
    f.vstep = std::uintptr_t(p.v.seq_stride * e);
    // Key j's row is at rows.k + offset(j - first, kvh): fold -first into the base (wrapping
    // unsigned arithmetic; j >= first whenever it is used).
    f.k = reinterpret_cast<std::uintptr_t>(rows.k) + std::uintptr_t(kvh * p.k.head_stride * e) -
          std::uintptr_t(rows.first) * f.kstep;
    f.v = reinterpret_cast<std::uintptr_t>(rows.v) + std::uintptr_t(kvh * p.v.head_stride * e) -
          std::uintptr_t(rows.first) * f.vstep;
    f.bytes = simd::kv_storage<KV>::row_bytes(rs);
    return f;
  }

  // Strided rows: the K (or V) rows of the thread's next key block, in address order (key by
  // key, the heads of one key in turn), one row per call: the logits loop fetches K rows (one
  // per key scored), the first pass of P V the V rows. The heads of a partition run block by
  // block (run_heads), and each block, over all its heads, advances the cursors by one block's
  // rows. The same rows fetched in the order they are read (one head's 64 keys, then the next
  // head's) ran a [seq, heads, d] read pattern at 4.4-5.6 GB/s on one AMD Zen 3 core; in address
  // order at 11.8-12.8, as fast as a sequential read (8.7-11.2).
  struct block_cursor {
    row_fetch f;                // its row_bytes() and fetch_row
    std::uintptr_t base;        // the first head's row of key 0
    std::uintptr_t step, head;  // bytes from key to key and from head to head
    int nh;                     // heads of the block
    mutable int h = 0;          // next row to fetch: head h of key j
    mutable std::int64_t j = 0;
    HEED_FORCE_INLINE void operator()(std::int64_t) const noexcept {
      f.fetch_row(base + std::uintptr_t(h) * head, step, j);
      if (++h == nh) {
        h = 0;
        ++j;
      }
    }
    HEED_FORCE_INLINE void fetch_v(std::int64_t j) const noexcept { (*this)(j); }
    // Strided rows are fetched whole, in address order, by the first column pass.
    HEED_FORCE_INLINE void fetch_v_part(std::int64_t j, int part, int) const noexcept {
      if (part == 0) (*this)(j);
    }
  };
  // The K and V cursors of heads [h_lo, h_hi) of a partition's rows.
  std::pair<block_cursor, block_cursor> cursors(const part_rows& rows, int h_lo,
                                                int h_hi) const noexcept {
    const row_fetch f = fetcher(rows, h_lo);
    const std::int64_t e = sizeof(KV);
    return {block_cursor{f, f.k, f.kstep, std::uintptr_t(p.k.head_stride * e), h_hi - h_lo},
            block_cursor{f, f.v, f.vstep, std::uintptr_t(p.v.head_stride * e), h_hi - h_lo}};
  }

  // The running state of one KV head's query heads in a thread's scratch.
  struct head_state {
    float* qs;    // [G][ds] scaled queries
    float* oacc;  // [G][ds] output accumulators
    float* sb;    // [G][NB] logits, then probabilities of one key block
    float* sb2;   // [G][NB] the next block's, while sb's P V is pending (decode_kernel::pipelined)
    float* mg;    // [G] running max (base 2)
    float* dg;    // [G] running denominator
    float* tg;    // [G] running sum of p * s
  };
  head_state state_at(float* base) const noexcept {
    const std::int64_t G = lay.group;
    head_state s;
    s.qs = base;
    s.oacc = s.qs + G * ds;
    s.sb = s.oacc + G * ds;
    s.sb2 = s.sb + G * NB;
    s.mg = s.sb2 + G * NB;
    s.dg = s.mg + G;
    s.tg = s.dg + G;
    return s;
  }

  // Joint logits when G divides the vector width (GQA 1, 2, 4, 8, 16); false otherwise. kf(j) for
  // every key j scored.
  template <class KF>
  HEED_FORCE_INLINE bool qk_joint(const KF& kf, const KV* krow, std::int64_t kstride,
                                  std::int64_t j0, int nb, const float* qs, std::int64_t qstride,
                                  float* sb) const noexcept {
    if constexpr (D != 0 && D % L == 0) {
      switch (lay.group) {
        case 1:
          return qk_joint_g<1>(kf, krow, kstride, j0, nb, qs, qstride, sb);
        case 2:
          return qk_joint_g<2>(kf, krow, kstride, j0, nb, qs, qstride, sb);
        case 4:
          return qk_joint_g<4>(kf, krow, kstride, j0, nb, qs, qstride, sb);
        case 8:
          return qk_joint_g<8>(kf, krow, kstride, j0, nb, qs, qstride, sb);
        case 16:
          return qk_joint_g<16>(kf, krow, kstride, j0, nb, qs, qstride, sb);
        default:
          return false;
      }
    }
    return false;
  }

  template <int GC, class KF>
  HEED_FORCE_INLINE bool qk_joint_g(const KF& kf, const KV* krow, std::int64_t kstride,
                                    std::int64_t j0, int nb, const float* qs, std::int64_t qstride,
                                    float* sb) const noexcept {
    if constexpr (GC > L || D == 0 || D % L != 0) {
      return false;
    } else {
      constexpr int KB = L / GC;
      alignas(64) float tmp[L];
      for (int j = 0; j < nb; j += KB) {
        for (int n = 0; n < KB; ++n) kf(j0 + j + n);
        decode_qk_joint<A, D, GC, KV>(krow + j * kstride, kstride, nb - j, qs, qstride)
            .store_aligned(tmp);
        for (int n = 0; n < KB; ++n)
          for (int g = 0; g < GC; ++g) sb[g * NB + j + n] = tmp[n * GC + g];
      }
      return true;
    }
  }

  // Columns (vectors) of one P V register block for GB query heads: GB x CB accumulators, CB
  // value vectors and the broadcast probability must fit in the ISA's registers. On AVX2 (16
  // registers) a block of 4 heads x 4 vectors spilled its accumulators to the stack on every key.
  template <int GB>
  static constexpr int pv_cols() noexcept {
    constexpr int NV = D / L;
    for (int cb = 4; cb > 1; --cb)
      if (NV % cb == 0 && GB * cb + cb + 1 <= simd::vector_registers<A>) return cb;
    return 1;
  }

  // P V of the block for query heads [0, GB) of oacc / sb (head-dim rows of vectors), column block
  // by column block; with pf (may be null), each column pass also prefetches its share of key
  // jf + j's V row (fetch_v_part). With AVX2's narrower blocks (8 passes), the whole row in the
  // first pass slowed head-major decode from DRAM by a quarter: the prefetches came in bursts.
  template <int GB, class F>
  HEED_FORCE_INLINE void pv_heads(float* oacc, const float* sb, const KV* vrow0,
                                  std::int64_t vstride, int nb, const F* pf,
                                  std::int64_t jf) const noexcept {
    constexpr int CB = pv_cols<GB>();
    constexpr int parts = D / (CB * L);
    for (int part = 0; part < parts; ++part)
      decode_pv_block<A, D, GB, CB, KV, F>(oacc, ds, sb, vrow0, vstride, part * CB * L, nb, pf, jf,
                                           part, parts);
  }

  // Also prefetches, per key of the block, key jf + j's V row (pf.fetch_v_part over the column
  // passes of the first head block; pf.fetch_v on the generic head dim's path).
  template <class F>
  HEED_NOINLINE void pv_all(float* oacc, const float* sb, const KV* vrow0, int nb, const F& pf,
                            std::int64_t jf) const noexcept {
    const std::int64_t G = lay.group;
    const std::int64_t vstride = p.v.seq_stride;
    if constexpr (D != 0 && D % L == 0) {
      std::int64_t g = 0;
      for (; g + 4 <= G; g += 4)
        pv_heads<4>(oacc + g * ds, sb + g * NB, vrow0, vstride, nb, g == 0 ? &pf : nullptr, jf);
      for (; g + 2 <= G; g += 2)
        pv_heads<2>(oacc + g * ds, sb + g * NB, vrow0, vstride, nb, g == 0 ? &pf : nullptr, jf);
      for (; g < G; ++g)
        pv_heads<1>(oacc + g * ds, sb + g * NB, vrow0, vstride, nb, g == 0 ? &pf : nullptr, jf);
    } else {
      // Generic head dim: vector body, scalar tail columns.
      const std::int64_t dv = d / L * L;
      for (std::int64_t g = 0; g < G; ++g) {
        float* og = oacc + g * ds;
        const float* pg = sb + g * NB;
        const KV* vrow = vrow0;
        for (int j = 0; j < nb; ++j, vrow += vstride) {
          if (g == 0) pf.fetch_v(jf + j);
          const B pj(pg[j]);
          for (std::int64_t c = 0; c < dv; c += L)
            xsimd::fma(pj, simd::load_cols<A>(vrow, c, rs), B::load_unaligned(og + c))
                .store_unaligned(og + c);
          for (std::int64_t c = dv; c < d; ++c) og[c] += pg[j] * simd::load_col(vrow, c, rs);
        }
      }
    }
  }

  // Logits of keys [j0, j0 + nb) of KV head kvh for its G query heads into sb ([G][NB]), with
  // kf(j) for each key j scored (its prefetch: fetch_k_ahead or a block_cursor).
  template <class KF>
  HEED_NOINLINE void logits(const KF& kf, int kvh, const part_rows& rows, std::int64_t j0, int nb,
                            const float* qs, float* sb) const noexcept {
    const std::int64_t kstride = p.k.seq_stride;
    const KV* krow = rows.k + p.k.offset(j0 - rows.first, kvh);
    if (qk_joint(kf, krow, kstride, j0, nb, qs, ds, sb)) return;
    for (int j = 0; j < nb; ++j, krow += kstride) {
      kf(j0 + j);
      decode_qk_row<A, D, KV>(krow, qs, lay.group, rs, ds, sb + j, NB);
    }
  }
};

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
      const float f = qscale * row_query_scale(var, p, h0 + int(g), qpos);
      for (std::int64_t c = 0; c < d; ++c) s.qs[g * ds + c] = qrow[c] * f;
      for (std::int64_t c = 0; c < ds; ++c) s.oacc[g * ds + c] = 0.f;
      s.mg[g] = neg_inf;
      s.dg[g] = 0.f;
      s.tg[g] = 0.f;
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
  // Keys per piece of the interleaved logits and P V: 16 measured 1.15-1.17 against the block at
  // a time on Zen 3 (one thread, 4096 and 32768 keys), 8 and 32 0.93-1.02.
  static constexpr int kPipe = 16;

  // Contiguous rows: block [j0, j0 + nb)'s logits run interleaved, in pieces of kPipe keys, with
  // the P V of the block before it (pend), then its softmax; its own P V is left pending (run
  // it with finish()). The K and V streams are then read side by side instead of 64 K rows,
  // then 64 V rows: on AMD Zen 3 a probe of two row streams read that way took 1.3-1.45x as
  // long as row by row (docs/benchmarks.md). The additions into the output come in the same
  // order as block()'s (P V of block b, rescale, P V of block b + 1): the same bits.
  HEED_FORCE_INLINE void pipelined(int kvh, const head_state& s, const part_rows& rows,
                                   const Variant& vr, const row_fetch& pf, std::int64_t j0, int nb,
                                   pending_pv& pend) const noexcept {
    float* cur = pend.in_second ? s.sb : s.sb2;
    const float* prev = pend.in_second ? s.sb2 : s.sb;
    const KV* vprev = pend.nb ? rows.v + p.v.offset(pend.j0 - rows.first, kvh) : nullptr;
    const std::int64_t vstride = p.v.seq_stride;
    for (int sub = 0; sub < NB; sub += kPipe) {
      if (sub < nb)
        this->logits(typename core::fetch_k_ahead{pf}, kvh, rows, j0 + sub,
                     std::min(kPipe, nb - sub), s.qs, cur + sub);
      if (sub < pend.nb)
        this->pv_all(s.oacc, prev + sub, vprev + sub * vstride, std::min(kPipe, pend.nb - sub), pf,
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
      const float m_old = s.mg[g];
      const float m_new = std::max(m_old, simd::hmax<A>(bmax));
      const float m_use = m_new == neg_inf ? 0.f : m_new;
      const B mu(m_use);
      B sum(0.f), t(0.f);
      if (kEntropy && stats) {
        for (int j = 0; j < nb; j += L) {
          const B sv = B::load_aligned(srow + j);
          const B pv = simd::fast_exp2<A>(sv - mu);
          sum += pv;
          t = xsimd::fma(pv, xsimd::max(sv, B(-1e30f)), t);
          pv.store_aligned(srow + j);
        }
      } else {
        for (int j = 0; j < nb; j += L) {
          const B pv = simd::fast_exp2<A>(B::load_aligned(srow + j) - mu);
          sum += pv;
          pv.store_aligned(srow + j);
        }
      }
      const float alpha = m_old == neg_inf ? 0.f : std::exp2(m_old - m_use);
      s.dg[g] = s.dg[g] * alpha + simd::hsum<A>(sum);
      if (kEntropy && stats) s.tg[g] = s.tg[g] * alpha + simd::hsum<A>(t);
      s.mg[g] = m_new;
      if (alpha != 1.f) {
        const B av(alpha);
        float* og = s.oacc + g * ds;
        std::int64_t c = 0;
        for (; c + L <= d; c += L) (B::load_unaligned(og + c) * av).store_unaligned(og + c);
        for (; c < d; ++c) og[c] *= alpha;
      }
    }
  }

  // Heads [h_lo, h_hi) of partition `part`, side by side: each key block of every head in turn
  // (state slot i holds head h_lo + i). Contiguous rows run one head at a time, each block's
  // logits interleaved with the previous block's P V (pipelined); strided rows
  // ([seq, heads, d]) run every head of the partition the thread has, so that the thread reads
  // the K/V records of consecutive keys in order instead of 256 bytes of every record: with
  // block_cursor's prefetches, same-run A/B on AMD Zen 3 (AVX2, f16, GQA 4, 32768 keys) 1.31-1.45
  // against one head at a time (1 and 2 threads). Each (head, partition) computes exactly
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
    // every page started with PD keys' worth of DRAM misses (256-row pages: 14 against 20 GB/s).
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
      const float mu = mx == neg_inf ? 0.f : mx;
      float dsum = 0.f, tsum = 0.f;
      float* orow = obase + p.o.offset(0, h);
      for (std::int64_t c = 0; c < d; ++c) orow[c] = 0.f;
      for (std::int64_t q = 0; q < lay.n_parts; ++q) {
        const float w = mdt[q * 3] == neg_inf ? 0.f : std::exp2(mdt[q * 3] - mu);
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
  // Each thread takes one contiguous run of (KV head, partition) tasks: long sequential K/V
  // streams per core (measured 23.6 -> see docs/benchmarks.md at 32768 keys, 2 threads), and
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
