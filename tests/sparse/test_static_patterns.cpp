// Static block patterns against their definitions written out per (query block, key block). (The
// kernel itself is checked with arbitrary block lists in tests/attention/test_sparse.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "heed/sparse/static_patterns.hpp"

namespace {

using heed::static_kind;

bool is_power_of_two(std::int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

// Membership of key block b for a query block whose diagonal block is D.
bool wanted(static_kind kind, const heed::static_pattern_options& o, std::int64_t D,
            std::int64_t b) {
  if (b > D) return false;
  if (b < o.sink_blocks) return true;
  if (D - b < o.local_blocks) return true;
  switch (kind) {
    case static_kind::strided:
      return (D - b) % o.stride == 0;
    case static_kind::dilated: {
      const std::int64_t gap = (D - o.local_blocks + 1) - b;
      return gap > 0 && gap % o.dilation == 0 && gap / o.dilation <= o.count;
    }
    case static_kind::power_of_two:
      return is_power_of_two(D - b);
    default:
      return false;
  }
}

TEST(StaticPatterns, MatchDefinitions) {
  const static_kind kinds[] = {static_kind::a_shape, static_kind::strided, static_kind::dilated,
                               static_kind::power_of_two};
  struct shape {
    std::int64_t lq, lk, off;
    std::int32_t bq, bk;
  } shapes[] = {{1000, 1000, -1, 64, 64},
                {300, 2000, -1, 128, 64},
                {500, 900, 100, 32, 128},
                {1, 4000, -1, 64, 256}};
  for (const auto& sh : shapes) {
    for (static_kind kind : kinds) {
      heed::static_pattern_options o;
      o.block_q = sh.bq;
      o.block_k = sh.bk;
      o.sink_blocks = 2;
      o.local_blocks = 3;
      o.stride = 5;
      o.dilation = 3;
      o.count = 4;
      heed::block_pattern pat;
      ASSERT_EQ(heed::build_static_pattern(kind, 3, sh.lq, sh.lk, sh.off, o, pat),
                heed::status::ok);
      ASSERT_TRUE(pat.complete());
      const std::int64_t off = sh.off >= 0 ? sh.off : sh.lk - sh.lq;
      for (std::int64_t h = 0; h < 3; ++h)
        for (std::int64_t qb = 0; qb < pat.q_blocks; ++qb) {
          const std::int64_t last = off + std::min(sh.lq, (qb + 1) * sh.bq) - 1;
          const std::int64_t D = std::min(pat.k_blocks - 1, last / sh.bk);
          std::set<std::int32_t> want;
          for (std::int64_t b = 0; b < pat.k_blocks; ++b)
            if (wanted(kind, o, D, b)) want.insert(std::int32_t(b));
          const std::int64_t r = h * pat.q_blocks + qb;
          const std::vector<std::int32_t> got(pat.col_idx.begin() + pat.row_ptr[r],
                                              pat.col_idx.begin() + pat.row_ptr[r + 1]);
          EXPECT_EQ(std::set<std::int32_t>(got.begin(), got.end()), want)
              << "kind " << int(kind) << " qb " << qb;
          for (std::size_t e = 1; e < got.size(); ++e) EXPECT_LT(got[e - 1], got[e]);
        }
    }
  }
}

TEST(StaticPatterns, BadOptionsGiveStatus) {
  heed::block_pattern pat;
  heed::static_pattern_options o;
  o.local_blocks = 0;
  EXPECT_EQ(heed::build_static_pattern(static_kind::a_shape, 1, 10, 10, -1, o, pat),
            heed::status::invalid_argument);
  o = {};
  o.block_q = 100;
  EXPECT_EQ(heed::build_static_pattern(static_kind::a_shape, 1, 10, 10, -1, o, pat),
            heed::status::invalid_argument);
  o = {};
  EXPECT_EQ(heed::build_static_pattern(static_kind(9), 1, 10, 10, -1, o, pat),
            heed::status::invalid_argument);
  EXPECT_EQ(heed::build_static_pattern(static_kind::a_shape, 1, 20, 10, -1, o, pat),
            heed::status::invalid_argument);
}

}  // namespace
