// Document masks for packed prompts: the document_mask variant through the header-only dense and
// block-sparse kernels (with build_document_pattern's lists) against the float64 reference that
// lets a query see only keys of its own document; bad segment tables give a status.
#include <gtest/gtest.h>

#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/dense.hpp"
#include "heed/attention/sparse.hpp"
#include "heed/attention/variants/document_mask.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/sparse/static_patterns.hpp"

namespace heed_test {
namespace {

TEST(DocumentMask, DenseAndBlockSparseMatchReference) {
  const std::vector<std::int64_t> lengths = {37, 100, 1, 90, 72};  // 300 positions
  std::vector<std::int32_t> starts(300);
  heed::document_starts(lengths.data(), std::int64_t(lengths.size()), starts.data());
  ASSERT_EQ(starts[36], 0);
  ASSERT_EQ(starts[37], 37);
  ASSERT_EQ(starts[137], 137);
  ASSERT_EQ(starts[299], 228);
  heed::thread_pool_executor pool(2);
  for (std::int64_t lq : {std::int64_t(300), std::int64_t(120)}) {
    dense_case c;
    c.lq = lq;
    c.lk = 300;
    c.hq = 4;
    c.hkv = 2;
    c.kv = lq == 300 ? heed::dtype::f32 : heed::dtype::f16;
    c.want_entropy = false;
    SCOPED_TRACE("lq " + std::to_string(lq));
    const heed::document_mask var(starts.data(), 300);
    for (int which = 0; which < 2; ++which) {
      SCOPED_TRACE(which == 0 ? "dense" : "block-sparse");
      dense_setup s(c);
      s.ref.keep = [&](int, std::int64_t qp, std::int64_t kp) {
        return kp >= starts[std::size_t(qp)];
      };
      const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
      heed::null_observer obs;
      if (which == 0) {
        std::vector<char> ws(heed::dense_workspace_size_t(s.params, 2));
        ASSERT_EQ(heed::dense_attention_t(s.params, var, obs, {ws.data(), ws.size()}, pool),
                  heed::status::ok);
      } else {
        heed::block_pattern pat;
        ASSERT_EQ(
            heed::build_document_pattern(starts.data(), 300, c.hq, c.lq, c.lk, -1, 32, 64, pat),
            heed::status::ok);
        EXPECT_LT(heed::block_density(pat, true), 0.6);  // cross-document blocks are skipped
        std::vector<char> ws(heed::block_sparse_workspace_size_t(s.params, pat.layout(), 2));
        ASSERT_EQ(heed::block_sparse_attention_t(s.params, pat.layout(), var, obs,
                                                 {ws.data(), ws.size()}, pool),
                  heed::status::ok);
      }
      expect_matches_reference(s, r);
    }
  }
}

TEST(DocumentMask, BadSegmentTablesGiveStatus) {
  heed::block_pattern pat;
  std::vector<std::int32_t> starts = {0, 0, 2, 2, 1};  // decreasing
  EXPECT_EQ(heed::build_document_pattern(starts.data(), 5, 1, 5, 5, -1, 32, 32, pat),
            heed::status::invalid_argument);
  starts = {0, 0, 3, 3, 3};  // start after its own position
  EXPECT_EQ(heed::build_document_pattern(starts.data(), 5, 1, 5, 5, -1, 32, 32, pat),
            heed::status::invalid_argument);
  starts = {0, 0, 2, 2, 2};
  EXPECT_EQ(heed::build_document_pattern(starts.data(), 4, 1, 5, 5, -1, 32, 32, pat),
            heed::status::invalid_argument);  // table shorter than the positions
  EXPECT_EQ(heed::build_document_pattern(nullptr, 5, 1, 5, 5, -1, 32, 32, pat),
            heed::status::null_pointer);
  EXPECT_EQ(heed::build_document_pattern(starts.data(), 5, 1, 5, 5, -1, 32, 32, pat),
            heed::status::ok);
}

}  // namespace
}  // namespace heed_test
