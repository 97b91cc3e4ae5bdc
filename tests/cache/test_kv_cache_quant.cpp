// The KV cache with quantized rows (q8, q4): append quantizes exactly as quant::quantize_row does,
// keep / paging / gather move whole rows with their scales (bytes equal to a plain model's after
// every round), bytes_used counts the format's bytes, bad rows are refused before anything
// changes, and the views a policy or kernel reads carry the cache's group. Attention over a
// quantized cache: tests/cache/test_kv_cache.cpp (CacheAttention.Quantized...).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/quant/quantize.hpp"
#include "heed/scoring/key_norm.hpp"
#include "reference/cache_read.hpp"

namespace {

using heed::dtype;
using heed::kv_cache;
using heed::kv_cache_config;
using heed::status;

struct quant_layout {
  dtype type;
  std::int64_t d;
  int group;  // 0: the default (32)
  std::int64_t page_rows;
};

std::string layout_name(const ::testing::TestParamInfo<quant_layout>& info) {
  const quant_layout& l = info.param;
  return std::string(heed::dtype_name(l.type)) + "_d" + std::to_string(l.d) + "_g" +
         std::to_string(l.group) + (l.page_rows ? "_paged" : "");
}

class KvCacheQuant : public ::testing::TestWithParam<quant_layout> {
 protected:
  int g() const { return GetParam().group ? GetParam().group : heed::quant::default_group; }
  std::size_t rb() const { return heed::quant::row_bytes(GetParam().type, GetParam().d, g()); }
  // The row the cache must hold for input x.
  std::vector<unsigned char> quantized(const float* x) const {
    std::vector<unsigned char> r(rb());
    EXPECT_EQ(heed::quant::quantize_row(GetParam().type, x, GetParam().d, g(), r.data()),
              status::ok);
    return r;
  }
};

// Rounds of appends (prefill chunks and single tokens) and random evictions against a model that
// holds each position's quantized K and V rows: gathered rows, views, positions and bytes.
TEST_P(KvCacheQuant, AppendKeepGatherMatchAModelBitForBit) {
  const quant_layout l = GetParam();
  const std::int64_t d = l.d;
  const int heads = 2;
  std::mt19937 rng(23);
  std::normal_distribution<float> nd(0.f, 1.5f);
  kv_cache c;
  kv_cache_config cfg{1, heads, d, l.type, 0, 1};
  cfg.page_rows = l.page_rows;
  cfg.group = l.group;
  ASSERT_EQ(c.init(cfg), status::ok);
  ASSERT_EQ(c.row_bytes(), rb());
  ASSERT_EQ(c.entry_bytes(), 2 * rb() + sizeof(std::int64_t) + sizeof(float));
  struct entry {
    std::int64_t pos;
    std::vector<unsigned char> k, v;
  };
  std::vector<std::vector<entry>> model(heads);
  std::int64_t appended = 0;
  for (int round = 0; round < 40; ++round) {
    const std::int64_t n = round % 4 == 0 ? 1 + std::int64_t(rng() % 50) : 1;
    std::vector<float> k(std::size_t(n * heads * d)), v(k.size());
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng) + (round % 3 == 0 ? 4.f : 0.f);
    ASSERT_EQ(
        c.append(0, heed::make_view(k.data(), n, heads, d), heed::make_view(v.data(), n, heads, d)),
        status::ok);
    for (int h = 0; h < heads; ++h)
      for (std::int64_t t = 0; t < n; ++t)
        model[h].push_back({appended + t, quantized(&k[std::size_t((t * heads + h) * d)]),
                            quantized(&v[std::size_t((t * heads + h) * d)])});
    appended += n;
    for (int h = 0; h < heads; ++h) {
      std::vector<std::int32_t> keep;
      const std::int64_t len = std::int64_t(model[h].size());
      const int mode = int(rng() % 3);
      for (std::int32_t j = 0; j < len; ++j)
        if (mode == 0 || rng() % (mode == 1 ? 6 : 2) != 0) keep.push_back(j);
      ASSERT_EQ(c.keep(0, h, keep.data(), std::int64_t(keep.size())), status::ok);
      std::vector<entry> next;
      for (std::int32_t j : keep) next.push_back(model[h][std::size_t(j)]);
      model[h] = next;
    }
    std::size_t total = 0;
    for (int h = 0; h < heads; ++h) {
      const std::int64_t len = c.length(0, h);
      ASSERT_EQ(len, std::int64_t(model[h].size()));
      total += std::size_t(len);
      std::vector<unsigned char> gk(std::size_t(len) * rb() + 1), gv(gk.size());
      ASSERT_EQ(c.gather(0, h, 0, gk.data(), gk.size()), status::ok);
      ASSERT_EQ(c.gather(0, h, 1, gv.data(), gv.size()), status::ok);
      for (std::int64_t i = 0; i < len; ++i) {
        const entry& e = model[h][std::size_t(i)];
        ASSERT_EQ(c.positions(0, h)[i], e.pos);
        ASSERT_EQ(std::vector<unsigned char>(gk.begin() + i * rb(), gk.begin() + (i + 1) * rb()),
                  e.k)
            << "round " << round << " head " << h << " entry " << i;
        ASSERT_EQ(std::vector<unsigned char>(gv.begin() + i * rb(), gv.begin() + (i + 1) * rb()),
                  e.v);
        // Through the page views (what the kernels read): the row's values by the definition.
        for (std::int64_t col = 0; col < d; col += 7)
          ASSERT_EQ(heed_ref::read_entry(c, 0, h, 0, i, col),
                    heed::quant::dequantize_value(l.type, e.k.data(), d, g(), col));
      }
      if (c.page_count(0, h) == 1) {
        const heed::tensor_view kv = c.keys(0, h);
        EXPECT_EQ(kv.type, l.type);
        EXPECT_EQ(kv.quant_group(), g());
        EXPECT_EQ(kv.seq_stride, std::int64_t(rb()));
        EXPECT_EQ(heed::validate_view(kv, true), status::ok);
      }
    }
    ASSERT_EQ(c.bytes_used(), total * c.entry_bytes());
  }
}

// A row the format cannot hold (NaN, inf, beyond the f16 range of the scales) is refused with
// nothing appended to any head; a retry with good rows succeeds.
TEST_P(KvCacheQuant, BadRowsAreRefusedAndNothingChanges) {
  const quant_layout l = GetParam();
  const std::int64_t d = l.d;
  kv_cache c;
  kv_cache_config cfg{1, 2, d, l.type, 0, 1};
  cfg.page_rows = l.page_rows;
  cfg.group = l.group;
  ASSERT_EQ(c.init(cfg), status::ok);
  std::vector<float> k(std::size_t(3 * 2 * d), 0.5f), v(k.size(), -0.25f);
  ASSERT_EQ(c.append(0, heed::make_view(k.data(), 3, 2, d), heed::make_view(v.data(), 3, 2, d)),
            status::ok);
  const std::size_t used = c.bytes_used();
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 1e12f}) {
    std::vector<float> kb = k, vb = v;
    vb[std::size_t(2 * 2 * d + d + 3)] = bad;  // the last token's second head, V
    EXPECT_EQ(c.append(0, heed::make_view(kb.data(), 3, 2, d), heed::make_view(vb.data(), 3, 2, d)),
              status::invalid_argument)
        << bad;
    EXPECT_EQ(c.append_head(0, 1, heed::make_view(kb.data(), 3, 2, d),
                            heed::make_view(vb.data(), 3, 2, d), 1),
              status::invalid_argument);
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ(c.length(0, h), 3);
      EXPECT_EQ(c.appended(0, h), 3);
    }
    EXPECT_EQ(c.bytes_used(), used);
  }
  // The bad value in head 1 does not stop head 0 from taking the rows on its own.
  std::vector<float> vb = v;
  vb[std::size_t(d + 3)] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(c.append_head(0, 0, heed::make_view(k.data(), 3, 2, d),
                          heed::make_view(vb.data(), 3, 2, d), 0),
            status::ok);
  EXPECT_EQ(c.length(0, 0), 6);
  EXPECT_EQ(c.append(0, heed::make_view(k.data(), 3, 2, d), heed::make_view(v.data(), 3, 2, d)),
            status::ok);
  EXPECT_EQ(c.length(0, 1), 6);
}

// Rows already in the cache's format (another cache's gather, a file) are copied as they are;
// rows of another quantized format or group are refused.
TEST_P(KvCacheQuant, QuantizedInputOfTheSameFormatIsCopied) {
  const quant_layout l = GetParam();
  const std::int64_t d = l.d;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(std::size_t(4 * d));
  for (auto& e : x) e = nd(rng);
  std::vector<unsigned char> rows;
  for (int r = 0; r < 4; ++r) {
    const auto q = quantized(&x[std::size_t(r * d)]);
    rows.insert(rows.end(), q.begin(), q.end());
  }
  kv_cache c;
  kv_cache_config cfg{1, 1, d, l.type, 0, 0};
  cfg.page_rows = l.page_rows;
  cfg.group = l.group;
  ASSERT_EQ(c.init(cfg), status::ok);
  heed::tensor_view in = heed::make_view(static_cast<const void*>(rows.data()), l.type, 4, 1, 1,
                                         heed::layout::seq_head_dim);
  in.dim = d;
  in.group = l.group;
  in.seq_stride = in.head_stride = std::int64_t(rb());
  ASSERT_EQ(c.append(0, in, in), status::ok);
  std::vector<unsigned char> back(rows.size());
  ASSERT_EQ(c.gather(0, 0, 1, back.data(), back.size()), status::ok);
  EXPECT_EQ(back, rows);
  // The other format, or another group, is not this cache's.
  heed::tensor_view other = in;
  other.type = l.type == dtype::q8 ? dtype::q4 : dtype::q8;
  other.seq_stride = other.head_stride = std::int64_t(heed::quant::row_bytes(other.type, d, g()));
  EXPECT_EQ(c.append(0, other, other), status::unsupported_dtype);
  if (heed::quant::valid_group(d, 8) && g() != 8) {
    heed::tensor_view g8 = in;
    g8.group = 8;
    g8.seq_stride = g8.head_stride = std::int64_t(heed::quant::row_bytes(l.type, d, 8));
    EXPECT_EQ(c.append(0, g8, g8), status::unsupported_dtype);
  }
  EXPECT_EQ(c.length(0, 0), 4);
}

// The score functions read a quantized cache's rows through the same loads: key norms of the
// cache's view equal the norms of the dequantized rows.
TEST_P(KvCacheQuant, KeyNormsReadTheDequantizedRows) {
  const quant_layout l = GetParam();
  if (l.page_rows) GTEST_SKIP() << "one view per head: contiguous cache";
  const std::int64_t d = l.d, n = 37;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> k(std::size_t(n * d));
  for (auto& e : k) e = nd(rng);
  kv_cache c;
  kv_cache_config cfg{1, 1, d, l.type, 0, 0};
  cfg.group = l.group;
  ASSERT_EQ(c.init(cfg), status::ok);
  ASSERT_EQ(c.append(0, heed::make_view(k.data(), n, 1, d), heed::make_view(k.data(), n, 1, d)),
            status::ok);
  std::vector<float> got(static_cast<std::size_t>(n));
  ASSERT_EQ(heed::key_norm_scores(c.keys(0, 0), got.data()), status::ok);
  for (std::int64_t j = 0; j < n; ++j) {
    const auto q = quantized(&k[std::size_t(j * d)]);
    double s = 0;
    for (std::int64_t e = 0; e < d; ++e) {
      const double x = heed::quant::dequantize_value(l.type, q.data(), d, g(), e);
      s += x * x;
    }
    EXPECT_NEAR(got[std::size_t(j)], -std::sqrt(s), 1e-5 * std::sqrt(s)) << j;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, KvCacheQuant,
    ::testing::Values(quant_layout{dtype::q8, 64, 0, 0}, quant_layout{dtype::q4, 64, 0, 0},
                      quant_layout{dtype::q8, 40, 8, 0}, quant_layout{dtype::q4, 8, 8, 0},
                      quant_layout{dtype::q8, 128, 0, 16}, quant_layout{dtype::q4, 48, 16, 16}),
    layout_name);

TEST(KvCacheQuantConfig, GroupsAreChecked) {
  kv_cache c;
  kv_cache_config cfg{1, 1, 40, dtype::q8, 0, 0};
  EXPECT_EQ(c.init(cfg), status::invalid_argument);  // the default group (32) does not divide 40
  cfg.group = 8;
  EXPECT_EQ(c.init(cfg), status::ok);
  EXPECT_EQ(c.group(), 8);
  cfg.group = 6;  // below the smallest group
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg.group = -8;
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg = {1, 1, 64, dtype::f16, 0, 0};
  cfg.group = 32;  // a group on a plain type is a mistake, not ignored
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg.group = 0;
  EXPECT_EQ(c.init(cfg), status::ok);
  EXPECT_EQ(c.row_bytes(), 128u);
}

}  // namespace
