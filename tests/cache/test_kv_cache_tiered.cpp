// The two-precision KV cache (kv_cache_config::tiered): demote() re-stores chosen entries at the
// low type, keep() compacts both tiers, and every read (gather_float, the tier views, positions,
// score channels, bytes_used) equals a plain model's after every round, bit for bit. Bad demotions
// and configurations are refused with nothing changed. Attention over a tiered cache:
// tests/cache/test_cache_attention_tiered.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/quant/quantize.hpp"
#include "reference/cache_read.hpp"

namespace {

using heed::dtype;
using heed::kv_cache;
using heed::kv_cache_config;
using heed::status;

struct tiers {
  dtype high, low;
  std::int64_t d;
  int group;  // 0: the default (32)
};

std::string tiers_name(const ::testing::TestParamInfo<tiers>& info) {
  const tiers& t = info.param;
  return std::string(heed::dtype_name(t.high)) + "_to_" + heed::dtype_name(t.low) + "_d" +
         std::to_string(t.d) + "_g" + std::to_string(t.group);
}

// A row of type t rounded / quantized from x and read back as float (what the cache must hold).
std::vector<float> stored(dtype t, const float* x, std::int64_t d, int g) {
  std::vector<float> out(static_cast<std::size_t>(d));
  if (heed::is_quantized(t)) {
    std::vector<unsigned char> r(heed::quant::row_bytes(t, d, g));
    EXPECT_EQ(heed::quant::quantize_row(t, x, d, g, r.data()), status::ok);
    EXPECT_EQ(heed::quant::dequantize_row(t, r.data(), d, g, out.data()), status::ok);
    return out;
  }
  for (std::int64_t i = 0; i < d; ++i)
    out[std::size_t(i)] = t == dtype::f16    ? heed::to_float(heed::to_f16(x[i]))
                          : t == dtype::bf16 ? heed::to_float(heed::to_bf16(x[i]))
                                             : x[i];
  return out;
}

class KvCacheTiered : public ::testing::TestWithParam<tiers> {
 protected:
  int g() const { return GetParam().group ? GetParam().group : heed::quant::default_group; }
  kv_cache_config config(int heads, int channels) const {
    kv_cache_config c{1, heads, GetParam().d, GetParam().high, 0, channels};
    c.group = GetParam().group;
    c.tiered = true;
    c.low_type = GetParam().low;
    return c;
  }
};

struct entry {
  std::int64_t pos;
  int tier;
  float score;
  std::vector<float> k, v;
};

// Checks every read of head h against the model.
void expect_matches(const kv_cache& c, int h, const std::vector<entry>& m, std::int64_t d,
                    const std::string& where) {
  const std::int64_t len = c.length(0, h);
  ASSERT_EQ(len, std::int64_t(m.size())) << where;
  std::int64_t low = 0;
  for (const entry& e : m) low += e.tier;
  ASSERT_EQ(c.low_length(0, h), low) << where;
  std::vector<float> gk(std::size_t(len * d) + 1), gv(gk.size());
  ASSERT_EQ(c.gather_float(0, h, 0, gk.data(), gk.size()), status::ok);
  ASSERT_EQ(c.gather_float(0, h, 1, gv.data(), gv.size()), status::ok);
  std::int64_t rank[2] = {0, 0};
  for (std::int64_t i = 0; i < len; ++i) {
    const entry& e = m[std::size_t(i)];
    ASSERT_EQ(c.positions(0, h)[i], e.pos) << where << " entry " << i;
    ASSERT_EQ(int(c.tiers(0, h)[i]), e.tier) << where << " entry " << i;
    ASSERT_EQ(c.scores(0, h, 0)[i], e.score) << where << " entry " << i;
    ASSERT_EQ(std::memcmp(gk.data() + i * d, e.k.data(), sizeof(float) * std::size_t(d)), 0)
        << where << " entry " << i;
    ASSERT_EQ(std::memcmp(gv.data() + i * d, e.v.data(), sizeof(float) * std::size_t(d)), 0)
        << where << " entry " << i;
    // The tier views (what the kernels read) hold the same rows, in entry order.
    const heed::tensor_view tk = c.tier_keys(0, h, e.tier), tv = c.tier_values(0, h, e.tier);
    const std::int64_t r = rank[e.tier]++;
    for (std::int64_t col = 0; col < d; col += 5) {
      ASSERT_EQ(heed_ref::read_element(tk, r, col), e.k[std::size_t(col)]) << where;
      ASSERT_EQ(heed_ref::read_element(tv, r, col), e.v[std::size_t(col)]) << where;
    }
  }
  EXPECT_EQ(c.tier_keys(0, h, 0).seq, rank[0]);
  EXPECT_EQ(c.tier_keys(0, h, 1).seq, rank[1]);
  // A head with low entries has no single view; without them keys() is the high tier.
  EXPECT_EQ(c.keys(0, h).data == nullptr, low > 0) << where;
}

// Rounds of appends, demotions of random high entries and random evictions against the model.
TEST_P(KvCacheTiered, AppendDemoteKeepMatchAModelBitForBit) {
  const tiers t = GetParam();
  const std::int64_t d = t.d;
  const int heads = 2;
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.f, 1.5f);
  kv_cache c;
  ASSERT_EQ(c.init(config(heads, 1)), status::ok);
  ASSERT_TRUE(c.tiered());
  std::vector<std::vector<entry>> model(heads);
  std::int64_t appended = 0;
  for (int round = 0; round < 40; ++round) {
    const std::int64_t n = round % 4 == 0 ? 1 + std::int64_t(rng() % 40) : 1;
    std::vector<float> k(std::size_t(n * heads * d)), v(k.size());
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng) + (round % 3 == 0 ? 4.f : 0.f);
    ASSERT_EQ(
        c.append(0, heed::make_view(k.data(), n, heads, d), heed::make_view(v.data(), n, heads, d)),
        status::ok);
    for (int h = 0; h < heads; ++h)
      for (std::int64_t s = 0; s < n; ++s)
        model[h].push_back({appended + s, 0, 0.f,
                            stored(t.high, &k[std::size_t((s * heads + h) * d)], d, g()),
                            stored(t.high, &v[std::size_t((s * heads + h) * d)], d, g())});
    appended += n;
    for (int h = 0; h < heads; ++h) {
      // Score channel values follow their entries through demotions and evictions.
      for (std::size_t i = 0; i < model[h].size(); ++i) {
        const float sc = float(rng() % 1000);
        c.scores(0, h, 0)[i] = sc;
        model[h][i].score = sc;
      }
      // Demote a random subset of the high entries.
      std::vector<std::int32_t> idx;
      for (std::int32_t j = 0; j < std::int32_t(model[h].size()); ++j)
        if (model[h][std::size_t(j)].tier == 0 && rng() % 3 == 0) idx.push_back(j);
      ASSERT_EQ(c.demote(0, h, idx.data(), std::int64_t(idx.size())), status::ok);
      for (std::int32_t j : idx) {
        entry& e = model[h][std::size_t(j)];
        e.tier = 1;
        e.k = stored(t.low, e.k.data(), d, g());
        e.v = stored(t.low, e.v.data(), d, g());
      }
      expect_matches(c, h, model[h], d, "round " + std::to_string(round) + " demoted");
      // Evict a random subset.
      std::vector<std::int32_t> keep;
      const int mode = int(rng() % 3);
      for (std::int32_t j = 0; j < std::int32_t(model[h].size()); ++j)
        if (mode == 0 || rng() % (mode == 1 ? 6 : 2) != 0) keep.push_back(j);
      ASSERT_EQ(c.keep(0, h, keep.data(), std::int64_t(keep.size())), status::ok);
      std::vector<entry> next;
      for (std::int32_t j : keep) next.push_back(model[h][std::size_t(j)]);
      model[h] = next;
      expect_matches(c, h, model[h], d, "round " + std::to_string(round) + " kept");
    }
    std::size_t bytes = 0;
    for (int h = 0; h < heads; ++h)
      for (const entry& e : model[h]) bytes += e.tier ? c.low_entry_bytes() : c.entry_bytes();
    ASSERT_EQ(c.bytes_used(), bytes);
    if (round == 20) {
      ASSERT_EQ(c.shrink_to_fit(), status::ok);
      for (int h = 0; h < heads; ++h) expect_matches(c, h, model[h], d, "after shrink_to_fit");
    }
  }
}

// Bad demotions are refused and leave the cache as it was.
TEST_P(KvCacheTiered, BadDemotionsChangeNothing) {
  const std::int64_t d = GetParam().d;
  kv_cache c;
  ASSERT_EQ(c.init(config(1, 0)), status::ok);
  std::vector<float> k(std::size_t(6 * d)), v(k.size());
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = float(i % 7) - 3.f, v[i] = float(i % 5);
  ASSERT_EQ(c.append(0, heed::make_view(k.data(), 6, 1, d), heed::make_view(v.data(), 6, 1, d)),
            status::ok);
  const std::int32_t first[] = {1, 3};
  ASSERT_EQ(c.demote(0, 0, first, 2), status::ok);
  std::vector<float> before(std::size_t(6 * d));
  ASSERT_EQ(c.gather_float(0, 0, 0, before.data(), before.size()), status::ok);
  const std::int32_t already_low[] = {0, 3};
  const std::int32_t descending[] = {4, 2};
  const std::int32_t out_of_range[] = {2, 6};
  const std::int32_t negative[] = {-1, 2};
  EXPECT_EQ(c.demote(0, 0, already_low, 2), status::invalid_argument);
  EXPECT_EQ(c.demote(0, 0, descending, 2), status::invalid_argument);
  EXPECT_EQ(c.demote(0, 0, out_of_range, 2), status::invalid_argument);
  EXPECT_EQ(c.demote(0, 0, negative, 2), status::invalid_argument);
  EXPECT_EQ(c.demote(0, 0, nullptr, 1), status::null_pointer);
  EXPECT_EQ(c.demote(0, 0, first, 7), status::invalid_argument);
  EXPECT_EQ(c.demote(0, 1, first, 1), status::invalid_argument);
  EXPECT_EQ(c.demote(1, 0, first, 1), status::invalid_argument);
  std::vector<float> after(before.size());
  ASSERT_EQ(c.gather_float(0, 0, 0, after.data(), after.size()), status::ok);
  EXPECT_EQ(before, after);
  EXPECT_EQ(c.low_length(0, 0), 2);
  // The raw gather has no single row type for this head.
  std::vector<unsigned char> raw(6 * c.row_bytes());
  EXPECT_EQ(c.gather(0, 0, 0, raw.data(), raw.size()), status::unsupported_dtype);
  EXPECT_EQ(c.page_count(0, 0), 0);
  for (int bad_tier : {-1, 2}) {
    EXPECT_EQ(c.tier_keys(0, 0, bad_tier).data, nullptr);
    EXPECT_EQ(c.tier_values(0, 0, bad_tier).seq, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tiers, KvCacheTiered,
    ::testing::Values(tiers{dtype::f16, dtype::q4, 128, 0}, tiers{dtype::f16, dtype::q8, 64, 0},
                      tiers{dtype::f32, dtype::f16, 24, 0}, tiers{dtype::q8, dtype::q4, 40, 8},
                      tiers{dtype::bf16, dtype::q4, 96, 16}, tiers{dtype::f32, dtype::q8, 32, 0}),
    tiers_name);

TEST(KvCacheTieredConfig, TiersAreChecked) {
  kv_cache c;
  kv_cache_config cfg{1, 1, 64, dtype::f16};
  cfg.tiered = true;
  cfg.low_type = dtype::q4;
  EXPECT_EQ(c.init(cfg), status::ok);
  cfg.low_type = dtype::f16;  // not smaller
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg.low_type = dtype::bf16;
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg.low_type = dtype::q4;
  cfg.page_rows = 16;  // contiguous only
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg.page_rows = 0;
  cfg.group = 12;  // not a divisor of 64
  EXPECT_EQ(c.init(cfg), status::invalid_argument);
  cfg.group = 0;
  cfg.low_type = static_cast<dtype>(42);
  EXPECT_EQ(c.init(cfg), status::unsupported_dtype);
  // An untiered cache refuses demote().
  kv_cache plain;
  ASSERT_EQ(plain.init({1, 1, 64, dtype::f16}), status::ok);
  const std::int32_t i0 = 0;
  EXPECT_EQ(plain.demote(0, 0, &i0, 1), status::invalid_argument);
  EXPECT_EQ(plain.tiers(0, 0), nullptr);
  // A value beyond what the low type's scales hold is refused, nothing demoted.
  kv_cache_config big{1, 1, 32, dtype::f32};
  big.tiered = true;
  big.low_type = dtype::q8;
  kv_cache b;
  ASSERT_EQ(b.init(big), status::ok);
  std::vector<float> k(32, 1.f), v(32, 1.f);
  k[3] = 3e38f;
  ASSERT_EQ(b.append(0, heed::make_view(k.data(), 1, 1, 32), heed::make_view(v.data(), 1, 1, 32)),
            status::ok);
  EXPECT_EQ(b.demote(0, 0, &i0, 1), status::invalid_argument);
  EXPECT_EQ(b.low_length(0, 0), 0);
}

}  // namespace
