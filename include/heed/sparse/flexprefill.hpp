// FlexPrefill pattern estimator (Lai et al. 2025): per head, either a query-aware block pattern or
// a vertical-slash pattern, each sized by cumulative attention coverage, as block lists.
//
// Per query head h, with B = block (128) and the last min(B, Lq) query rows as the probe:
//   1. Probe probabilities (causal softmax over all keys): vertical a_j (column mean) and slash
//      s_t (diagonal sums / probe rows), each a distribution.
//   2. Pattern test: the estimated block distribution softmax_b(scale * mean(probe q) . mean_b(K))
//      over the key blocks the probe sees, against the observed block distribution (a_j summed
//      per key block); sqrt-JSD (natural log, in [0, sqrt(ln 2)]).
//   3. sqrt-JSD < tau (0.1): query-aware. Per query block: softmax over the visible key blocks of
//      scale * mean(Q block) . mean(K block), keep the smallest set of blocks whose estimated mass
//      reaches gamma (0.9) (heed::select_coverage). (The reference code pools the coverage over all
//      query blocks of a head; heed sizes each query block on its own.)
//      Otherwise: vertical-slash. Keep the smallest column set and the smallest offset set whose
//      mass reaches gamma, then every block a kept column or diagonal crosses.
//   Each count is clamped to [min_budget / B_k, max_budget / B_k] blocks (query-aware) or
//   [min_budget, max_budget] columns / offsets (vertical-slash); max_budget 0 = no limit.
//   The sink block and the diagonal blocks are forced (block_pattern::force_*).
// The chosen kind and the sqrt-JSD of every head are reported for analysis and calibration;
// head_kind (e.g. from a sparse_calibration) fixes each head's branch instead of the test.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "heed/core/detail/no_throw.hpp"
#include "heed/sparse/minference.hpp"

namespace heed {

enum class flex_kind : std::uint8_t { query_aware = 0, vertical_slash = 1 };

struct flexprefill_options {
  std::int32_t block = 128;  // query and key block size (and probe rows)
  double gamma = 0.9;
  double tau = 0.1;
  std::int64_t min_budget = 512;         // tokens
  std::int64_t max_budget = 0;           // tokens, 0 = no limit
  const flex_kind* head_kind = nullptr;  // [Hq] optional: each head's branch, skipping the test
  // The logit settings (scale and built-in variants, [Hq] arrays): the vertical-slash branch's
  // window scores see the logits the sparse kernel will compute (the query-aware branch's pooled
  // estimate uses the scale only).
  logit_settings logits;
};

struct flexprefill_report {
  std::vector<flex_kind> kind;  // [Hq]
  std::vector<float> sqrt_jsd;  // [Hq]
};

namespace sparse_detail {

// sqrt of the Jensen-Shannon divergence (natural log) of two distributions over n entries.
inline double sqrt_jsd(const float* p, const float* q, std::int64_t n) noexcept {
  double js = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double a = p[i], b = q[i], m = 0.5 * (a + b);
    if (a > 0.0) js += 0.5 * a * std::log(a / m);
    if (b > 0.0) js += 0.5 * b * std::log(b / m);
  }
  return std::sqrt(std::max(0.0, js));
}

}  // namespace sparse_detail

// q: [Lq, Hq, d] f32 prompt queries, k: [Lk, Hkv, d]; causal; q_offset as in dense_params.
inline status flexprefill_estimate(const tensor_view& q, const tensor_view& k,
                                   std::int64_t q_offset, const flexprefill_options& opt,
                                   block_pattern& out, flexprefill_report& report,
                                   estimate_scratch& sc,
                                   executor& ex = default_executor()) noexcept {
  return detail::no_throw([&]() -> status {
    HEED_RETURN_IF_ERROR(sparse_detail::check_qk(q, k, q_offset, opt.logits.scale));
    HEED_RETURN_IF_ERROR(validate_logits(opt.logits));
    if (!(opt.gamma >= 0.0 && opt.gamma <= 1.0) || !(opt.tau >= 0.0) || opt.min_budget < 0 ||
        opt.max_budget < 0 || (opt.max_budget > 0 && opt.max_budget < opt.min_budget))
      return status::invalid_argument;
    if (opt.head_kind)
      for (std::int64_t h = 0; h < q.heads; ++h)
        if (opt.head_kind[h] != flex_kind::query_aware &&
            opt.head_kind[h] != flex_kind::vertical_slash)
          return status::invalid_argument;
    const std::int32_t bs = opt.block;
    HEED_RETURN_IF_ERROR(out.reset(q.heads, q.seq, k.seq, q_offset, bs, bs));
    out.force_sink = out.force_diagonal = true;
    const std::int64_t hq = q.heads, lk = k.seq, d = q.dim, nq = out.q_blocks, nk = out.k_blocks;
    const std::int64_t group = q.heads / k.heads, off = out.q_offset;
    const std::int64_t rows = std::min<std::int64_t>(bs, q.seq);
    const float scale = opt.logits.scale != 0.f ? opt.logits.scale : 1.f / std::sqrt(float(d));
    const int threads = ex.concurrency();
    const std::int64_t max_tok = opt.max_budget > 0 ? opt.max_budget : lk;
    const std::int64_t min_blk = ceil_div(opt.min_budget, bs);
    const std::int64_t max_blk = std::max(min_blk, ceil_div(max_tok, bs));

    sparse_detail::pool_keys(k, bs, sc, ex);
    const std::size_t wbytes = sparse_detail::window_bytes(lk);
    sc.window.resize(wbytes * std::size_t(threads));
    sc.vertical.resize(std::size_t(hq * lk));
    sc.slash.resize(std::size_t(hq * lk));
    // Per thread: pooled Q [nq][d], block scores [nq][nk] (+ two rows of nk), kept columns [lk],
    // kept offsets [lk] and selection scratch [max(lk, nk)].
    const std::int64_t per_sel = 3 * std::max(lk, nk);
    sc.pooled_q.resize(std::size_t(threads * nq * d));
    sc.block_scores.resize(std::size_t(threads * (nq * nk + 2 * nk)));
    sc.select.resize(std::size_t(threads * per_sel));
    sc.keep.resize(std::size_t(hq * nq * nk));
    sc.count.resize(std::size_t(hq * nq));
    report.kind.assign(std::size_t(hq), flex_kind::query_aware);
    report.sqrt_jsd.assign(std::size_t(hq), 0.f);
    std::vector<status> st(std::size_t(hq), status::ok);

    ex.parallel_for(hq, [&](std::int64_t h, int t) {
      float* vert = sc.vertical.data() + h * lk;
      float* sl = sc.slash.data() + h * lk;
      status s = sparse_detail::window_scores(q, k, off, rows, opt.logits, h, vert, sl,
                                              sc.window.data() + wbytes * std::size_t(t), wbytes);
      if (s != status::ok) {
        st[std::size_t(h)] = s;
        return;
      }
      float* scores = sc.block_scores.data() + std::int64_t(t) * (nq * nk + 2 * nk);
      float* est = scores + nq * nk;
      float* obs = est + nk;
      std::int32_t* sel = sc.select.data() + std::int64_t(t) * per_sel;
      std::int32_t* tmp = sel + 2 * std::max(lk, nk);
      const float* pk = sc.pooled_k.data() + (h / group) * nk * d;
      float* pq = sc.pooled_q.data() + std::int64_t(t) * nq * d;

      // 2. Pattern test on the probe: estimated vs observed block distributions.
      const std::int64_t probe_pos = off + q.seq - 1;
      const std::int64_t seen = std::min(nk, probe_pos / bs + 1);
      sparse_detail::pool_blocks(q, h, q.seq - rows, q.seq, rows, pq);
      for (std::int64_t b = 0; b < seen; ++b) {
        double dot = 0.0;
        for (std::int64_t c = 0; c < d; ++c) dot += double(pq[c]) * double(pk[b * d + c]);
        est[b] = static_cast<float>(dot) * scale;
      }
      sparse_detail::softmax(est, seen);
      double total = 0.0;
      for (std::int64_t b = 0; b < seen; ++b) {
        double m = 0.0;
        for (std::int64_t j = b * bs; j < std::min(lk, (b + 1) * bs); ++j) m += vert[j];
        obs[b] = static_cast<float>(m);
        total += m;
      }
      for (std::int64_t b = 0; b < seen; ++b) obs[b] = total > 0.0 ? float(obs[b] / total) : 0.f;
      const double jsd = sparse_detail::sqrt_jsd(est, obs, seen);
      report.sqrt_jsd[std::size_t(h)] = static_cast<float>(jsd);
      const bool query_aware =
          opt.head_kind ? opt.head_kind[h] == flex_kind::query_aware : jsd < opt.tau;
      report.kind[std::size_t(h)] =
          query_aware ? flex_kind::query_aware : flex_kind::vertical_slash;

      std::int32_t* keep_h = sc.keep.data() + h * nq * nk;
      std::int64_t* cnt = &sc.count[std::size_t(h * nq)];
      if (query_aware) {
        // 3a. Per query block: coverage over the estimated block softmax.
        sparse_detail::block_logits(q, h, bs, pk, nk, scale, pq, scores);
        for (std::int64_t qb = 0; qb < nq; ++qb) {
          std::int64_t lo, hi;
          out.diagonal(qb, lo, hi);
          const std::int64_t visible = std::min(nk, hi + 1);
          float* row = scores + qb * nk;
          sparse_detail::softmax(row, visible);
          s = select_coverage(row, visible, opt.gamma, std::min(min_blk, visible),
                              std::min(max_blk, visible), protect_spec{}, keep_h + qb * nk,
                              &cnt[qb], tmp);
          if (s != status::ok) break;
        }
      } else {
        // 3b. Coverage columns and offsets, then the blocks they cross.
        std::int64_t nc = 0, no = 0;
        std::int32_t* cols = sel;
        std::int32_t* offs = sel + std::max(lk, nk);
        const std::int64_t lo_t = std::min(opt.min_budget, lk), hi_t = std::min(max_tok, lk);
        s = select_coverage(vert, lk, opt.gamma, lo_t, hi_t, protect_spec{}, cols, &nc, tmp);
        if (s == status::ok)
          s = select_coverage(sl, lk, opt.gamma, lo_t, hi_t, protect_spec{}, offs, &no, tmp);
        if (s == status::ok) {
          float* mark = est;  // reuse: nk floats as a block mark row
          for (std::int64_t qb = 0; qb < nq; ++qb) {
            std::fill(mark, mark + nk, 0.f);
            const std::int64_t p0 = off + qb * bs;
            const std::int64_t p1 = off + std::min(q.seq, (qb + 1) * bs) - 1;
            for (std::int64_t e = 0; e < nc && cols[e] <= p1; ++e) mark[cols[e] / bs] = 1.f;
            for (std::int64_t e = 0; e < no; ++e) {
              const std::int64_t j_hi = std::min(lk - 1, p1 - offs[e]);
              if (j_hi < 0) break;  // offsets ascend: the rest are further left
              const std::int64_t j_lo = std::max<std::int64_t>(0, p0 - offs[e]);
              for (std::int64_t b = j_lo / bs; b <= j_hi / bs; ++b) mark[b] = 1.f;
            }
            std::int64_t n = 0;
            for (std::int64_t b = 0; b < nk; ++b)
              if (mark[b] != 0.f) keep_h[qb * nk + n++] = static_cast<std::int32_t>(b);
            cnt[qb] = n;
          }
        }
      }
      st[std::size_t(h)] = s;
    });
    for (status s : st) HEED_RETURN_IF_ERROR(s);
    for (std::int64_t r = 0; r < hq * nq; ++r)
      HEED_RETURN_IF_ERROR(out.add_row(sc.keep.data() + r * nk, sc.count[std::size_t(r)]));
    return status::ok;
  });
}

}  // namespace heed
