// Decode's variant-independent half: where a partition's rows are, their prefetches, and the
// calls of the logits and P V loops over a key block.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "heed/attention/detail/decode_layout.hpp"
#include "heed/attention/detail/decode_pv.hpp"
#include "heed/attention/detail/decode_qk.hpp"
#include "heed/attention/detail/decode_qk_int.hpp"
#include "heed/attention/detail/dense_common.hpp"
#include "heed/simd/arch.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

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
  // prefetchers alone left decode from DRAM far below the read bandwidth (compute and transfer
  // did not overlap). Rows are fetched into L2 (prefetcht1), not L1: an L1 prefetch holds one of
  // the core's few L1 miss buffers until the line arrives from DRAM, which caps the lines in
  // flight. Contiguous rows: the logits loop fetches the K rows PD keys ahead and the P V loop
  // the V rows, so prefetches are issued all through the block instead of in bursts during the
  // logits. Strided rows are fetched a block ahead in address order instead (block_cursor).
  // Measurements: docs/kernel_notes.md.
  static constexpr int PD = 64;

  const dense_params& p;
  decode_layout lay;
  decode_buffers buf;
  std::int64_t d, ds;
  simd::row_shape rs;  // of the K and V rows (quantized rows: their group)

  // Whether this instantiation has the integer logits (decode_qk_int.hpp): AVX-512, q8 keys in
  // groups of 32, a head dim of whole 64-byte pieces.
  static constexpr bool kVnni = [] {
#if defined(HEED_HAVE_VNNI_KERNEL)
    if constexpr (simd::kv_storage<KV>::quantized) {
      return simd::is_avx512<A> && KV::type == dtype::q8 && KV::group == 32 && D != 0 &&
             D % 64 == 0;
    }
#endif
    return false;
  }();
  bool vnni = false;  // kVnni and this step takes the integer path (detail::use_vnni())
  std::int64_t qrec;  // q8 keys: bytes between the query records of buf.query

  decode_core(const dense_params& params, const decode_layout& l, const decode_buffers& b) noexcept
      : p(params), lay(l), buf(b), rs(D ? D : p.head_dim(), p.k.quant_group()) {
    d = rs.d;
    ds = decode_dstride(d);
    qrec = std::int64_t(decode_query_record_bytes(lay));
    if constexpr (kVnni) vnni = use_vnni() && vnni_stride_ok(p.k.seq_stride);
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
  // tensor or page are harmless (a prefetch does not fault). The same prefetches with addresses
  // formed in the loop from dense_params' strides and the partition's pointers made decode's
  // speed from DRAM depend on unrelated code changes (docs/kernel_notes.md).
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
    // One P V column pass's V prefetches: lines [part, part + 1) * lines / parts of the V rows of
    // keys j, j + 1, ... (one row per next()), so the V prefetches spread over the whole block
    // (see pv_heads). The address advances by the row step: no multiply or reload per key (the
    // pass's loop issues about as many instructions as the FMA pipes retire, docs/kernel_notes.md).
    struct v_part_fetch {
      std::uintptr_t at = 0, step = 0;
      int lines = 0;
      HEED_FORCE_INLINE void next() noexcept {
        for (int b = 0; b < lines; ++b)
          __builtin_prefetch(reinterpret_cast<const void*>(at + std::uintptr_t(b) * 64), 0, 2);
        at += step;
      }
    };
    HEED_FORCE_INLINE v_part_fetch v_part(std::int64_t j, int part, int parts) const noexcept {
      const std::int64_t lines = (row_bytes() + 63) / 64;
      const std::int64_t lo = lines * part / parts, hi = lines * (part + 1) / parts;
      return {v + std::uintptr_t(j) * vstep + std::uintptr_t(lo * 64), vstep, int(hi - lo)};
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
    row_fetch f;  // a copy: its fields stay in registers (a reference reloaded them per key)
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
  // rows. Fetched in the order they are read (one head's 64 keys, then the next head's), a
  // [seq, heads, d] read pattern ran at half the speed of address order, which is as fast as a
  // sequential read (docs/kernel_notes.md).
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
    struct v_part_fetch {
      const block_cursor* c = nullptr;
      HEED_FORCE_INLINE void next() noexcept {
        if (c) (*c)(0);
      }
    };
    HEED_FORCE_INLINE v_part_fetch v_part(std::int64_t, int part, int) const noexcept {
      return {part == 0 ? this : nullptr};
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
      constexpr int KC = std::max(KB, decode_qk_keys<A, GC, KV>());
      alignas(64) float tmp[(KC + KB - 1) / KB * L];
      int j = 0;
      // KC keys a call, then the rest KB at a time (KB keys take one transpose-reduce). A whole
      // call (full: all K rows valid) passes the constant K as its count of valid rows: no
      // clamped row addresses to form.
      const auto score = [&](auto keys, auto full) {
        constexpr int K = decltype(keys)::value;
        const int n_here = decltype(full)::value ? K : std::min(K, nb - j);
        for (int n = 0; n < n_here; ++n) kf(j0 + j + n);
        decode_qk_joint<A, D, GC, K, KV>(krow + j * kstride, kstride, n_here, qs, qstride, tmp);
        for (int n = 0; n < n_here; ++n)
          for (int g = 0; g < GC; ++g) sb[g * NB + j + n] = tmp[n * GC + g];
        j += K;
      };
      using whole = std::true_type;
      while (j + KC <= nb) score(std::integral_constant<int, KC>{}, whole{});
      if constexpr (KC != KB)
        while (j + KB <= nb) score(std::integral_constant<int, KB>{}, whole{});
      if (j < nb) score(std::integral_constant<int, KB>{}, std::false_type{});
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
      if (NV % cb == 0 && decode_block_fits<A>(GB * cb, cb)) return cb;
    return 1;
  }

  // P V of the block for query heads [0, GB) of oacc / sb (head-dim rows of vectors), column block
  // by column block; with pf (may be null), each column pass also prefetches its share of key
  // jf + j's V row (v_part). With AVX2's narrower blocks (8 passes), the whole row in the
  // first pass slowed head-major decode from DRAM by a quarter: the prefetches came in bursts.
  template <int GB, class F>
  HEED_FORCE_INLINE void pv_heads(float* oacc, const float* sb, const KV* vrow0,
                                  std::int64_t vstride, int nb, const F* pf,
                                  std::int64_t jf) const noexcept {
    constexpr int CB = pv_cols<GB>();
    constexpr int parts = D / (CB * L);
    for (int part = 0; part < parts; ++part)
      decode_pv_block<A, D, GB, CB, KV>(
          oacc, ds, sb, vrow0, vstride, part * CB * L, nb,
          pf ? pf->v_part(jf, part, parts) : typename F::v_part_fetch{});
  }

  // Also prefetches, per key of the block, key jf + j's V row (pf.v_part over the column
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
  // kf(j) for each key j scored (its prefetch: fetch_k_ahead or a block_cursor). The f32 paths
  // read the scaled queries qs, the integer path the step's quantized queries (buf.query).
  template <class KF>
  HEED_NOINLINE void logits(const KF& kf, int kvh, const part_rows& rows, std::int64_t j0, int nb,
                            const float* qs, float* sb) const noexcept {
    const std::int64_t kstride = p.k.seq_stride;
    const KV* krow = rows.k + p.k.offset(j0 - rows.first, kvh);
#if defined(HEED_HAVE_VNNI_KERNEL)
    if constexpr (kVnni) {
      if (vnni) {
        for (int j = 0; j < nb; j += 16) {
          const int n = std::min(16, nb - j);
          for (int i = 0; i < n; ++i) kf(j0 + j + i);
          decode_qk_q8_vnni<D>(reinterpret_cast<const std::uint8_t*>(krow + j * kstride), kstride,
                               n, buf.query + kvh * lay.group * qrec, qrec, lay.group, sb + j, NB);
        }
        return;
      }
    }
#endif
    if (qk_joint(kf, krow, kstride, j0, nb, qs, ds, sb)) return;
    for (int j = 0; j < nb; ++j, krow += kstride) {
      kf(j0 + j);
      decode_qk_row<A, D, KV>(krow, qs, lay.group, rs, ds, sb + j, NB);
    }
  }
};

}  // namespace detail
HEED_ISA_END
}  // namespace heed
