// MInference pattern estimators (Jiang et al. 2024), producing the sparse kernels' index lists.
//
// Vertical-slash: the last `last_q` query rows (64) attend to every key (causal); per query head
// the column sums of their probabilities score the keys (vertical) and the sums along each
// diagonal t = q_pos - k_pos score the offsets (slash). The top `vertical_size` columns and the
// top `slash_size` offsets are kept, the first `forced_columns` columns (30) and the offsets
// 0 .. forced_diagonals - 1 (30, the local diagonals) always (counted in the sizes).
//
// Block-sparse from pooled Q/K: per query head, the mean of each block of block_q queries against
// the mean of each block of block_k keys (logits scaled like the kernel); per query block the
// top ceil(density * visible blocks) (at least 1) of the causally visible key blocks are kept,
// with the sink and diagonal blocks forced by the kernel on top.
//
// Both run one head per executor task, allocate only when `scratch` grows, and return a status.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>

#include "heed/core/detail/no_throw.hpp"
#include "heed/core/executor.hpp"
#include "heed/policy/select.hpp"
#include "heed/sparse/block_pattern.hpp"
#include "heed/sparse/detail/estimate_common.hpp"

namespace heed {

struct minference_vs_options {
  std::int64_t last_q = 64;
  std::int64_t vertical_size = 1000;
  std::int64_t slash_size = 6096;
  std::int64_t forced_columns = 30;
  std::int64_t forced_diagonals = 30;
  // The logit settings (scale and built-in variants, [Hq] arrays): the window scores that pick the
  // columns and diagonals see the logits the sparse kernel will compute.
  logit_settings logits;
};

// q: [Lq, Hq, d] f32 (the prompt's queries); k: [Lk, Hkv, d]; query row i sits at key position
// q_offset + i (-1 means Lk - Lq). Causal.
inline status minference_vertical_slash(const tensor_view& q, const tensor_view& k,
                                        std::int64_t q_offset, const minference_vs_options& opt,
                                        vs_pattern& out, estimate_scratch& sc,
                                        executor& ex = default_executor()) noexcept {
  return detail::no_throw([&]() -> status {
    HEED_RETURN_IF_ERROR(sparse_detail::check_qk(q, k, q_offset, opt.logits.scale));
    HEED_RETURN_IF_ERROR(validate_logits(opt.logits));
    if (opt.last_q < 1 || opt.vertical_size < 0 || opt.slash_size < 0 || opt.forced_columns < 0 ||
        opt.forced_diagonals < 0)
      return status::invalid_argument;
    const std::int64_t hq = q.heads, lk = k.seq, rows = std::min(opt.last_q, q.seq);
    const std::int64_t off = q_offset >= 0 ? q_offset : lk - q.seq;
    const std::int64_t nv = std::min(opt.vertical_size, lk), ns = std::min(opt.slash_size, lk);
    const int threads = ex.concurrency();
    const std::size_t wbytes = sparse_detail::window_bytes(lk);
    sc.window.resize(wbytes * std::size_t(threads));
    sc.vertical.resize(std::size_t(hq * lk));
    sc.slash.resize(std::size_t(hq * lk));
    sc.keep.resize(std::size_t(hq * (nv + ns)));
    sc.select.resize(std::size_t(threads * lk));
    sc.count.resize(std::size_t(2 * hq));
    std::vector<status> st(std::size_t(hq), status::ok);
    ex.parallel_for(hq, [&](std::int64_t h, int t) {
      float* vert = sc.vertical.data() + h * lk;
      float* sl = sc.slash.data() + h * lk;
      status s = sparse_detail::window_scores(q, k, off, rows, opt.logits, h, vert, sl,
                                              sc.window.data() + wbytes * std::size_t(t), wbytes);
      std::int32_t* keep = sc.keep.data() + h * (nv + ns);
      std::int32_t* scr = sc.select.data() + std::int64_t(t) * lk;
      if (s == status::ok)
        s = select_top_k(vert, lk, nv, protect_spec{opt.forced_columns, 0}, keep,
                         &sc.count[std::size_t(2 * h)], scr);
      if (s == status::ok)
        s = select_top_k(sl, lk, ns, protect_spec{opt.forced_diagonals, 0}, keep + nv,
                         &sc.count[std::size_t(2 * h + 1)], scr);
      st[std::size_t(h)] = s;
    });
    for (status s : st) HEED_RETURN_IF_ERROR(s);
    out.clear();
    for (std::int64_t h = 0; h < hq; ++h) {
      const std::int32_t* keep = sc.keep.data() + h * (nv + ns);
      HEED_RETURN_IF_ERROR(out.add_head(keep, sc.count[std::size_t(2 * h)], keep + nv,
                                        sc.count[std::size_t(2 * h + 1)]));
    }
    return status::ok;
  });
}

struct pooled_block_options {
  std::int32_t block_q = 64, block_k = 64;
  double density = 0.1;  // fraction of the visible key blocks kept per query block, (0, 1]
  const double* head_density = nullptr;  // [Hq], optional per-head densities (calibration)
  bool causal = true;
  float scale = 0.f;
};

namespace sparse_detail {
// Pooled keys of every KV head: sc.pooled_k [Hkv][k_blocks][d].
inline void pool_keys(const tensor_view& k, std::int64_t bk, estimate_scratch& sc, executor& ex) {
  const std::int64_t nb = (k.seq + bk - 1) / bk, d = k.dim;
  sc.pooled_k.resize(std::size_t(k.heads * nb * d));
  ex.parallel_for(k.heads, [&](std::int64_t g, int) {
    pool_blocks(k, g, 0, k.seq, bk, sc.pooled_k.data() + g * nb * d);
  });
}

// Block logits of query head h: sc_scores[qb][kb] = scale * pooled_q[qb] . pooled_k[kb].
inline void block_logits(const tensor_view& q, std::int64_t h, std::int64_t bq,
                         const float* pooled_k, std::int64_t kb, float scale, float* pooled_q,
                         float* scores) {
  const std::int64_t nq = (q.seq + bq - 1) / bq, d = q.dim;
  pool_blocks(q, h, 0, q.seq, bq, pooled_q);
  Eigen::Map<const row_matrix> pq(pooled_q, nq, d), pk(pooled_k, kb, d);
  Eigen::Map<row_matrix> s(scores, nq, kb);
  s.noalias() = (pq * pk.transpose()) * scale;
}
}  // namespace sparse_detail

inline status pooled_block_estimate(const tensor_view& q, const tensor_view& k,
                                    std::int64_t q_offset, const pooled_block_options& opt,
                                    block_pattern& out, estimate_scratch& sc,
                                    executor& ex = default_executor()) noexcept {
  return detail::no_throw([&]() -> status {
    HEED_RETURN_IF_ERROR(sparse_detail::check_qk(q, k, q_offset, opt.scale));
    if (!(opt.density > 0.0 && opt.density <= 1.0)) return status::invalid_argument;
    if (opt.head_density)
      for (std::int64_t h = 0; h < q.heads; ++h)
        if (!(opt.head_density[h] > 0.0 && opt.head_density[h] <= 1.0))
          return status::invalid_argument;
    HEED_RETURN_IF_ERROR(out.reset(q.heads, q.seq, k.seq, q_offset, opt.block_q, opt.block_k));
    const std::int64_t nq = out.q_blocks, nk = out.k_blocks, d = q.dim;
    const std::int64_t group = q.heads / k.heads;
    const float scale = opt.scale != 0.f ? opt.scale : 1.f / std::sqrt(float(d));
    const int threads = ex.concurrency();
    sparse_detail::pool_keys(k, opt.block_k, sc, ex);
    sc.pooled_q.resize(std::size_t(threads * nq * d));
    sc.block_scores.resize(std::size_t(threads * nq * nk));
    sc.select.resize(std::size_t(threads * nk));
    sc.keep.resize(std::size_t(q.heads * nq * nk));
    sc.count.resize(std::size_t(q.heads * nq));
    std::atomic<int> failed{0};  // a selection's status (none is expected: inputs were checked)
    ex.parallel_for(q.heads, [&](std::int64_t h, int t) {
      float* scores = sc.block_scores.data() + std::int64_t(t) * nq * nk;
      sparse_detail::block_logits(q, h, opt.block_q, sc.pooled_k.data() + (h / group) * nk * d, nk,
                                  scale, sc.pooled_q.data() + std::int64_t(t) * nq * d, scores);
      const double density = opt.head_density ? opt.head_density[h] : opt.density;
      for (std::int64_t qb = 0; qb < nq; ++qb) {
        std::int64_t lo, hi;
        out.diagonal(qb, lo, hi);
        const std::int64_t visible = opt.causal ? std::min(nk, hi + 1) : nk;
        const auto budget = std::max<std::int64_t>(
            1, static_cast<std::int64_t>(std::ceil(density * double(visible))));
        std::int64_t* n = &sc.count[std::size_t(h * nq + qb)];
        const status st = select_top_k(scores + qb * nk, visible, budget, protect_spec{},
                                       sc.keep.data() + (h * nq + qb) * nk, n,
                                       sc.select.data() + std::int64_t(t) * nk);
        if (st != status::ok) failed.store(static_cast<int>(st), std::memory_order_relaxed);
      }
    });
    if (failed.load() != 0) return static_cast<status>(failed.load());
    for (std::int64_t r = 0; r < q.heads * nq; ++r)
      HEED_RETURN_IF_ERROR(out.add_row(sc.keep.data() + r * nk, sc.count[std::size_t(r)]));
    return status::ok;
  });
}

}  // namespace heed
