// XAttention pattern estimator (Xu et al. 2025): antidiagonal block scores from strided Q/K.
//
// With stride S (8) and block B (128, a multiple of S), query group r is the query rows
// [r S, r S + S) and key group c the keys [c S, c S + S). The reshaped rows
//   Q'[r] = (q_{rS+S-1}, q_{rS+S-2}, ..., q_{rS})   K'[c] = (k_{cS}, k_{cS+1}, ..., k_{cS+S-1})
// (missing rows past the end are zero) make Q'[r] . K'[c] the sum of the S logits on one
// antidiagonal of the S x S tile. Per query group, softmax over the key groups it sees (causal at
// group level: c S <= position of the group's last query) of scale / (S * norm) * Q'[r] . K'[c];
// a block's score is the sum of those probabilities over its (B/S) x (B/S) groups. Per query
// block, the smallest set of visible key blocks whose score reaches `threshold` of the row's
// total is kept (heed::select_coverage: ties to the later block); the sink and diagonal blocks
// are forced by the kernel. Cost per head: (Lq / S) x (Lk / S) dot products of length S d, one
// Eigen GEMM per query block.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "heed/core/detail/no_throw.hpp"
#include "heed/sparse/minference.hpp"

namespace heed {

struct xattention_options {
  std::int32_t block = 128;
  std::int32_t stride = 8;
  double threshold = 0.9;
  float norm = 1.f;
  float scale = 0.f;  // 0 means 1 / sqrt(d)
};

// Optional output: block scores [Hq][q_blocks][k_blocks] (0 where not visible).
struct xattention_report {
  std::vector<float> block_scores;
};

inline status xattention_estimate(const tensor_view& q, const tensor_view& k, std::int64_t q_offset,
                                  const xattention_options& opt, block_pattern& out,
                                  xattention_report* report, estimate_scratch& sc,
                                  executor& ex = default_executor()) noexcept {
  return detail::no_throw([&]() -> status {
    using sparse_detail::row_matrix;
    HEED_RETURN_IF_ERROR(sparse_detail::check_qk(q, k, q_offset, opt.scale));
    const std::int64_t S = opt.stride;
    if (S < 1 || S > 64 || opt.block % S != 0 || !(opt.threshold >= 0.0 && opt.threshold <= 1.0) ||
        !(opt.norm > 0.f) || !std::isfinite(opt.norm))
      return status::invalid_argument;
    HEED_RETURN_IF_ERROR(out.reset(q.heads, q.seq, k.seq, q_offset, opt.block, opt.block));
    out.force_sink = out.force_diagonal = true;
    const std::int64_t hq = q.heads, d = q.dim, nq = out.q_blocks, nk = out.k_blocks;
    const std::int64_t group = q.heads / k.heads, off = out.q_offset, B = opt.block;
    const std::int64_t G = B / S;  // groups per block
    const std::int64_t nr = ceil_div(q.seq, S), nc = ceil_div(k.seq, S), W = S * d;
    const float scale =
        (opt.scale != 0.f ? opt.scale : 1.f / std::sqrt(float(d))) / (float(S) * opt.norm);
    const int threads = ex.concurrency();

    // K' of every KV head: sc.pooled_k [Hkv][nc][S d].
    sc.pooled_k.assign(std::size_t(k.heads * nc * W), 0.f);
    ex.parallel_for(k.heads, [&](std::int64_t g, int) {
      float* base = sc.pooled_k.data() + g * nc * W;
      for (std::int64_t j = 0; j < k.seq; ++j)
        for (std::int64_t c = 0; c < d; ++c)
          base[(j / S) * W + (j % S) * d + c] = sparse_detail::element(k, j, g, c);
    });
    // Per thread: Q' of one block [G][S d], its scores [G][nc], block sums [nk], selection.
    const std::int64_t per = G * W + G * nc + 2 * nk;
    sc.pooled_q.resize(std::size_t(threads * per));
    sc.select.resize(std::size_t(threads * nk));
    sc.keep.resize(std::size_t(hq * nq * nk));
    sc.count.resize(std::size_t(hq * nq));
    if (report) report->block_scores.assign(std::size_t(hq * nq * nk), 0.f);
    std::vector<status> st(std::size_t(hq), status::ok);

    ex.parallel_for(hq, [&](std::int64_t h, int t) {
      float* qr = sc.pooled_q.data() + std::int64_t(t) * per;
      float* sv = qr + G * W;
      float* sums = sv + G * nc;
      const float* kr = sc.pooled_k.data() + (h / group) * nc * W;
      const float* qb0 = static_cast<const float*>(q.data);
      for (std::int64_t qb = 0; qb < nq; ++qb) {
        // Q' rows of this block (zero past the end).
        const std::int64_t r0 = qb * G, rn = std::min(G, nr - r0);
        std::fill(qr, qr + G * W, 0.f);
        for (std::int64_t r = 0; r < rn; ++r)
          for (std::int64_t s = 0; s < S; ++s) {
            const std::int64_t i = (r0 + r) * S + (S - 1 - s);
            if (i >= q.seq) continue;
            const float* src = qb0 + q.offset(i, h);
            std::copy(src, src + d, qr + r * W + s * d);
          }
        // Key groups any row of the block may see.
        const std::int64_t last_pos = off + std::min(q.seq, (r0 + rn) * S) - 1;
        const std::int64_t vis = std::min(nc, last_pos / S + 1);
        Eigen::Map<const row_matrix> qm(qr, rn, W), km(kr, vis, W);
        Eigen::Map<row_matrix, 0, Eigen::OuterStride<>> s(sv, rn, vis, Eigen::OuterStride<>(nc));
        s.noalias() = (qm * km.transpose()) * scale;
        std::fill(sums, sums + nk, 0.f);
        for (std::int64_t r = 0; r < rn; ++r) {
          const std::int64_t pos = off + std::min(q.seq, (r0 + r + 1) * S) - 1;
          const std::int64_t n = std::min(vis, pos / S + 1);
          float* row = sv + r * nc;
          sparse_detail::softmax(row, n);
          for (std::int64_t c = 0; c < n; ++c) sums[(c * S) / B] += row[c];
        }
        const std::int64_t kvis = std::min(nk, ((vis - 1) * S) / B + 1);
        if (report) std::copy(sums, sums + kvis, report->block_scores.data() + (h * nq + qb) * nk);
        const status s2 = select_coverage(
            sums, kvis, opt.threshold, 0, kvis, protect_spec{}, sc.keep.data() + (h * nq + qb) * nk,
            &sc.count[std::size_t(h * nq + qb)], sc.select.data() + std::int64_t(t) * nk);
        if (s2 != status::ok) {
          st[std::size_t(h)] = s2;
          return;
        }
      }
    });
    for (status s : st) HEED_RETURN_IF_ERROR(s);
    for (std::int64_t r = 0; r < hq * nq; ++r)
      HEED_RETURN_IF_ERROR(out.add_row(sc.keep.data() + r * nk, sc.count[std::size_t(r)]));
    return status::ok;
  });
}

}  // namespace heed
