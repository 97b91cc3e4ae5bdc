// The ragged KV cache: storage, compaction, memory, bad input, and attention over it against the
// float64 reference restricted to each head's kept keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "heed/cache/cache_attention.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/quant/quantize.hpp"
#include "reference/cache_read.hpp"
#include "reference/naive_attention.hpp"

namespace {

using heed::dtype;
using heed::kv_cache;
using heed::kv_cache_config;
using heed::status;

// Values exactly representable in every storage type (bf16 has 8 mantissa bits).
float representable(std::mt19937& rng) {
  std::uniform_int_distribution<int> u(-128, 128);
  return float(u(rng)) / 64.f;
}

std::vector<float> random_rows(std::int64_t n, std::int64_t heads, std::int64_t d,
                               std::mt19937& rng) {
  std::vector<float> x(std::size_t(n * heads * d));
  for (auto& e : x) e = representable(rng);
  return x;
}

heed::tensor_view view_of(const std::vector<float>& x, std::int64_t n, std::int64_t heads,
                          std::int64_t d) {
  return heed::make_view(x.data(), n, heads, d);
}

using heed_ref::read_entry;
float read(const heed::tensor_view& t, std::int64_t s, std::int64_t c) {
  return heed_ref::read_element(t, s, c);
}

// Page invariants of a paged head: consecutive runs covering the length, none empty or over
// page_rows, no two neighbours that would fit in one page.
void check_pages(const kv_cache& c, int layer, int head) {
  if (!c.paged()) return;
  std::int64_t next = 0;
  for (int pg = 0; pg < c.page_count(layer, head); ++pg) {
    const heed::kv_page page = c.page(layer, head, pg);
    ASSERT_EQ(page.begin, next);
    ASSERT_GT(page.len, 0);
    ASSERT_LE(page.len, c.page_rows());
    if (pg > 0) {
      ASSERT_GT(c.page(layer, head, pg - 1).len + page.len, c.page_rows());
    }
    next += page.len;
  }
  ASSERT_EQ(next, c.length(layer, head));
  // A view of the whole head exists for one page (none is needed for none).
  if (c.page_count(layer, head) > 0) {
    EXPECT_EQ(c.keys(layer, head).data == nullptr, c.page_count(layer, head) > 1);
  }
}

struct cache_layout {
  dtype type;
  std::int64_t page_rows;
};

class KvCacheTypes : public ::testing::TestWithParam<cache_layout> {};

TEST_P(KvCacheTypes, AppendKeepCompactsEveryChannelInOrder) {
  std::mt19937 rng(3);
  const std::int64_t d = 40, n = 300;
  const int heads = 3;
  kv_cache c;
  kv_cache_config cfg{2, heads, d, GetParam().type, 0, 2};
  cfg.page_rows = GetParam().page_rows;
  ASSERT_EQ(c.init(cfg), status::ok);
  const auto k = random_rows(n, heads, d, rng), v = random_rows(n, heads, d, rng);
  // Two appends: a prefill chunk and single tokens.
  ASSERT_EQ(c.append(1, view_of(k, 200, heads, d), view_of(v, 200, heads, d)), status::ok);
  for (std::int64_t t = 200; t < n; ++t) {
    std::vector<float> kt(k.begin() + t * heads * d, k.begin() + (t + 1) * heads * d);
    std::vector<float> vt(v.begin() + t * heads * d, v.begin() + (t + 1) * heads * d);
    ASSERT_EQ(c.append(1, view_of(kt, 1, heads, d), view_of(vt, 1, heads, d)), status::ok);
  }
  EXPECT_EQ(c.length(0, 0), 0);
  for (int h = 0; h < heads; ++h) {
    ASSERT_EQ(c.length(1, h), n);
    for (std::int64_t j = 0; j < n; ++j) {
      c.scores(1, h, 0)[j] = float(j + 1000 * h);
      c.scores(1, h, 1)[j] = -float(j);
    }
  }
  // A different keep-set per head.
  std::vector<std::vector<std::int32_t>> keeps(heads);
  for (int h = 0; h < heads; ++h) {
    for (std::int32_t j = 0; j < n; ++j)
      if (rng() % (h + 2) == 0) keeps[h].push_back(j);
    ASSERT_EQ(c.keep(1, h, keeps[h].data(), std::int64_t(keeps[h].size())), status::ok);
  }
  for (int h = 0; h < heads; ++h) {
    ASSERT_EQ(c.length(1, h), std::int64_t(keeps[h].size()));
    EXPECT_EQ(c.keys(1, h).seq, c.length(1, h));
    check_pages(c, 1, h);
    for (std::size_t i = 0; i < keeps[h].size(); ++i) {
      const std::int64_t j = keeps[h][i];
      EXPECT_EQ(c.positions(1, h)[i], j);
      EXPECT_EQ(c.scores(1, h, 0)[i], float(j + 1000 * h));
      EXPECT_EQ(c.scores(1, h, 1)[i], -float(j));
      for (std::int64_t e = 0; e < d; ++e) {
        ASSERT_EQ(read_entry(c, 1, h, 0, std::int64_t(i), e), k[(j * heads + h) * d + e]);
        ASSERT_EQ(read_entry(c, 1, h, 1, std::int64_t(i), e), v[(j * heads + h) * d + e]);
      }
    }
  }
  // Appending after eviction continues the original positions with fresh zero scores.
  std::vector<float> kt(k.begin(), k.begin() + heads * d);
  ASSERT_EQ(c.append(1, view_of(kt, 1, heads, d), view_of(kt, 1, heads, d)), status::ok);
  for (int h = 0; h < heads; ++h) {
    const std::int64_t last = c.length(1, h) - 1;
    EXPECT_EQ(c.positions(1, h)[last], n);
    EXPECT_EQ(c.scores(1, h, 0)[last], 0.f);
  }
}

// Many rounds of appends (chunks and single tokens) and random evictions (a few entries, or most)
// against a plain model of the head: contents, positions, page invariants and gather.
TEST_P(KvCacheTypes, RandomAppendAndEvictRoundsMatchAModel) {
  std::mt19937 rng(17);
  const std::int64_t d = 24;
  const int heads = 2;
  kv_cache c;
  kv_cache_config cfg{1, heads, d, GetParam().type, 0, 1};
  cfg.page_rows = GetParam().page_rows;
  ASSERT_EQ(c.init(cfg), status::ok);
  std::vector<std::vector<std::int64_t>> model(heads);  // positions held, in order
  std::int64_t appended = 0;
  auto value_of = [d](std::int64_t pos, int h, std::int64_t e, int which) {
    return float(int((pos * 7 + h * 3 + e + which * 5) % 97) - 48) / 16.f;
  };
  for (int round = 0; round < 60; ++round) {
    const std::int64_t n = round % 3 == 0 ? 1 + std::int64_t(rng() % 40) : 1;
    std::vector<float> k(std::size_t(n * heads * d)), v(k.size());
    for (std::int64_t t = 0; t < n; ++t)
      for (int h = 0; h < heads; ++h)
        for (std::int64_t e = 0; e < d; ++e) {
          k[std::size_t((t * heads + h) * d + e)] = value_of(appended + t, h, e, 0);
          v[std::size_t((t * heads + h) * d + e)] = value_of(appended + t, h, e, 1);
        }
    ASSERT_EQ(c.append(0, view_of(k, n, heads, d), view_of(v, n, heads, d)), status::ok);
    for (int h = 0; h < heads; ++h)
      for (std::int64_t t = 0; t < n; ++t) model[h].push_back(appended + t);
    appended += n;
    for (int h = 0; h < heads; ++h) {
      const std::int64_t len = std::int64_t(model[h].size());
      std::vector<std::int32_t> keep;
      const int mode = int(rng() % 4);  // drop one, drop a few, drop most, keep all
      const std::int64_t drop = rng() % std::max<std::int64_t>(1, len);
      for (std::int32_t j = 0; j < len; ++j) {
        bool k_ = true;
        if (mode == 0) k_ = j != drop;
        if (mode == 1) k_ = rng() % 8 != 0;
        if (mode == 2) k_ = rng() % 4 == 0;
        if (k_) keep.push_back(j);
      }
      ASSERT_EQ(c.keep(0, h, keep.data(), std::int64_t(keep.size())), status::ok);
      std::vector<std::int64_t> next;
      for (std::int32_t j : keep) next.push_back(model[h][std::size_t(j)]);
      model[h] = next;
    }
    for (int h = 0; h < heads; ++h) {
      ASSERT_NO_FATAL_FAILURE(check_pages(c, 0, h));
      const std::int64_t len = c.length(0, h);
      ASSERT_EQ(len, std::int64_t(model[h].size()));
      std::vector<unsigned char> g(std::size_t(len * d) * heed::dtype_size(c.type()) + 1);
      ASSERT_EQ(c.gather(0, h, 1, g.data(), g.size()), status::ok);
      const auto gv = heed::make_view(static_cast<const void*>(g.data()), c.type(), len, 1, d);
      for (std::int64_t i = 0; i < len; ++i) {
        const std::int64_t pos = model[h][std::size_t(i)];
        ASSERT_EQ(c.positions(0, h)[i], pos);
        for (std::int64_t e = 0; e < d; e += 5) {
          ASSERT_EQ(read_entry(c, 0, h, 0, i, e), value_of(pos, h, e, 0)) << round;
          ASSERT_EQ(read_entry(c, 0, h, 1, i, e), value_of(pos, h, e, 1));
          ASSERT_EQ(read(gv, i, e), value_of(pos, h, e, 1));
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KvCacheTypes,
                         ::testing::Values(cache_layout{dtype::f32, 0}, cache_layout{dtype::f16, 0},
                                           cache_layout{dtype::bf16, 0},
                                           cache_layout{dtype::f32, 16},
                                           cache_layout{dtype::f16, 16},
                                           cache_layout{dtype::bf16, 32}),
                         [](const auto& info) {
                           return std::string(heed::dtype_name(info.param.type)) +
                                  (info.param.page_rows ? "_paged" : "");
                         });

TEST(KvCache, EvictionReallyFreesAndReusesMemory) {
  std::mt19937 rng(5);
  const std::int64_t d = 64, n = 1000;
  kv_cache c;
  ASSERT_EQ(c.init({1, 2, d, dtype::f16, 0, 1}), status::ok);
  const auto k = random_rows(n, 2, d, rng);
  ASSERT_EQ(c.append(0, view_of(k, n, 2, d), view_of(k, n, 2, d)), status::ok);
  const std::size_t full = c.bytes_reserved();
  EXPECT_GE(full, std::size_t(2 * n) * c.entry_bytes());
  // Head 0 keeps a tenth, head 1 everything: head-wise eviction.
  std::vector<std::int32_t> keep;
  for (std::int32_t j = 0; j < n; j += 10) keep.push_back(j);
  ASSERT_EQ(c.keep(0, 0, keep.data(), std::int64_t(keep.size())), status::ok);
  EXPECT_EQ(c.bytes_used(), std::size_t(n + 100) * c.entry_bytes());
  // Compaction frees slots that the next appends reuse without growing.
  const std::int64_t cap0 = c.capacity(0, 0);
  for (int t = 0; t < 50; ++t) {
    ASSERT_EQ(c.append_head(0, 0, view_of(k, 1, 2, d), view_of(k, 1, 2, d), 0), status::ok);
  }
  EXPECT_EQ(c.capacity(0, 0), cap0);
  EXPECT_EQ(c.length(0, 0), 150);
  EXPECT_EQ(c.length(0, 1), n);
  ASSERT_EQ(c.shrink_to_fit(), status::ok);
  EXPECT_EQ(c.bytes_reserved(), std::size_t(n + 150) * c.entry_bytes());
  EXPECT_LT(c.bytes_reserved(), full);
  // Contents survive the reallocation.
  EXPECT_EQ(c.positions(0, 0)[99], 990);
  EXPECT_EQ(c.positions(0, 0)[100], n);
  EXPECT_EQ(read(c.keys(0, 1), 7, 3), k[(7 * 2 + 1) * d + 3]);
}

// A paged cache gives evicted pages back too: emptied pages are reused by appends (no growth)
// and freed by shrink_to_fit; the other head keeps its pages.
TEST(KvCache, PagedEvictionFreesAndReusesPages) {
  std::mt19937 rng(6);
  const std::int64_t d = 32, n = 1000, P = 64;
  kv_cache c;
  kv_cache_config cfg{1, 2, d, dtype::f16, 0, 1};
  cfg.page_rows = P;
  ASSERT_EQ(c.init(cfg), status::ok);
  const auto k = random_rows(n, 2, d, rng);
  ASSERT_EQ(c.append(0, view_of(k, n, 2, d), view_of(k, n, 2, d)), status::ok);
  EXPECT_EQ(c.page_count(0, 0), (n + P - 1) / P);
  const std::size_t full = c.bytes_reserved();
  std::vector<std::int32_t> keep;
  for (std::int32_t j = 0; j < n; j += 10) keep.push_back(j);
  ASSERT_EQ(c.keep(0, 0, keep.data(), std::int64_t(keep.size())), status::ok);
  EXPECT_EQ(c.page_count(0, 0), 2);  // 100 rows: merged into two pages
  EXPECT_EQ(c.bytes_used(), std::size_t(n + 100) * c.entry_bytes());
  EXPECT_EQ(c.bytes_reserved(), full);  // emptied pages wait for reuse
  for (int t = 0; t < 300; ++t)
    ASSERT_EQ(c.append_head(0, 0, view_of(k, 1, 2, d), view_of(k, 1, 2, d), 0), status::ok);
  EXPECT_EQ(c.bytes_reserved(), full);  // the appends reused them
  ASSERT_EQ(c.shrink_to_fit(), status::ok);
  EXPECT_LT(c.bytes_reserved(), full);
  const std::size_t page_bytes = std::size_t(2 * P * d) * sizeof(heed::f16);
  const std::size_t meta = sizeof(std::int64_t) + sizeof(float);
  EXPECT_EQ(c.bytes_reserved(), std::size_t(c.page_count(0, 0) + c.page_count(0, 1)) * page_bytes +
                                    std::size_t(c.length(0, 0) + c.length(0, 1)) * meta);
  EXPECT_EQ(c.positions(0, 0)[99], 990);
  EXPECT_EQ(read_entry(c, 0, 1, 0, 7, 3), k[(7 * 2 + 1) * d + 3]);
}

TEST(KvCache, BadInputReturnsStatus) {
  kv_cache c;
  std::vector<float> k(4 * 2 * 16, 1.f);
  EXPECT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16)), status::invalid_argument);
  EXPECT_EQ(c.init({0, 2, 16}), status::invalid_argument);
  EXPECT_EQ(c.init({1, 0, 16}), status::invalid_argument);
  EXPECT_EQ(c.init({1, 2, 0}), status::invalid_argument);
  EXPECT_EQ(c.init({1, 2, 16, dtype::f32, -1}), status::invalid_argument);
  EXPECT_EQ(c.init({1, 2, 16, static_cast<dtype>(7)}), status::unsupported_dtype);
  ASSERT_EQ(c.init({2, 2, 16, dtype::f16, 0, 1}), status::ok);
  EXPECT_EQ(c.append(2, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16)), status::invalid_argument);
  EXPECT_EQ(c.append(-1, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16)), status::invalid_argument);
  EXPECT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 2, 2, 16)), status::shape_mismatch);
  EXPECT_EQ(c.append(0, view_of(k, 8, 1, 16), view_of(k, 8, 1, 16)), status::shape_mismatch);
  EXPECT_EQ(c.append(0, view_of(k, 4, 4, 8), view_of(k, 4, 4, 8)), status::shape_mismatch);
  heed::tensor_view null_view = view_of(k, 4, 2, 16);
  null_view.data = nullptr;
  EXPECT_EQ(c.append(0, null_view, view_of(k, 4, 2, 16)), status::null_pointer);
  const std::int64_t bad_pos[4] = {0, 2, 2, 3};
  EXPECT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16), bad_pos),
            status::invalid_argument);
  const std::int64_t pos[4] = {10, 11, 20, 21};
  ASSERT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16), pos), status::ok);
  EXPECT_EQ(c.positions(0, 1)[2], 20);
  EXPECT_EQ(c.appended(0, 1), 22);
  EXPECT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16), pos),
            status::invalid_argument);  // not after the last position
  const std::int32_t unsorted[2] = {2, 1}, dup[2] = {1, 1}, out_of_range[1] = {4};
  EXPECT_EQ(c.keep(0, 0, unsorted, 2), status::invalid_argument);
  EXPECT_EQ(c.keep(0, 0, dup, 2), status::invalid_argument);
  EXPECT_EQ(c.keep(0, 0, out_of_range, 1), status::invalid_argument);
  const std::int32_t negative[2] = {-1, 2}, middle_down[4] = {0, 2, 1, 3};  // ends in range
  EXPECT_EQ(c.keep(0, 0, negative, 2), status::invalid_argument);
  EXPECT_EQ(c.keep(0, 0, middle_down, 4), status::invalid_argument);
  EXPECT_EQ(c.keep(0, 0, nullptr, 1), status::null_pointer);
  EXPECT_EQ(c.keep(0, 2, unsorted, 0), status::invalid_argument);
  EXPECT_EQ(c.keep(0, 0, unsorted, 5), status::invalid_argument);
  EXPECT_EQ(c.length(0, 0), 4);                     // failed calls change nothing
  EXPECT_EQ(c.keep(0, 0, nullptr, 0), status::ok);  // keep nothing
  EXPECT_EQ(c.length(0, 0), 0);
  EXPECT_EQ(c.shrink_to_fit(-1), status::invalid_argument);
  // gather: bad head, bad part, null or short destination.
  std::vector<unsigned char> dst(4 * 16 * 2);
  ASSERT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16)), status::ok);
  EXPECT_EQ(c.gather(0, 0, 0, dst.data(), dst.size()), status::ok);
  EXPECT_EQ(c.gather(0, 2, 0, dst.data(), dst.size()), status::invalid_argument);
  EXPECT_EQ(c.gather(0, 0, 2, dst.data(), dst.size()), status::invalid_argument);
  EXPECT_EQ(c.gather(0, 0, 1, nullptr, dst.size()), status::null_pointer);
  EXPECT_EQ(c.gather(0, 0, 1, dst.data(), dst.size() - 1), status::workspace_too_small);
  // Pages of fewer than 16 rows, or negative, are refused.
  kv_cache_config pc{1, 2, 16};
  pc.page_rows = 8;
  EXPECT_EQ(c.init(pc), status::invalid_argument);
  pc.page_rows = -1;
  EXPECT_EQ(c.init(pc), status::invalid_argument);
  // Capacity: appends beyond the limit fail and change nothing.
  kv_cache_config lc{1, 2, 16, dtype::f32, 0, 0};
  lc.capacity = 6;
  EXPECT_EQ(c.init({1, 2, 16, dtype::f32, 8, 0, 4}), status::invalid_argument);  // reserve > cap
  ASSERT_EQ(c.init(lc), status::ok);
  ASSERT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16)), status::ok);
  EXPECT_EQ(c.append(0, view_of(k, 4, 2, 16), view_of(k, 4, 2, 16)), status::invalid_argument);
  EXPECT_EQ(c.length(0, 0), 4);
  EXPECT_EQ(c.length(0, 1), 4);
  EXPECT_EQ(c.set_limit(0, 1, 3), status::invalid_argument);  // below its length
  ASSERT_EQ(c.set_limit(0, 1, 5), status::ok);
  EXPECT_EQ(c.append_head(0, 1, view_of(k, 2, 2, 16), view_of(k, 2, 2, 16), 0),
            status::invalid_argument);
  EXPECT_EQ(c.append_head(0, 0, view_of(k, 2, 2, 16), view_of(k, 2, 2, 16), 0), status::ok);
}

// ---- attention over the cache ----------------------------------------------------------------

struct cache_case {
  const char* name;
  int hq, hkv;
  std::int64_t d, prompt, decode_steps;
  dtype type;
  int threads;
  heed::isa isa;
  std::int64_t page_rows = 0;  // paged cache when > 0
  std::int64_t chunk = 0;      // a prefill chunk of this many tokens after the eviction
  int group = 0;               // q8 / q4: values per scale (0: the default)
  dtype low = dtype::f32;      // != f32: a tiered cache demoting random entries to this type
};

// Rows of d values as a cache of `type` and `group` holds them: quantized and read back for q8 /
// q4 (the cache quantizes the rows it is given), unchanged otherwise.
std::vector<float> as_stored(std::vector<float> x, std::int64_t d, dtype type, int group) {
  if (!heed::is_quantized(type)) return x;
  const int g = group ? group : heed::quant::default_group;
  std::vector<unsigned char> row(heed::quant::row_bytes(type, d, g));
  for (std::size_t r = 0; r < x.size() / std::size_t(d); ++r) {
    float* at = x.data() + r * std::size_t(d);
    EXPECT_EQ(heed::quant::quantize_row(type, at, d, g, row.data()), status::ok);
    EXPECT_EQ(heed::quant::dequantize_row(type, row.data(), d, g, at), status::ok);
  }
  return x;
}

std::vector<heed::isa> compiled_isas() {
  std::vector<heed::isa> out;
  for (heed::isa i : heed::platform_isas)
    if (heed::isa_available(i)) out.push_back(i);
  return out;
}

// Prefill a prompt, evict a different random subset per head, then decode with H2O, A2SF and
// TOVA accumulation, comparing output, LSE, entropy, probabilities and the score channels with
// the float64 reference over each head's kept keys.
void run_cache_case(const cache_case& cc) {
  SCOPED_TRACE(cc.name);
  std::mt19937 rng(11);
  const int group = cc.hq / cc.hkv;
  const std::int64_t d = cc.d, total = cc.prompt + cc.chunk + cc.decode_steps;
  const auto q_all = random_rows(total, cc.hq, d, rng);
  const auto k_all = random_rows(total, cc.hkv, d, rng);
  const auto v_all = random_rows(total, cc.hkv, d, rng);
  kv_cache c;
  auto k_held = as_stored(k_all, d, cc.type, cc.group);
  auto v_held = as_stored(v_all, d, cc.type, cc.group);
  kv_cache_config cfg{1, cc.hkv, d, cc.type, 0, 3};
  cfg.page_rows = cc.page_rows;
  cfg.group = cc.group;
  cfg.tiered = cc.low != dtype::f32;
  cfg.low_type = cc.low;
  // Keys held in the low tier (tiered caches).
  std::vector<std::vector<bool>> low(cc.hkv, std::vector<bool>(std::size_t(total), false));
  // Tiered: demotes every `every`-th high entry of each head, the newest `spare` excepted; the
  // reference then reads the demoted rows as the low type holds them.
  auto demote = [&](std::int64_t every, std::int64_t spare) {
    if (!cfg.tiered) return;
    for (int h = 0; h < cc.hkv; ++h) {
      std::vector<std::int32_t> idx;
      const std::int64_t len = c.length(0, h);
      for (std::int32_t i = 0; i < len - spare; ++i)
        if (c.tiers(0, h)[i] == 0 && rng() % every == 0) idx.push_back(i);
      ASSERT_EQ(c.demote(0, h, idx.data(), std::int64_t(idx.size())), status::ok);
      for (std::int32_t i : idx) {
        const std::int64_t j = c.positions(0, h)[i];
        low[std::size_t(h)][std::size_t(j)] = true;
        for (auto* held : {&k_held, &v_held}) {
          const auto at = held->begin() + (j * cc.hkv + h) * d;
          const auto low = as_stored(std::vector<float>(at, at + d), d, cc.low, cc.group);
          std::copy(low.begin(), low.end(), at);
        }
      }
      ASSERT_EQ(c.low_length(0, h) > 0, len - spare > 8) << "the tiered paths run";
    }
  };
  ASSERT_EQ(c.init(cfg), status::ok);
  heed::thread_pool_executor ex(cc.threads);
  std::vector<std::vector<bool>> kept(cc.hkv, std::vector<bool>(std::size_t(total), true));

  // The reference over keys 0..n-1 with the per-head kept mask.
  auto reference = [&](std::int64_t q0, std::int64_t lq, std::int64_t n,
                       const std::vector<float>* sinks = nullptr) {
    heed_ref::attention_problem p;
    p.lq = lq;
    p.lk = n;
    p.hq = cc.hq;
    p.hkv = cc.hkv;
    p.d = d;
    p.resize();
    for (std::int64_t i = 0; i < lq; ++i)
      for (int h = 0; h < cc.hq; ++h)
        for (std::int64_t e = 0; e < d; ++e)
          p.q_at(i, h, e) = q_all[((q0 + i) * cc.hq + h) * d + e];
    for (std::int64_t j = 0; j < n; ++j)
      for (int h = 0; h < cc.hkv; ++h)
        for (std::int64_t e = 0; e < d; ++e) {
          p.k_at(j, h, e) = k_held[(j * cc.hkv + h) * d + e];
          p.v_at(j, h, e) = v_held[(j * cc.hkv + h) * d + e];
        }
    p.keep = [&, group](int h, std::int64_t, std::int64_t kp) {
      return bool(kept[h / group][std::size_t(kp)]);
    };
    if (sinks) p.sink_logits.assign(sinks->begin(), sinks->end());
    // Decode scores q8 rows with the query quantized to q8 (the cache's group).
    if (lq == 1 && (cc.type == dtype::q8 || cc.low == dtype::q8)) {
      const auto qq = as_stored(
          std::vector<float>(q_all.begin() + q0 * cc.hq * d, q_all.begin() + (q0 + 1) * cc.hq * d),
          d, dtype::q8, cc.group);
      p.q_quantized.assign(qq.begin(), qq.end());
      p.quantized_key = [&, group](int h, std::int64_t kp) {
        return (low[std::size_t(h / group)][std::size_t(kp)] ? cc.low : cc.type) == dtype::q8;
      };
    }
    return heed_ref::naive_attention(p);
  };

  // Prefill (checked against the O(L^2) reference only for short prompts).
  {
    ASSERT_EQ(
        c.append(0, view_of(k_all, cc.prompt, cc.hkv, d), view_of(v_all, cc.prompt, cc.hkv, d)),
        status::ok);
    std::vector<float> o(std::size_t(cc.prompt * cc.hq * d));
    std::vector<float> lse(std::size_t(cc.prompt * cc.hq)), ent(lse.size());
    heed::cache_attention_params p;
    p.q = view_of(q_all, cc.prompt, cc.hq, d);
    p.o = heed::make_mutable_view(o.data(), cc.prompt, cc.hq, d);
    p.lse = lse.data();
    p.entropy = ent.data();
    std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, cc.threads, cc.isa));
    ASSERT_EQ(heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex, cc.isa), status::ok);
    const std::int64_t checked = cc.prompt <= 256 ? cc.prompt : 0;
    const auto r = reference(0, checked, checked);
    for (std::int64_t i = 0; i < checked; ++i)
      for (int h = 0; h < cc.hq; ++h) {
        ASSERT_NEAR(lse[h * cc.prompt + i], r.lse_at(h, i), 2e-5) << i << " " << h;
        ASSERT_NEAR(ent[h * cc.prompt + i], r.entropy_at(h, i), 5e-5);
        for (std::int64_t e = 0; e < d; ++e)
          ASSERT_NEAR(o[(i * cc.hq + h) * d + e], r.o_at(i, h, e), 2e-5);
      }
  }
  // Evict: each head keeps a different random subset (always position 0).
  for (int h = 0; h < cc.hkv; ++h) {
    std::vector<std::int32_t> keep;
    for (std::int32_t j = 0; j < cc.prompt; ++j) {
      const bool k = j == 0 || rng() % (h + 2) != 0;
      kept[h][std::size_t(j)] = k;
      if (k) keep.push_back(j);
    }
    ASSERT_EQ(c.keep(0, h, keep.data(), std::int64_t(keep.size())), status::ok);
  }
  demote(3, 0);
  // A chunk of new tokens attends causally over the kept entries and itself (with a sink logit,
  // which a paged cache folds in after merging its pages).
  if (cc.chunk > 0) {
    const std::int64_t t0 = cc.prompt, n = cc.chunk;
    std::vector<float> kc(k_all.begin() + t0 * cc.hkv * d, k_all.begin() + (t0 + n) * cc.hkv * d);
    std::vector<float> vc(v_all.begin() + t0 * cc.hkv * d, v_all.begin() + (t0 + n) * cc.hkv * d);
    std::vector<float> qc(q_all.begin() + t0 * cc.hq * d, q_all.begin() + (t0 + n) * cc.hq * d);
    ASSERT_EQ(c.append(0, view_of(kc, n, cc.hkv, d), view_of(vc, n, cc.hkv, d)), status::ok);
    if (cc.page_rows > 0) {
      for (int h = 0; h < cc.hkv; ++h) ASSERT_GT(c.page_count(0, h), 1);  // the paged paths run
    }
    std::vector<float> o(std::size_t(n * cc.hq * d)), lse(std::size_t(n * cc.hq)), ent(lse.size()),
        sinks(std::size_t(cc.hq));
    for (int h = 0; h < cc.hq; ++h) sinks[std::size_t(h)] = 0.25f * float(h % 3) - 0.2f;
    for (int with_sink = 0; with_sink < 2; ++with_sink) {
      heed::cache_attention_params p;
      p.q = view_of(qc, n, cc.hq, d);
      p.o = heed::make_mutable_view(o.data(), n, cc.hq, d);
      p.lse = lse.data();
      p.entropy = ent.data();
      if (with_sink) p.sink_logits = sinks.data();
      std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, cc.threads, cc.isa));
      ASSERT_EQ(heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex, cc.isa), status::ok);
      const auto r = reference(t0, n, t0 + n, with_sink ? &sinks : nullptr);
      for (std::int64_t i = 0; i < n; ++i)
        for (int h = 0; h < cc.hq; ++h) {
          ASSERT_NEAR(lse[h * n + i], r.lse_at(h, i), 2e-5) << i << " " << h << " " << with_sink;
          ASSERT_NEAR(ent[h * n + i], r.entropy_at(h, i), 5e-5) << i << " " << h;
          for (std::int64_t e = 0; e < d; ++e)
            ASSERT_NEAR(o[(i * cc.hq + h) * d + e], r.o_at(i, h, e), 2e-5);
        }
    }
  }
  // Decode with three accumulators on channels 0 (H2O), 1 (A2SF 0.9), 2 (TOVA).
  std::vector<std::vector<double>> h2o(cc.hkv, std::vector<double>(std::size_t(total), 0.0));
  auto a2sf = h2o, tova = h2o;
  const heed::accumulate_mode modes[3] = {heed::accumulate_mode::sum, heed::accumulate_mode::decay,
                                          heed::accumulate_mode::last};
  for (std::int64_t t = cc.prompt + cc.chunk; t < total; ++t) {
    std::vector<float> kt(k_all.begin() + t * cc.hkv * d, k_all.begin() + (t + 1) * cc.hkv * d);
    std::vector<float> vt(v_all.begin() + t * cc.hkv * d, v_all.begin() + (t + 1) * cc.hkv * d);
    std::vector<float> qt(q_all.begin() + t * cc.hq * d, q_all.begin() + (t + 1) * cc.hq * d);
    ASSERT_EQ(c.append(0, view_of(kt, 1, cc.hkv, d), view_of(vt, 1, cc.hkv, d)), status::ok);
    demote(7, 1);
    std::vector<float> o(std::size_t(cc.hq * d)), lse(std::size_t(cc.hq));
    const std::int64_t stride = c.max_length(0);
    std::vector<float> probs(std::size_t(cc.hq * stride), -1.f);
    for (int ch = 0; ch < 3; ++ch) {
      heed::cache_attention_params p;
      p.q = view_of(qt, 1, cc.hq, d);
      p.o = heed::make_mutable_view(o.data(), 1, cc.hq, d);
      p.lse = lse.data();
      p.accumulate_channel = ch;
      p.accumulate.mode = modes[ch];
      p.accumulate.lambda = 0.9f;
      if (ch == 0) {
        p.probs = probs.data();
        p.probs_stride = stride;
      }
      std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, cc.threads, cc.isa));
      ASSERT_GT(ws.size(), 0u);
      ASSERT_EQ(heed::cache_attention(c, 0, p, {ws.data(), ws.size()}, ex, cc.isa), status::ok);
    }
    const auto r = reference(t, 1, t + 1);
    for (int h = 0; h < cc.hq; ++h) {
      ASSERT_NEAR(lse[h], r.lse_at(h, 0), 2e-5);
      for (std::int64_t e = 0; e < d; ++e) ASSERT_NEAR(o[h * d + e], r.o_at(0, h, e), 2e-5);
    }
    for (int kvh = 0; kvh < cc.hkv; ++kvh) {
      for (std::int64_t j = 0; j <= t; ++j) {
        if (!kept[kvh][std::size_t(j)]) continue;
        double mean = 0;
        for (int g = 0; g < group; ++g) mean += r.prob_at(kvh * group + g, 0, j) / group;
        h2o[kvh][std::size_t(j)] += mean;
        a2sf[kvh][std::size_t(j)] = 0.9 * a2sf[kvh][std::size_t(j)] + mean;
        tova[kvh][std::size_t(j)] = mean;
      }
      const std::int64_t len = c.length(0, kvh);
      for (std::int64_t i = 0; i < len; ++i) {
        const std::int64_t j = c.positions(0, kvh)[i];
        ASSERT_TRUE(kept[kvh][std::size_t(j)]);
        for (int g = 0; g < group; ++g)
          ASSERT_NEAR(probs[(kvh * group + g) * stride + i], r.prob_at(kvh * group + g, 0, j),
                      2e-6);
        ASSERT_NEAR(c.scores(0, kvh, 0)[i], h2o[kvh][std::size_t(j)], 1e-5) << t << " " << j;
        ASSERT_NEAR(c.scores(0, kvh, 1)[i], a2sf[kvh][std::size_t(j)], 1e-5);
        ASSERT_NEAR(c.scores(0, kvh, 2)[i], tova[kvh][std::size_t(j)], 1e-6);
      }
    }
  }
}

TEST(CacheAttention, MatchesReferenceOverKeptKeys) {
  for (heed::isa i : compiled_isas()) {
    for (int threads : {1, 2}) {
      run_cache_case({"gqa4_f16_d64", 8, 2, 64, 40, 6, dtype::f16, threads, i});
      run_cache_case({"mha_f32_d128", 2, 2, 128, 33, 4, dtype::f32, threads, i});
      run_cache_case({"gqa2_bf16_d40", 4, 2, 40, 17, 5, dtype::bf16, threads, i});
      // Four KV heads: with 2 threads, decode runs whole heads in parallel.
      run_cache_case({"gqa2_f16_d64_4kv", 8, 4, 64, 30, 5, dtype::f16, threads, i});
    }
  }
  // Long enough for the decode kernel to split each head's keys across partitions and threads.
  run_cache_case({"split_kv_f16_d128", 4, 1, 128, 2600, 3, dtype::f16, 2, heed::isa::automatic});
}

// A paged cache: decode walks each head's pages as partitions, a prefill chunk runs page by page
// and merges; both against the reference over the kept keys, with pages smaller than the chunk.
TEST(CacheAttention, PagedCacheMatchesReferenceOverKeptKeys) {
  for (heed::isa i : compiled_isas()) {
    for (int threads : {1, 2}) {
      run_cache_case({"paged_gqa4_f16_d64", 8, 2, 64, 90, 4, dtype::f16, threads, i, 16, 20});
      run_cache_case({"paged_mha_f32_d128", 2, 2, 128, 70, 3, dtype::f32, threads, i, 32, 40});
      run_cache_case({"paged_gqa2_bf16_d40", 4, 2, 40, 50, 3, dtype::bf16, threads, i, 16, 7});
      run_cache_case({"paged_gqa2_f16_d64_4kv", 8, 4, 64, 60, 3, dtype::f16, threads, i, 16, 1});
    }
  }
  // The contiguous cache with a chunk too (its prefill is one kernel call per head).
  run_cache_case({"chunk_f16_d64", 8, 2, 64, 40, 2, dtype::f16, 2, heed::isa::automatic, 0, 9});
  run_cache_case(
      {"paged_long_f16_d128", 4, 1, 128, 2600, 2, dtype::f16, 2, heed::isa::automatic, 256, 33});
}

// A quantized cache (q8, q4; groups 32 and smaller): prefill, eviction, a chunk and decode with
// the accumulators, against the reference on the values the cache holds.
TEST(CacheAttention, QuantizedCacheMatchesReferenceOverKeptKeys) {
  for (heed::isa i : compiled_isas()) {
    for (int threads : {1, 2}) {
      run_cache_case({"gqa4_q8_d64", 8, 2, 64, 40, 4, dtype::q8, threads, i, 0, 7});
      run_cache_case({"gqa2_q4_d40_group8", 4, 2, 40, 30, 3, dtype::q4, threads, i, 0, 0, 8});
      run_cache_case({"paged_gqa4_q8_d128", 8, 2, 128, 60, 3, dtype::q8, threads, i, 16, 20});
      run_cache_case(
          {"paged_gqa2_q4_d64_group16", 4, 2, 64, 50, 3, dtype::q4, threads, i, 16, 9, 16});
      run_cache_case({"gqa2_q8_d64_4kv", 8, 4, 64, 30, 3, dtype::q8, threads, i});
    }
  }
  run_cache_case({"split_kv_q4_d128", 4, 1, 128, 2600, 2, dtype::q4, 2, heed::isa::automatic});
}

// A tiered cache (two precisions per head; random entries demoted after the eviction and at every
// decode step): prefill chunk, decode, LSE, entropy, sinks, probabilities and the accumulators
// over both tiers, merged, against the reference on the values each tier holds.
TEST(CacheAttention, TieredCacheMatchesReferenceOverKeptKeys) {
  for (heed::isa i : compiled_isas()) {
    for (int threads : {1, 2}) {
      run_cache_case(
          {"tiered_gqa4_f16_q4_d64", 8, 2, 64, 40, 4, dtype::f16, threads, i, 0, 7, 0, dtype::q4});
      run_cache_case({"tiered_gqa2_f32_q8_d128", 4, 2, 128, 30, 3, dtype::f32, threads, i, 0, 5, 0,
                      dtype::q8});
      run_cache_case({"tiered_gqa2_q8_q4_d40_group8", 4, 2, 40, 30, 3, dtype::q8, threads, i, 0, 0,
                      8, dtype::q4});
      run_cache_case({"tiered_gqa2_f16_q8_d64_4kv", 8, 4, 64, 30, 3, dtype::f16, threads, i, 0, 3,
                      0, dtype::q8});
    }
  }
  run_cache_case({"tiered_split_kv_f16_q4_d128", 4, 1, 128, 2600, 2, dtype::f16, 2,
                  heed::isa::automatic, 0, 0, 0, dtype::q4});
}

TEST(CacheAttention, BadInputReturnsStatus) {
  kv_cache c;
  ASSERT_EQ(c.init({1, 2, 16, dtype::f32, 0, 1}), status::ok);
  std::vector<float> x(4 * 4 * 16, 0.5f), o(x.size());
  ASSERT_EQ(c.append(0, view_of(x, 4, 2, 16), view_of(x, 4, 2, 16)), status::ok);
  heed::cache_attention_params p;
  p.q = view_of(x, 1, 4, 16);
  p.o = heed::make_mutable_view(o.data(), 1, 4, 16);
  std::vector<char> ws(heed::cache_attention_workspace_size(c, 0, p, 1));
  const heed::workspace w{ws.data(), ws.size()};
  EXPECT_EQ(heed::cache_attention(c, 0, p, w), status::ok);
  EXPECT_EQ(heed::cache_attention(c, 1, p, w), status::invalid_argument);
  EXPECT_EQ(heed::cache_attention(c, 0, p, {ws.data(), 0}), status::workspace_too_small);
  auto bad = p;
  bad.q = view_of(x, 1, 3, 16);
  bad.o = heed::make_mutable_view(o.data(), 1, 3, 16);
  EXPECT_EQ(heed::cache_attention(c, 0, bad, w), status::shape_mismatch);
  bad = p;
  bad.accumulate_channel = 1;  // only one channel
  EXPECT_EQ(heed::cache_attention(c, 0, bad, w), status::invalid_argument);
  bad = p;
  bad.q = view_of(x, 2, 4, 16);
  bad.o = heed::make_mutable_view(o.data(), 2, 4, 16);
  bad.accumulate_channel = 0;  // accumulation is decode-only
  EXPECT_EQ(heed::cache_attention(c, 0, bad, w), status::invalid_argument);
  bad = p;
  bad.q = view_of(x, 5, 4, 16);
  bad.o = heed::make_mutable_view(o.data(), 5, 4, 16);
  EXPECT_EQ(heed::cache_attention(c, 0, bad, w), status::invalid_argument);  // 5 > 4 cached
  bad = p;
  bad.probs = o.data();
  bad.probs_stride = 3;
  EXPECT_EQ(heed::cache_attention(c, 0, bad, w), status::invalid_stride);
  bad = p;
  bad.o.data = nullptr;
  EXPECT_EQ(heed::cache_attention(c, 0, bad, w), status::null_pointer);
}

}  // namespace
