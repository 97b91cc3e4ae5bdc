// Delta correction against float64: O[i] = O_sparse[i] + O_dense[g gamma] - O_sparse[g gamma]
// with both references computed by the naive attention (the sparse one masked like the
// pattern), for block-sparse outputs of the compiled kernel; bad input gives a status.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/sparse/delta_correction.hpp"
#include "heed/sparse/static_patterns.hpp"

namespace heed_test {
namespace {

// Membership of (query position, key position) in the pattern, forced blocks included.
bool in_pattern(const heed::block_pattern& pat, int h, std::int64_t q_pos, std::int64_t k_pos) {
  const std::int64_t qb = (q_pos - pat.q_offset) / pat.block_q, kb = k_pos / pat.block_k;
  std::int64_t lo, hi;
  pat.diagonal(qb, lo, hi);
  if (kb == 0 || (kb >= lo && kb <= hi)) return true;
  const std::int64_t r = h * pat.q_blocks + qb;
  return std::binary_search(pat.col_idx.begin() + pat.row_ptr[r],
                            pat.col_idx.begin() + pat.row_ptr[r + 1], std::int32_t(kb));
}

TEST(DeltaCorrection, MatchesFloat64Composition) {
  heed::thread_pool_executor pool(2);
  struct shape {
    std::int64_t lq, lk, gamma;
    heed::dtype kv;
  } shapes[] = {{300, 300, 16, heed::dtype::f32},
                {200, 450, 64, heed::dtype::f16},
                {130, 130, 1, heed::dtype::bf16},
                {130, 130, 7, heed::dtype::f32}};
  for (const shape& sh : shapes) {
    SCOPED_TRACE("lq " + std::to_string(sh.lq) + " gamma " + std::to_string(sh.gamma));
    dense_case c;
    c.lq = sh.lq;
    c.lk = sh.lk;
    c.hq = 4;
    c.hkv = 2;
    c.kv = sh.kv;
    c.want_entropy = false;
    dense_setup s(c);
    heed::static_pattern_options so;
    so.block_q = so.block_k = 32;
    so.local_blocks = 2;
    so.stride = 3;
    heed::block_pattern pat;
    ASSERT_EQ(heed::build_static_pattern(heed::static_kind::strided, c.hq, c.lq, c.lk, -1, so, pat),
              heed::status::ok);
    const heed_ref::attention_result dense = heed_ref::naive_attention(s.ref);
    s.ref.keep = [&](int h, std::int64_t qp, std::int64_t kp) {
      return in_pattern(pat, h, qp, kp);
    };
    const heed_ref::attention_result sparse = heed_ref::naive_attention(s.ref);

    std::vector<char> ws(heed::block_sparse_workspace_size(s.params, pat.layout(), 2));
    ASSERT_EQ(heed::block_sparse_attention(s.params, pat.layout(), {ws.data(), ws.size()}, pool),
              heed::status::ok);
    heed::delta_scratch sc;
    ASSERT_EQ(heed::delta_correct(s.params, sh.gamma, sc, pool), heed::status::ok);

    std::int64_t bad = 0;
    double worst = 0;
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t x = 0; x < c.d; ++x) {
          const std::int64_t g0 = (i / sh.gamma) * sh.gamma;
          const double want = sparse.o_at(i, h, x) + dense.o_at(g0, h, x) - sparse.o_at(g0, h, x);
          const double err = std::fabs(s.o.load_f32(i, h, x) - want);
          const double tol = 3e-5 + 1e-4 * std::fabs(want);
          worst = std::max(worst, err / tol);
          if (!(err <= tol)) ++bad;
        }
    EXPECT_EQ(bad, 0) << "worst error / tolerance " << worst;
  }
}

TEST(DeltaCorrection, BadInputGivesStatus) {
  dense_case c;
  c.lq = c.lk = 50;
  dense_setup s(c);
  heed::delta_scratch sc;
  EXPECT_EQ(heed::delta_correct(s.params, 0, sc), heed::status::invalid_argument);
  s.params.causal = false;
  EXPECT_EQ(heed::delta_correct(s.params, 4, sc), heed::status::invalid_argument);
  s.params.causal = true;
  s.params.softcap = 10.f;
  EXPECT_EQ(heed::delta_correct(s.params, 4, sc), heed::status::invalid_argument);
  s.params.softcap = 0.f;
  s.params.o.data = nullptr;
  EXPECT_EQ(heed::delta_correct(s.params, 4, sc), heed::status::null_pointer);
}

}  // namespace
}  // namespace heed_test
