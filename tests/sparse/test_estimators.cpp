// Sparse-pattern estimators against naive float64 computations of the same scores:
//   MInference vertical-slash (column / diagonal sums of the last rows' softmax, top-k with the
//   forced columns and local diagonals), pooled-block top-k, FlexPrefill (sqrt-JSD, the branch it
//   picks, the coverage sets and the blocks they cross), plus the coverage guarantee measured
//   with the kernels: FlexPrefill's vertical-slash blocks keep at least gamma of the probe rows'
//   dense attention mass.
// A selection is checked as consistent with the float64 scores: every kept entry scores at least
// every dropped one, up to 1e-5 of the largest score (f32 logits and a fast exp in the kernel).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/sparse/flexprefill.hpp"
#include "heed/sparse/minference.hpp"
#include "heed/sparse/xattention.hpp"
#include "reference/naive_attention.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::status;
using heed_ref::vec;

struct qk_input {
  std::int64_t lq, hq, d;
  std::vector<float> q;  // [lq][hq][d]
  vec qd;
  heed_ref::stored_kv k;
  heed::tensor_view qv;

  qk_input(std::int64_t lq_, std::int64_t lk, std::int64_t hq_, std::int64_t hkv, std::int64_t d_,
           dtype t, unsigned seed, float amp = 2.f)
      : lq(lq_), hq(hq_), d(d_), k(lk, hkv, d_, t, seed + 1) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, amp);
    q.resize(std::size_t(lq * hq * d));
    for (float& x : q) x = nd(rng);
    qd.assign(q.begin(), q.end());
    qv = heed::make_view<const void*>(q.data(), dtype::f32, lq, hq, d);
  }
  // Structure like real prompts: every query gets +a along the first channel and the keys in
  // `cols` get +b there, so those columns draw most of the attention (f32 keys only).
  void add_sinks(const std::vector<std::int64_t>& cols, float a, float b) {
    for (std::int64_t i = 0; i < lq; ++i)
      for (std::int64_t h = 0; h < hq; ++h)
        qd[std::size_t((i * hq + h) * d)] = q[std::size_t((i * hq + h) * d)] += a;
    for (std::int64_t j : cols)
      for (std::int64_t h = 0; h < k.ref.heads; ++h) {
        const std::size_t at = std::size_t((j * k.ref.heads + h) * d);
        k.ref.x[at] = k.f32[at] += b;
      }
  }
  // Locality like RoPE heads: channels [2, 2 + 2 nf) of query i get c (cos w_f i, sin w_f i) and
  // of key j c (cos w_f j, sin w_f j), w_f = pi f / 256, so q_i . k_j gains
  // c^2 sum_f cos(w_f (i - j)), peaked at i = j (f32 keys only, query row i at position i).
  void add_local(float c, int nf) {
    for (int f = 1; f <= nf; ++f) {
      const double w = 3.14159265358979 * f / 256.0;
      const std::size_t ch = std::size_t(2 * f);
      for (std::int64_t i = 0; i < lq; ++i)
        for (std::int64_t h = 0; h < hq; ++h) {
          const std::size_t at = std::size_t((i * hq + h) * d) + ch;
          qd[at] = q[at] += c * float(std::cos(w * double(i)));
          qd[at + 1] = q[at + 1] += c * float(std::sin(w * double(i)));
        }
      for (std::int64_t j = 0; j < k.ref.len; ++j)
        for (std::int64_t h = 0; h < k.ref.heads; ++h) {
          const std::size_t at = std::size_t((j * k.ref.heads + h) * d) + ch;
          k.ref.x[at] = k.f32[at] += c * float(std::cos(w * double(j)));
          k.ref.x[at + 1] = k.f32[at + 1] += c * float(std::sin(w * double(j)));
        }
    }
  }
  // The last `rows` query rows as a double [rows][hq][d] block.
  vec last_rows(std::int64_t rows) const { return vec(qd.end() - rows * hq * d, qd.end()); }
};

// Kept entries (ascending indices) of scores s over [0, n) are consistent with the reference:
// min kept (outside `forced`) >= max dropped - tol.
void expect_consistent(const std::vector<std::int32_t>& kept, const double* ref, std::int64_t n,
                       std::int64_t forced, const char* what) {
  std::vector<char> in(std::size_t(n), 0);
  for (std::int32_t e : kept) {
    ASSERT_GE(e, 0);
    ASSERT_LT(e, n);
    in[std::size_t(e)] = 1;
  }
  for (std::int64_t i = 1; i < std::int64_t(kept.size()); ++i) ASSERT_LT(kept[i - 1], kept[i]);
  double lo = 1e300, hi = -1e300, top = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    top = std::max(top, std::fabs(ref[i]));
    if (i < forced) {
      EXPECT_TRUE(in[std::size_t(i)]) << what << ": forced entry " << i << " missing";
      continue;
    }
    if (in[std::size_t(i)])
      lo = std::min(lo, ref[i]);
    else
      hi = std::max(hi, ref[i]);
  }
  EXPECT_GE(lo, hi - 1e-5 * top) << what << ": a dropped entry outscores a kept one";
}

TEST(MInference, VerticalSlashMatchesNaiveScores) {
  heed::thread_pool_executor pool(2);
  for (dtype t : {dtype::f32, dtype::f16}) {
    for (std::int64_t q_offset : {std::int64_t(-1), std::int64_t(40)}) {
      const std::int64_t lq = 150, lk = q_offset < 0 ? 150 : 260, hq = 4, hkv = 2, d = 32;
      qk_input in(lq, lk, hq, hkv, d, t, 7 + unsigned(q_offset + 1));
      heed::minference_vs_options opt;
      opt.last_q = 16;
      opt.vertical_size = 20;
      opt.slash_size = 15;
      opt.forced_columns = 3;
      opt.forced_diagonals = 4;
      heed::vs_pattern pat;
      heed::estimate_scratch sc;
      ASSERT_EQ(heed::minference_vertical_slash(in.qv, in.k.view, q_offset, opt, pat, sc, pool),
                status::ok);
      const std::int64_t off = q_offset >= 0 ? q_offset : lk - lq;
      const auto r = heed_ref::observation_window(in.last_rows(16), 16, hq, in.k.ref, off + lq - 16,
                                                  0.0, 0, 1, false);
      ASSERT_EQ(pat.v_ptr.size(), std::size_t(hq + 1));
      for (std::int64_t h = 0; h < hq; ++h) {
        const std::vector<std::int32_t> cols(pat.v_idx.begin() + pat.v_ptr[h],
                                             pat.v_idx.begin() + pat.v_ptr[h + 1]);
        const std::vector<std::int32_t> offs(pat.s_off.begin() + pat.s_ptr[h],
                                             pat.s_off.begin() + pat.s_ptr[h + 1]);
        EXPECT_EQ(cols.size(), 20u);
        EXPECT_EQ(offs.size(), 15u);
        expect_consistent(cols, r.vertical.data() + h * lk, lk, 3, "vertical");
        expect_consistent(offs, r.slash.data() + h * lk, lk, 4, "slash");
      }
      // The layout the kernel takes is valid.
      heed::dense_params p;
      std::vector<float> o(in.q.size());
      p.q = in.qv;
      p.k = in.k.view;
      p.v = in.k.view;
      p.o = heed::make_view<void*>(o.data(), dtype::f32, lq, hq, d);
      p.q_offset = q_offset;
      EXPECT_EQ(heed::validate(p, pat.layout()), status::ok);
    }
  }
}

// The model's logit settings (soft-capping, ALiBi, a sliding window and learned sinks together)
// reach the vertical-slash estimate: its columns and diagonals are those of the reference's
// probabilities under the same settings.
TEST(MInference, VerticalSlashUsesTheModelsLogitSettings) {
  const std::int64_t lq = 120, lk = 120, hq = 4, hkv = 2, d = 32, rows = 16;
  qk_input in(lq, lk, hq, hkv, d, dtype::f32, 19);
  const std::vector<float> slopes = {0.05f, 0.2f, 0.f, 0.1f}, sinks = {1.f, 0.f, 2.f, -1.f};
  heed::minference_vs_options opt;
  opt.last_q = rows;
  opt.vertical_size = 20;
  opt.slash_size = 15;
  opt.forced_columns = 2;
  opt.forced_diagonals = 2;
  opt.logits.softcap = 2.f;
  opt.logits.alibi_slopes = slopes.data();
  opt.logits.window_left = 60;
  opt.logits.sink_logits = sinks.data();
  heed::vs_pattern pat;
  heed::estimate_scratch sc;
  ASSERT_EQ(heed::minference_vertical_slash(in.qv, in.k.view, -1, opt, pat, sc), status::ok);
  heed_ref::attention_problem ap;
  ap.lq = rows;
  ap.lk = lk;
  ap.hq = hq;
  ap.hkv = hkv;
  ap.d = d;
  ap.resize();
  ap.q = in.last_rows(rows);
  ap.k = in.k.ref.x;
  ap.softcap = 2.0;
  ap.alibi_slopes.assign(slopes.begin(), slopes.end());
  ap.window_left = 60;
  ap.sink_logits.assign(sinks.begin(), sinks.end());
  const auto r = heed_ref::naive_attention(ap);
  for (std::int64_t h = 0; h < hq; ++h) {
    vec vert(std::size_t(lk), 0.0), slash(std::size_t(lk), 0.0);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < lk; ++j) {
        const double p = r.prob_at(h, i, j);
        vert[std::size_t(j)] += p;
        const std::int64_t t = (lk - rows + i) - j;
        if (t >= 0 && t < lk) slash[std::size_t(t)] += p;
      }
    const std::vector<std::int32_t> cols(pat.v_idx.begin() + pat.v_ptr[h],
                                         pat.v_idx.begin() + pat.v_ptr[h + 1]);
    const std::vector<std::int32_t> offs(pat.s_off.begin() + pat.s_ptr[h],
                                         pat.s_off.begin() + pat.s_ptr[h + 1]);
    expect_consistent(cols, vert.data(), lk, 2, "vertical");
    expect_consistent(offs, slash.data(), lk, 2, "slash");
  }
}

// Float64 pooled block logits of query head h: [nq][nk].
vec naive_block_logits(const qk_input& in, std::int64_t h, std::int64_t bq, std::int64_t bk) {
  const auto& k = in.k.ref;
  const std::int64_t nq = (in.lq + bq - 1) / bq, nk = (k.len + bk - 1) / bk, g = in.hq / k.heads;
  vec pq(std::size_t(nq * in.d), 0.0), pk(std::size_t(nk * in.d), 0.0), s(std::size_t(nq * nk));
  for (std::int64_t i = 0; i < in.lq; ++i)
    for (std::int64_t c = 0; c < in.d; ++c)
      pq[std::size_t((i / bq) * in.d + c)] += in.qd[std::size_t((i * in.hq + h) * in.d + c)] /
                                              double(std::min(bq, in.lq - (i / bq) * bq));
  for (std::int64_t j = 0; j < k.len; ++j)
    for (std::int64_t c = 0; c < in.d; ++c)
      pk[std::size_t((j / bk) * in.d + c)] +=
          k.at(j, h / g, c) / double(std::min(bk, k.len - (j / bk) * bk));
  for (std::int64_t a = 0; a < nq; ++a)
    for (std::int64_t b = 0; b < nk; ++b) {
      double dot = 0;
      for (std::int64_t c = 0; c < in.d; ++c)
        dot += pq[std::size_t(a * in.d + c)] * pk[std::size_t(b * in.d + c)];
      s[std::size_t(a * nk + b)] = dot / std::sqrt(double(in.d));
    }
  return s;
}

TEST(PooledBlocks, TopKOfNaivePooledLogits) {
  heed::thread_pool_executor pool(2);
  for (double density : {0.05, 0.3, 1.0}) {
    const std::int64_t lq = 700, lk = 700, hq = 3, d = 16;
    qk_input in(lq, lk, hq, 1, d, dtype::bf16, 21);
    heed::pooled_block_options opt;
    opt.block_q = 64;
    opt.block_k = 32;
    opt.density = density;
    heed::block_pattern pat;
    heed::estimate_scratch sc;
    ASSERT_EQ(heed::pooled_block_estimate(in.qv, in.k.view, -1, opt, pat, sc, pool), status::ok);
    ASSERT_TRUE(pat.complete());
    const std::int64_t nq = pat.q_blocks, nk = pat.k_blocks;
    for (std::int64_t h = 0; h < hq; ++h) {
      const vec s = naive_block_logits(in, h, 64, 32);
      for (std::int64_t qb = 0; qb < nq; ++qb) {
        const std::int64_t visible = std::min(nk, (std::min(lq, (qb + 1) * 64) - 1) / 32 + 1);
        const std::int64_t r = h * nq + qb;
        const std::vector<std::int32_t> kept(pat.col_idx.begin() + pat.row_ptr[r],
                                             pat.col_idx.begin() + pat.row_ptr[r + 1]);
        const auto want = std::max<std::int64_t>(1, std::int64_t(std::ceil(density * visible)));
        EXPECT_EQ(std::int64_t(kept.size()), want);
        expect_consistent(kept, s.data() + qb * nk, visible, 0, "pooled blocks");
      }
    }
  }
}

// FlexPrefill: the report's sqrt-JSD against a float64 recomputation, the branch, and each
// branch's sets.
struct flex_naive {
  double jsd;
  vec vertical, slash;  // of the probe rows, one head
};

flex_naive naive_flex(const qk_input& in, std::int64_t h, std::int64_t off, std::int64_t bs) {
  const auto& k = in.k.ref;
  const std::int64_t lk = k.len, rows = std::min(bs, in.lq), g = in.hq / k.heads;
  const auto r = heed_ref::observation_window(in.last_rows(rows), rows, in.hq, k,
                                              off + in.lq - rows, 0.0, 0, 1, false);
  flex_naive f;
  f.vertical.assign(r.vertical.begin() + h * lk, r.vertical.begin() + (h + 1) * lk);
  f.slash.assign(r.slash.begin() + h * lk, r.slash.begin() + (h + 1) * lk);
  const std::int64_t nk = (lk + bs - 1) / bs;
  const std::int64_t seen = std::min(nk, (off + in.lq - 1) / bs + 1);
  vec pq(std::size_t(in.d), 0.0), est(std::size_t(seen), 0.0), obs(std::size_t(seen), 0.0);
  for (std::int64_t i = in.lq - rows; i < in.lq; ++i)
    for (std::int64_t c = 0; c < in.d; ++c)
      pq[std::size_t(c)] += in.qd[std::size_t((i * in.hq + h) * in.d + c)] / double(rows);
  double m = -1e300, z = 0, tot = 0;
  for (std::int64_t b = 0; b < seen; ++b) {
    const std::int64_t j1 = std::min(lk, (b + 1) * bs);
    double dot = 0;
    for (std::int64_t c = 0; c < in.d; ++c) {
      double mk = 0;
      for (std::int64_t j = b * bs; j < j1; ++j) mk += k.at(j, h / g, c);
      dot += pq[std::size_t(c)] * mk / double(j1 - b * bs);
    }
    est[std::size_t(b)] = dot / std::sqrt(double(in.d));
    m = std::max(m, est[std::size_t(b)]);
    for (std::int64_t j = b * bs; j < j1; ++j) obs[std::size_t(b)] += f.vertical[std::size_t(j)];
    tot += obs[std::size_t(b)];
  }
  for (double& e : est) z += (e = std::exp(e - m));
  double js = 0;
  for (std::int64_t b = 0; b < seen; ++b) {
    const double a = est[std::size_t(b)] / z, o = obs[std::size_t(b)] / tot, mid = 0.5 * (a + o);
    if (a > 0) js += 0.5 * a * std::log(a / mid);
    if (o > 0) js += 0.5 * o * std::log(o / mid);
  }
  f.jsd = std::sqrt(js);
  return f;
}

// Smallest prefix of the descending-sorted scores reaching gamma of the total, clamped.
std::set<std::int64_t> naive_coverage(const vec& s, double gamma, std::int64_t lo,
                                      std::int64_t hi) {
  std::vector<std::int64_t> idx(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) idx[i] = std::int64_t(i);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int64_t a, std::int64_t b) {
    return s[std::size_t(a)] > s[std::size_t(b)] ||
           (s[std::size_t(a)] == s[std::size_t(b)] && a > b);
  });
  double total = 0, acc = 0;
  for (double x : s) total += x;
  std::int64_t n = 0;
  while (n < std::int64_t(idx.size()) && acc < gamma * total)
    acc += s[std::size_t(idx[std::size_t(n++)])];
  n = std::min(std::max(n, lo), std::min(hi, std::int64_t(s.size())));
  return std::set<std::int64_t>(idx.begin(), idx.begin() + n);
}

TEST(FlexPrefill, MatchesNaiveJsdBranchesAndSets) {
  heed::thread_pool_executor pool(2);
  const std::int64_t lq = 520, lk = 520, hq = 2, d = 32, bs = 64;
  qk_input in(lq, lk, hq, 1, d, dtype::f32, 33, 3.f);
  for (double tau : {0.0, 1.0}) {  // 0 forces vertical-slash, 1 forces query-aware
    heed::flexprefill_options opt;
    opt.block = bs;
    opt.tau = tau;
    opt.gamma = 0.8;
    opt.min_budget = 70;
    heed::block_pattern pat;
    heed::flexprefill_report rep;
    heed::estimate_scratch sc;
    ASSERT_EQ(heed::flexprefill_estimate(in.qv, in.k.view, -1, opt, pat, rep, sc, pool),
              status::ok);
    ASSERT_TRUE(pat.complete());
    const std::int64_t nq = pat.q_blocks, nk = pat.k_blocks;
    for (std::int64_t h = 0; h < hq; ++h) {
      const flex_naive f = naive_flex(in, h, 0, bs);
      EXPECT_NEAR(rep.sqrt_jsd[std::size_t(h)], f.jsd, 1e-4);
      EXPECT_EQ(rep.kind[std::size_t(h)],
                tau > 0.5 ? heed::flex_kind::query_aware : heed::flex_kind::vertical_slash);
      if (tau < 0.5) {
        const auto cols = naive_coverage(f.vertical, 0.8, 70, lk);
        const auto offs = naive_coverage(f.slash, 0.8, 70, lk);
        for (std::int64_t qb = 0; qb < nq; ++qb) {
          std::set<std::int32_t> want;
          const std::int64_t p0 = qb * bs, p1 = std::min(lq, (qb + 1) * bs) - 1;
          for (std::int64_t c : cols)
            if (c <= p1) want.insert(std::int32_t(c / bs));
          for (std::int64_t t : offs)
            for (std::int64_t j = std::max<std::int64_t>(0, p0 - t); j <= p1 - t; ++j)
              want.insert(std::int32_t(j / bs));
          const std::int64_t r = h * nq + qb;
          const std::set<std::int32_t> got(pat.col_idx.begin() + pat.row_ptr[r],
                                           pat.col_idx.begin() + pat.row_ptr[r + 1]);
          EXPECT_EQ(got, want) << "head " << h << " query block " << qb;
        }
      } else {
        const vec s = naive_block_logits(in, h, bs, bs);
        for (std::int64_t qb = 0; qb < nq; ++qb) {
          const std::int64_t visible = std::min(nk, qb + 1);
          vec p(s.begin() + qb * nk, s.begin() + qb * nk + visible);
          const double m = *std::max_element(p.begin(), p.end());
          for (double& x : p) x = std::exp(x - m);
          const auto want = naive_coverage(p, 0.8, std::min<std::int64_t>(2, visible), visible);
          const std::int64_t r = h * nq + qb;
          const std::set<std::int64_t> got(pat.col_idx.begin() + pat.row_ptr[r],
                                           pat.col_idx.begin() + pat.row_ptr[r + 1]);
          EXPECT_EQ(got, want) << "head " << h << " query block " << qb;
        }
      }
    }
  }
}

// The vertical-slash branch keeps every selected column and diagonal, so the probe rows keep at
// least gamma of their dense attention mass (their LSE under the sparse kernel vs dense).
TEST(FlexPrefill, VerticalSlashBlocksCoverProbeMass) {
  const std::int64_t lq = 600, hq = 2, d = 64, bs = 64;
  qk_input in(lq, lq, hq, 2, d, dtype::f32, 5, 1.f);
  in.add_sinks({0, 1, 2, 130, 300}, 2.f, 2.f);
  in.add_local(2.f, 16);
  heed::flexprefill_options opt;
  opt.block = bs;
  opt.tau = 0.0;
  opt.min_budget = 0;
  for (double gamma : {0.5, 0.9}) {
    opt.gamma = gamma;
    heed::block_pattern pat;
    heed::flexprefill_report rep;
    heed::estimate_scratch sc;
    ASSERT_EQ(heed::flexprefill_estimate(in.qv, in.k.view, -1, opt, pat, rep, sc), status::ok);
    std::vector<float> o(in.q.size()), lse_d(std::size_t(hq * lq)), lse_s(lse_d.size());
    heed::dense_params p;
    p.q = in.qv;
    p.k = p.v = in.k.view;
    p.o = heed::make_view<void*>(o.data(), dtype::f32, lq, hq, d);
    p.lse = lse_d.data();
    std::vector<char> ws(heed::dense_workspace_size(p, 1));
    ASSERT_EQ(heed::dense_attention(p, {ws.data(), ws.size()}), status::ok);
    p.lse = lse_s.data();
    ws.assign(heed::block_sparse_workspace_size(p, pat.layout(), 1), 0);
    ASSERT_EQ(heed::block_sparse_attention(p, pat.layout(), {ws.data(), ws.size()}), status::ok);
    for (std::int64_t h = 0; h < hq; ++h) {
      double recall = 0;
      for (std::int64_t i = lq - bs; i < lq; ++i)
        recall += std::exp(double(lse_s[std::size_t(h * lq + i)]) - lse_d[std::size_t(h * lq + i)]);
      recall /= double(bs);
      EXPECT_GE(recall, gamma - 1e-4) << "head " << h;
      EXPECT_LE(recall, 1.0 + 1e-4);
    }
    EXPECT_LT(heed::block_density(pat, true), 0.8);  // the structure makes it sparse
  }
}

// XAttention: block scores against a float64 recomputation of the strided antidiagonal softmax,
// and each kept set is the coverage set of its row (mass >= threshold, minimal).
TEST(XAttention, BlockScoresMatchNaiveAndRowsAreCoverageSets) {
  heed::thread_pool_executor pool(2);
  struct cfg {
    std::int64_t lq, lk;
    std::int32_t block, stride;
    double threshold;
  } cfgs[] = {{300, 300, 64, 8, 0.9}, {250, 420, 32, 4, 0.7}, {77, 77, 128, 8, 1.0}};
  for (const cfg& c : cfgs) {
    const std::int64_t hq = 4, hkv = 2, d = 16;
    qk_input in(c.lq, c.lk, hq, hkv, d, dtype::f16, 9, 2.f);
    heed::xattention_options opt;
    opt.block = c.block;
    opt.stride = c.stride;
    opt.threshold = c.threshold;
    heed::block_pattern pat;
    heed::xattention_report rep;
    heed::estimate_scratch sc;
    ASSERT_EQ(heed::xattention_estimate(in.qv, in.k.view, -1, opt, pat, &rep, sc, pool),
              status::ok);
    ASSERT_TRUE(pat.complete());
    const std::int64_t S = c.stride, B = c.block, off = c.lk - c.lq;
    const std::int64_t nr = (c.lq + S - 1) / S, nc = (c.lk + S - 1) / S;
    const std::int64_t nq = pat.q_blocks, nk = pat.k_blocks;
    for (std::int64_t h = 0; h < hq; ++h) {
      vec sums(std::size_t(nq * nk), 0.0);
      for (std::int64_t r = 0; r < nr; ++r) {
        const std::int64_t pos = off + std::min(c.lq, (r + 1) * S) - 1;
        const std::int64_t n = std::min(nc, pos / S + 1);
        vec logit(std::size_t(n), 0.0);
        for (std::int64_t g = 0; g < n; ++g) {
          double dot = 0;
          for (std::int64_t s = 0; s < S; ++s) {
            const std::int64_t i = r * S + (S - 1 - s), j = g * S + s;
            if (i >= c.lq || j >= c.lk) continue;
            for (std::int64_t x = 0; x < d; ++x)
              dot += in.qd[std::size_t((i * hq + h) * d + x)] * in.k.ref.at(j, h / (hq / hkv), x);
          }
          logit[std::size_t(g)] = dot / std::sqrt(double(d)) / double(S);
        }
        const double m = *std::max_element(logit.begin(), logit.end());
        double z = 0;
        for (double& x : logit) z += (x = std::exp(x - m));
        for (std::int64_t g = 0; g < n; ++g)
          sums[std::size_t((r * S / B) * nk + (g * S) / B)] += logit[std::size_t(g)] / z;
      }
      for (std::int64_t qb = 0; qb < nq; ++qb) {
        double total = 0, kept = 0;
        for (std::int64_t kb = 0; kb < nk; ++kb) {
          const double want = sums[std::size_t(qb * nk + kb)];
          EXPECT_NEAR(rep.block_scores[std::size_t((h * nq + qb) * nk + kb)], want,
                      1e-5 * (1.0 + want))
              << "head " << h << " block (" << qb << ", " << kb << ")";
          total += want;
        }
        const std::int64_t r = h * nq + qb;
        const std::vector<std::int32_t> got(pat.col_idx.begin() + pat.row_ptr[r],
                                            pat.col_idx.begin() + pat.row_ptr[r + 1]);
        double weakest = 1e300;
        for (std::int32_t b : got) {
          kept += sums[std::size_t(qb * nk + b)];
          weakest = std::min(weakest, sums[std::size_t(qb * nk + b)]);
        }
        EXPECT_GE(kept, c.threshold * total - 1e-5) << "head " << h << " block " << qb;
        if (!got.empty() && c.threshold < 1.0) {  // minimal: the weakest kept block was needed
          EXPECT_LT(kept - weakest, c.threshold * total + 1e-5) << "head " << h << " block " << qb;
        }
      }
    }
  }
}

TEST(Estimators, BadInputGivesStatus) {
  qk_input in(100, 100, 2, 1, 16, dtype::f32, 3);
  heed::estimate_scratch sc;
  heed::vs_pattern vs;
  heed::block_pattern bp;
  heed::flexprefill_report rep;
  heed::minference_vs_options mo;
  mo.last_q = 0;
  EXPECT_EQ(heed::minference_vertical_slash(in.qv, in.k.view, -1, mo, vs, sc),
            status::invalid_argument);
  heed::pooled_block_options po;
  po.density = 0.0;
  EXPECT_EQ(heed::pooled_block_estimate(in.qv, in.k.view, -1, po, bp, sc),
            status::invalid_argument);
  po.density = 0.5;
  po.block_q = 48;
  EXPECT_EQ(heed::pooled_block_estimate(in.qv, in.k.view, -1, po, bp, sc),
            status::invalid_argument);
  heed::flexprefill_options fo;
  fo.gamma = 1.5;
  EXPECT_EQ(heed::flexprefill_estimate(in.qv, in.k.view, -1, fo, bp, rep, sc),
            status::invalid_argument);
  fo.gamma = 0.9;
  fo.max_budget = 10;
  fo.min_budget = 20;
  EXPECT_EQ(heed::flexprefill_estimate(in.qv, in.k.view, -1, fo, bp, rep, sc),
            status::invalid_argument);
  heed::xattention_options xo;
  xo.stride = 3;  // 128 is not a multiple of 3
  EXPECT_EQ(heed::xattention_estimate(in.qv, in.k.view, -1, xo, bp, nullptr, sc),
            status::invalid_argument);
  xo.stride = 8;
  xo.threshold = -0.1;
  EXPECT_EQ(heed::xattention_estimate(in.qv, in.k.view, -1, xo, bp, nullptr, sc),
            status::invalid_argument);
  heed::tensor_view bad = in.qv;
  bad.dim = 8;
  EXPECT_EQ(
      heed::flexprefill_estimate(bad, in.k.view, -1, heed::flexprefill_options{}, bp, rep, sc),
      status::shape_mismatch);
  EXPECT_EQ(
      heed::flexprefill_estimate(in.qv, in.k.view, -2, heed::flexprefill_options{}, bp, rep, sc),
      status::invalid_argument);
}

}  // namespace
