// The C API of the KV cache and the eviction loop (heed/c/heed_cache.h) against the same loop run
// through heed::kv_cache + heed::eviction_loop: outputs, lengths, positions and stored rows equal
// bit for bit, for f32 / f16 / q8 / q4 caches, contiguous and paged, with a policy by name and a C
// score callback. Then the error cases: each returns its documented status and changes nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "heed/c/heed_cache.h"
#include "heed/policy/callback_policy.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/registry.hpp"
#include "heed/policy/snapkv.hpp"

namespace {

constexpr int kLayers = 3, kHq = 4, kHkv = 2;
constexpr std::int64_t kD = 64, kPrefill = 24, kDecode = 40, kBudget = 16;

struct tokens {
  std::int64_t n;
  std::vector<float> q, k, v;  // [layers][n][heads][d]
};

tokens make_tokens(std::int64_t n, unsigned seed) {
  tokens t{n, {}, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  t.q.resize(std::size_t(kLayers * n * kHq * kD));
  t.k.resize(std::size_t(kLayers * n * kHkv * kD));
  t.v.resize(t.k.size());
  for (auto* x : {&t.q, &t.k, &t.v})
    for (auto& e : *x) e = g(rng);
  return t;
}

// Rows [first, first + n) of layer l, as C views.
heed_tensor c_view(const std::vector<float>& x, std::int64_t total, int heads, int l,
                   std::int64_t first, std::int64_t n) {
  heed_tensor t{};
  t.data = x.data() + (std::size_t(l) * total + first) * heads * kD;
  t.dtype = HEED_DTYPE_F32;
  t.seq = n;
  t.heads = heads;
  t.dim = kD;
  t.seq_stride = heads * kD;
  t.head_stride = kD;
  return t;
}
heed::tensor_view cpp_view(const heed_tensor& c) {
  heed::tensor_view t;
  t.data = c.data;
  t.type = heed::dtype::f32;
  t.seq = c.seq;
  t.heads = c.heads;
  t.dim = c.dim;
  t.seq_stride = c.seq_stride;
  t.head_stride = c.head_stride;
  return t;
}

// A C score callback: the accumulated mass with a position-dependent nudge, or -||k|| when it
// has no mass (reads the keys).
heed_status test_score(void* user, const heed_policy_head* h, float* out) {
  ++*static_cast<int*>(user);
  for (std::int64_t j = 0; j < h->length; ++j) {
    float s = 0.f;
    if (h->accumulated != nullptr) {
      s = h->accumulated[j] + 1e-3f * float(h->positions[j] % 5);
    } else if (h->dtype == HEED_DTYPE_F32) {
      const float* k = static_cast<const float*>(h->keys) + j * h->head_dim;
      for (std::int64_t c = 0; c < h->head_dim; ++c) s -= k[c] * k[c];
    }
    out[j] = s;
  }
  return HEED_STATUS_OK;
}

enum class which { h2o, callback_mass, callback_keys, snapkv };

struct run_result {
  std::vector<float> out;  // every step's o, concatenated
  std::vector<std::int64_t> lengths, positions;
  std::vector<unsigned char> rows;  // stored rows; a tiered cache's as f32 (gather_float)
  std::vector<std::uint8_t> tiers;  // a tiered cache: every head's tiers
  std::size_t bytes_used = 0;
};

// Demotion: a tiered cache (f16, low tier q4) and these eviction_config fields.
struct tier_options {
  bool tiered = false;
  std::int64_t high_budget = -1;
  std::size_t budget_bytes = 0;
};

// One pass: prefill chunk then decode tokens, every layer each step; through C (use_c) or C++.
run_result run(bool use_c, heed_dtype dtype, std::int64_t page_rows, which policy,
               const tokens& pre, const tokens& dec, const heed_executor* exec = nullptr,
               const tier_options& tier = {}) {
  run_result r;
  int calls = 0;
  heed_callback_policy cb;
  EXPECT_EQ(heed_callback_policy_init(&cb), HEED_STATUS_OK);
  cb.fn = test_score;
  cb.user = &calls;
  cb.column_mass = policy == which::callback_mass;
  cb.kv_rows = policy == which::callback_keys;
  cb.n_sink = 2;
  cb.n_recent = 3;

  heed_kv_cache* cc = nullptr;
  heed_eviction_loop* cl = nullptr;
  heed::kv_cache cache;
  heed::eviction_loop loop;
  heed::kv_cache_config cfg;
  cfg.layers = kLayers;
  cfg.kv_heads = kHkv;
  cfg.head_dim = kD;
  cfg.type = static_cast<heed::dtype>(dtype);
  cfg.score_channels = 1;
  cfg.page_rows = page_rows;
  cfg.tiered = tier.tiered;
  heed::eviction_config ec;
  ec.budget = tier.budget_bytes > 0 ? 0 : kBudget;
  ec.high_budget = tier.high_budget;
  ec.budget_bytes = tier.budget_bytes;
  if (use_c) {
    heed_kv_cache_config c;
    EXPECT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
    c.layers = kLayers;
    c.kv_heads = kHkv;
    c.head_dim = kD;
    c.dtype = dtype;
    c.score_channels = 1;
    c.page_rows = page_rows;
    c.tiered = tier.tiered ? 1 : 0;
    EXPECT_EQ(heed_kv_cache_create(&c, &cc), HEED_STATUS_OK);
    heed_eviction_config e;
    EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
    e.budget = ec.budget;
    e.high_budget = tier.high_budget;
    e.budget_bytes = tier.budget_bytes;
    if (policy == which::h2o) {
      EXPECT_EQ(heed_eviction_loop_create(cc, "h2o", nullptr, 0, &e, kHq, &cl), HEED_STATUS_OK);
    } else if (policy == which::snapkv) {
      const heed_policy_param p[] = {{"window", 8}, {"sinks", 2}};
      EXPECT_EQ(heed_eviction_loop_create(cc, "snapkv", p, 2, &e, kHq, &cl), HEED_STATUS_OK);
    } else {
      EXPECT_EQ(heed_eviction_loop_create_callback(cc, &cb, &e, kHq, &cl), HEED_STATUS_OK);
    }
  } else {
    EXPECT_EQ(cache.init(cfg), heed::status::ok);
    heed::any_policy p;
    if (policy == which::h2o) {
      p = heed::h2o_policy{};
    } else if (policy == which::snapkv) {
      heed::snapkv_policy s;
      s.window = 8;
      s.n_sink = 2;
      p = s;
    } else {
      heed::callback_policy c;
      c.fn = test_score;
      c.user = &calls;
      c.wants.column_mass = cb.column_mass != 0;
      c.wants.channels = c.wants.column_mass ? 1 : 0;
      c.wants.kv_rows = cb.kv_rows != 0;
      c.select.protect = {2, 3};
      p = c;
    }
    EXPECT_EQ(loop.init(&cache, p, ec, kHq), heed::status::ok);
  }

  std::vector<float> o;
  auto step = [&](const tokens& t, int l, std::int64_t first, std::int64_t n) {
    const heed_tensor q = c_view(t.q, t.n, kHq, l, first, n);
    const heed_tensor k = c_view(t.k, t.n, kHkv, l, first, n);
    const heed_tensor v = c_view(t.v, t.n, kHkv, l, first, n);
    o.assign(std::size_t(n * kHq * kD), -7.f);
    heed_mutable_tensor om{o.data(), HEED_DTYPE_F32, n, kHq, kD, kHq * kD, kD};
    if (use_c) {
      EXPECT_EQ(heed_eviction_loop_step(cl, l, &q, &k, &v, &om, exec, nullptr, nullptr),
                HEED_STATUS_OK);
    } else {
      heed::mutable_tensor_view ov;
      ov.data = o.data();
      ov.seq = n;
      ov.heads = kHq;
      ov.dim = kD;
      ov.seq_stride = kHq * kD;
      ov.head_stride = kD;
      EXPECT_EQ(loop.step(l, cpp_view(q), cpp_view(k), cpp_view(v), ov), heed::status::ok);
    }
    r.out.insert(r.out.end(), o.begin(), o.end());
  };
  auto record = [&] {
    for (int l = 0; l < kLayers; ++l)
      for (int h = 0; h < kHkv; ++h) {
        std::int64_t len = 0;
        if (use_c) {
          EXPECT_EQ(heed_kv_cache_length(cc, l, h, &len), HEED_STATUS_OK);
        } else {
          len = cache.length(l, h);
        }
        r.lengths.push_back(len);
        std::vector<std::int64_t> pos(static_cast<std::size_t>(len));
        if (use_c) {
          EXPECT_EQ(heed_kv_cache_positions(cc, l, h, pos.data(), len), HEED_STATUS_OK);
        } else {
          pos.assign(cache.positions(l, h), cache.positions(l, h) + len);
        }
        r.positions.insert(r.positions.end(), pos.begin(), pos.end());
        std::size_t row = 0;
        if (use_c) {
          EXPECT_EQ(heed_kv_cache_row_bytes(cc, &row), HEED_STATUS_OK);
        } else {
          row = cache.row_bytes();
        }
        if (tier.tiered) {
          // Two row formats: the rows as f32, and the tiers.
          const std::size_t nf = std::size_t(len * kD);
          std::vector<float> k(nf + 1), v(nf + 1);
          std::vector<std::uint8_t> t(std::size_t(len) + 1);
          if (use_c) {
            EXPECT_EQ(heed_kv_cache_gather_float(cc, l, h, 0, k.data(), k.size()), HEED_STATUS_OK);
            EXPECT_EQ(heed_kv_cache_gather_float(cc, l, h, 1, v.data(), v.size()), HEED_STATUS_OK);
            EXPECT_EQ(heed_kv_cache_tiers(cc, l, h, t.data(), t.size()), HEED_STATUS_OK);
          } else {
            EXPECT_EQ(cache.gather_float(l, h, 0, k.data(), k.size()), heed::status::ok);
            EXPECT_EQ(cache.gather_float(l, h, 1, v.data(), v.size()), heed::status::ok);
            if (len > 0) std::memcpy(t.data(), cache.tiers(l, h), std::size_t(len));
          }
          const auto* kb = reinterpret_cast<const unsigned char*>(k.data());
          const auto* vb = reinterpret_cast<const unsigned char*>(v.data());
          r.rows.insert(r.rows.end(), kb, kb + nf * sizeof(float));
          r.rows.insert(r.rows.end(), vb, vb + nf * sizeof(float));
          r.tiers.insert(r.tiers.end(), t.begin(), t.begin() + len);
          continue;
        }
        std::vector<unsigned char> k(std::size_t(len) * row + 1), v(k.size());
        if (use_c) {
          EXPECT_EQ(heed_kv_cache_read_rows(cc, l, h, k.data(), k.size(), v.data(), v.size()),
                    HEED_STATUS_OK);
        } else {
          EXPECT_EQ(cache.gather(l, h, 0, k.data(), k.size()), heed::status::ok);
          EXPECT_EQ(cache.gather(l, h, 1, v.data(), v.size()), heed::status::ok);
        }
        r.rows.insert(r.rows.end(), k.begin(), k.begin() + std::ptrdiff_t(len) * row);
        r.rows.insert(r.rows.end(), v.begin(), v.begin() + std::ptrdiff_t(len) * row);
      }
  };
  for (int l = 0; l < kLayers; ++l) step(pre, l, 0, pre.n);
  record();
  for (std::int64_t t = 0; t < dec.n; ++t) {
    for (int l = 0; l < kLayers; ++l) step(dec, l, t, 1);
    record();
  }
  if (use_c) {
    EXPECT_EQ(heed_kv_cache_bytes_used(cc, &r.bytes_used), HEED_STATUS_OK);
    EXPECT_EQ(heed_eviction_loop_destroy(cl), HEED_STATUS_OK);
    EXPECT_EQ(heed_kv_cache_destroy(cc), HEED_STATUS_OK);
  } else {
    r.bytes_used = cache.bytes_used();
  }
  if (policy == which::callback_mass || policy == which::callback_keys) {
    EXPECT_GT(calls, 0);
  }
  return r;
}

TEST(CApiCache, SameAsCppLoopBitwise) {
  const tokens pre = make_tokens(kPrefill, 11), dec = make_tokens(kDecode, 12);
  // The C loops of paged caches run on heed's thread pool (2 threads), the C++ ones serially:
  // the results do not depend on the executor.
  heed_thread_pool* pool = nullptr;
  ASSERT_EQ(heed_thread_pool_create(2, &pool), HEED_STATUS_OK);
  heed_executor ex{};
  ASSERT_EQ(heed_thread_pool_executor(pool, &ex), HEED_STATUS_OK);
  EXPECT_EQ(ex.concurrency, 2);
  for (heed_dtype dt : {HEED_DTYPE_F32, HEED_DTYPE_F16, HEED_DTYPE_Q8, HEED_DTYPE_Q4})
    for (std::int64_t page_rows : {std::int64_t(0), std::int64_t(16)})
      for (which p : {which::h2o, which::callback_mass, which::callback_keys, which::snapkv}) {
        SCOPED_TRACE(testing::Message()
                     << "dtype " << int(dt) << " page_rows " << page_rows << " policy " << int(p));
        const run_result a = run(true, dt, page_rows, p, pre, dec, page_rows ? &ex : nullptr);
        const run_result b = run(false, dt, page_rows, p, pre, dec);
        ASSERT_EQ(a.out.size(), b.out.size());
        EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)), 0);
        EXPECT_EQ(a.lengths, b.lengths);
        EXPECT_EQ(a.positions, b.positions);
        EXPECT_EQ(a.rows, b.rows);
        EXPECT_EQ(a.bytes_used, b.bytes_used);
        // The budget holds after every decode step.
        for (std::size_t i = std::size_t(kLayers * kHkv); i < a.lengths.size(); ++i)
          EXPECT_EQ(a.lengths[i], kBudget);
        for (float x : a.out) ASSERT_TRUE(std::isfinite(x));
      }
  EXPECT_EQ(heed_thread_pool_destroy(pool), HEED_STATUS_OK);
}

// ---- errors: the documented status, and nothing changes -----------------------------------------

struct fixture {
  heed_kv_cache* cache = nullptr;
  heed_eviction_loop* loop = nullptr;
  tokens t = make_tokens(8, 5);
  fixture(std::int64_t page_rows = 0, heed_dtype dt = HEED_DTYPE_F32) {
    heed_kv_cache_config c;
    EXPECT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
    c.layers = kLayers;
    c.kv_heads = kHkv;
    c.head_dim = kD;
    c.dtype = dt;
    c.score_channels = 1;
    c.page_rows = page_rows;
    EXPECT_EQ(heed_kv_cache_create(&c, &cache), HEED_STATUS_OK);
    heed_eviction_config e;
    EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
    e.budget = 4;
    EXPECT_EQ(heed_eviction_loop_create(cache, "h2o", nullptr, 0, &e, kHq, &loop), HEED_STATUS_OK);
  }
  ~fixture() {
    heed_eviction_loop_destroy(loop);
    heed_kv_cache_destroy(cache);
  }
  heed_status step(int l, std::int64_t first, std::int64_t n, std::vector<float>& o,
                   heed_tensor* k_override = nullptr) {
    const heed_tensor q = c_view(t.q, t.n, kHq, l, first, n);
    const heed_tensor k = c_view(t.k, t.n, kHkv, l, first, n);
    const heed_tensor v = c_view(t.v, t.n, kHkv, l, first, n);
    o.assign(std::size_t(n * kHq * kD), 0.f);
    heed_mutable_tensor om{o.data(), HEED_DTYPE_F32, n, kHq, kD, kHq * kD, kD};
    return heed_eviction_loop_step(loop, l, &q, k_override ? k_override : &k, &v, &om, nullptr,
                                   nullptr, nullptr);
  }
  // Lengths, positions and rows of every head.
  std::vector<std::int64_t> state() const {
    std::vector<std::int64_t> s;
    for (int l = 0; l < kLayers; ++l)
      for (int h = 0; h < kHkv; ++h) {
        std::int64_t len = 0;
        EXPECT_EQ(heed_kv_cache_length(cache, l, h, &len), HEED_STATUS_OK);
        s.push_back(len);
        std::vector<std::int64_t> pos(std::size_t(len) + 1);
        EXPECT_EQ(heed_kv_cache_positions(cache, l, h, pos.data(), len + 1), HEED_STATUS_OK);
        s.insert(s.end(), pos.begin(), pos.begin() + len);
        std::vector<float> k(std::size_t(len * kD) + 1), sc(std::size_t(len) + 1);
        EXPECT_EQ(heed_kv_cache_read_rows(cache, l, h, k.data(), k.size() * 4, nullptr, 0),
                  HEED_STATUS_OK);
        EXPECT_EQ(heed_kv_cache_read_scores(cache, l, h, 0, sc.data(), len + 1), HEED_STATUS_OK);
        for (std::int64_t i = 0; i < len * kD; ++i) {
          std::int32_t bits;
          std::memcpy(&bits, &k[std::size_t(i)], 4);
          s.push_back(bits);
        }
        for (std::int64_t i = 0; i < len; ++i) {
          std::int32_t bits;
          std::memcpy(&bits, &sc[std::size_t(i)], 4);
          s.push_back(bits);
        }
      }
    return s;
  }
};

// A tiered cache with high_budget (and with budget_bytes) through C: the same outputs, entries,
// tiers and f32 rows as the C++ loop, and each head holds at most high_budget high entries.
TEST(CApiCache, TieredLoopSameAsCpp) {
  const tokens pre = make_tokens(kPrefill, 21), dec = make_tokens(kDecode, 22);
  tier_options by_entries;
  by_entries.tiered = true;
  by_entries.high_budget = 6;
  tier_options by_bytes = by_entries;
  // Room for 6 high entries and 14 low ones (the sizes of the C++ cache the loops use).
  heed::kv_cache sizes;
  heed::kv_cache_config sc;
  sc.layers = kLayers;
  sc.kv_heads = kHkv;
  sc.head_dim = kD;
  sc.type = heed::dtype::f16;
  sc.score_channels = 1;
  sc.tiered = true;
  ASSERT_EQ(sizes.init(sc), heed::status::ok);
  const std::size_t high_bytes = sizes.entry_bytes(), low_bytes = sizes.low_entry_bytes();
  by_bytes.budget_bytes = 6 * high_bytes + 14 * low_bytes;
  for (const tier_options& t : {by_entries, by_bytes})
    for (which p : {which::h2o, which::callback_keys, which::snapkv}) {
      SCOPED_TRACE(testing::Message() << "budget_bytes " << t.budget_bytes << " policy " << int(p));
      const run_result a = run(true, HEED_DTYPE_F16, 0, p, pre, dec, nullptr, t);
      const run_result b = run(false, HEED_DTYPE_F16, 0, p, pre, dec, nullptr, t);
      ASSERT_EQ(a.out.size(), b.out.size());
      EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)), 0);
      EXPECT_EQ(a.lengths, b.lengths);
      EXPECT_EQ(a.positions, b.positions);
      EXPECT_EQ(a.rows, b.rows);
      EXPECT_EQ(a.tiers, b.tiers);
      EXPECT_EQ(a.bytes_used, b.bytes_used);
      // After the prefill's record, every record holds kLayers * kHkv heads, in order.
      std::size_t at = 0;
      std::int64_t low_total = 0;
      for (std::size_t i = 0; i < a.lengths.size(); ++i) {
        std::int64_t high = 0;
        for (std::int64_t j = 0; j < a.lengths[i]; ++j) {
          high += a.tiers[at + std::size_t(j)] == 0;
          low_total += a.tiers[at + std::size_t(j)] == 1;
        }
        at += std::size_t(a.lengths[i]);
        if (i >= std::size_t(kLayers * kHkv)) {
          EXPECT_LE(high, 6);
          EXPECT_LE(a.lengths[i], t.budget_bytes ? 20 : kBudget);
        }
      }
      EXPECT_GT(low_total, 0);
      for (float x : a.out) ASSERT_TRUE(std::isfinite(x));
    }
}

// A tiered cache read and demoted through C equals the C++ object demoted the same way.
TEST(CApiCache, TieredCacheSameAsCpp) {
  const tokens t = make_tokens(20, 31);
  heed_kv_cache_config c;
  ASSERT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
  EXPECT_EQ(c.tiered, 0);
  EXPECT_EQ(c.low_type, HEED_DTYPE_Q4);
  c.layers = kLayers;
  c.kv_heads = kHkv;
  c.head_dim = kD;
  c.dtype = HEED_DTYPE_F16;
  c.score_channels = 1;
  c.tiered = 1;
  c.low_type = HEED_DTYPE_Q8;
  heed_kv_cache* cc = nullptr;
  ASSERT_EQ(heed_kv_cache_create(&c, &cc), HEED_STATUS_OK);
  heed_kv_cache_config back;
  ASSERT_EQ(heed_kv_cache_get_config(cc, &back), HEED_STATUS_OK);
  EXPECT_EQ(back.tiered, 1);
  EXPECT_EQ(back.low_type, HEED_DTYPE_Q8);
  heed::kv_cache cache;
  heed::kv_cache_config cfg;
  cfg.layers = kLayers;
  cfg.kv_heads = kHkv;
  cfg.head_dim = kD;
  cfg.type = heed::dtype::f16;
  cfg.score_channels = 1;
  cfg.tiered = true;
  cfg.low_type = heed::dtype::q8;
  ASSERT_EQ(cache.init(cfg), heed::status::ok);
  for (int l = 0; l < kLayers; ++l) {
    const heed_tensor k = c_view(t.k, t.n, kHkv, l, 0, t.n), v = c_view(t.v, t.n, kHkv, l, 0, t.n);
    ASSERT_EQ(heed_kv_cache_append(cc, l, &k, &v, nullptr), HEED_STATUS_OK);
    ASSERT_EQ(cache.append(l, cpp_view(k), cpp_view(v)), heed::status::ok);
  }
  // Different entries per head, demoted in two calls (the second among low ones).
  for (int l = 0; l < kLayers; ++l)
    for (int h = 0; h < kHkv; ++h) {
      std::vector<std::int32_t> first, second;
      for (std::int32_t i = 0; i < 20; ++i) {
        if ((i + l + h) % 3 == 0) first.push_back(i);
        if ((i + l + h) % 3 == 1 && i < 10) second.push_back(i);
      }
      for (const auto* idx : {&first, &second}) {
        ASSERT_EQ(heed_kv_cache_demote(cc, l, h, idx->data(), std::int64_t(idx->size())),
                  HEED_STATUS_OK);
        ASSERT_EQ(cache.demote(l, h, idx->data(), std::int64_t(idx->size())), heed::status::ok);
      }
    }
  for (int l = 0; l < kLayers; ++l)
    for (int h = 0; h < kHkv; ++h) {
      std::int64_t len = 0, low = -1;
      ASSERT_EQ(heed_kv_cache_length(cc, l, h, &len), HEED_STATUS_OK);
      ASSERT_EQ(heed_kv_cache_low_length(cc, l, h, &low), HEED_STATUS_OK);
      EXPECT_EQ(len, cache.length(l, h));
      EXPECT_EQ(low, cache.low_length(l, h));
      EXPECT_GT(low, 0);
      std::vector<std::uint8_t> tiers(static_cast<std::size_t>(len));
      ASSERT_EQ(heed_kv_cache_tiers(cc, l, h, tiers.data(), tiers.size()), HEED_STATUS_OK);
      EXPECT_EQ(tiers, std::vector<std::uint8_t>(cache.tiers(l, h), cache.tiers(l, h) + len));
      std::vector<std::int64_t> pos(static_cast<std::size_t>(len));
      ASSERT_EQ(heed_kv_cache_positions(cc, l, h, pos.data(), len), HEED_STATUS_OK);
      EXPECT_EQ(pos, std::vector<std::int64_t>(cache.positions(l, h), cache.positions(l, h) + len));
      for (int which = 0; which < 2; ++which) {
        std::vector<float> a(std::size_t(len * kD)), b(a.size());
        ASSERT_EQ(heed_kv_cache_gather_float(cc, l, h, which, a.data(), a.size()), HEED_STATUS_OK);
        ASSERT_EQ(cache.gather_float(l, h, which, b.data(), b.size()), heed::status::ok);
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
      }
      // Raw rows exist for one row format only.
      std::vector<unsigned char> raw(std::size_t(len) * kD * 2);
      EXPECT_EQ(heed_kv_cache_read_rows(cc, l, h, raw.data(), raw.size(), nullptr, 0),
                HEED_STATUS_UNSUPPORTED_DTYPE);
    }
  std::size_t used = 0;
  ASSERT_EQ(heed_kv_cache_bytes_used(cc, &used), HEED_STATUS_OK);
  EXPECT_EQ(used, cache.bytes_used());
  // An untiered cache: every entry is high; an empty head needs no buffer.
  fixture f;
  std::vector<float> o;
  ASSERT_EQ(f.step(0, 0, 3, o), HEED_STATUS_OK);
  std::uint8_t tiers[3] = {7, 7, 7};
  EXPECT_EQ(heed_kv_cache_tiers(f.cache, 0, 1, tiers, 3), HEED_STATUS_OK);
  EXPECT_EQ(tiers[0] + tiers[1] + tiers[2], 0);
  std::int64_t low = -1;
  EXPECT_EQ(heed_kv_cache_low_length(f.cache, 0, 1, &low), HEED_STATUS_OK);
  EXPECT_EQ(low, 0);
  EXPECT_EQ(heed_kv_cache_tiers(f.cache, 1, 0, nullptr, 0), HEED_STATUS_OK);
  EXPECT_EQ(heed_kv_cache_gather_float(f.cache, 1, 0, 0, nullptr, 0), HEED_STATUS_OK);
  EXPECT_EQ(heed_kv_cache_destroy(cc), HEED_STATUS_OK);
}

// Bad arguments of the demotion functions and settings: statuses, and nothing changes.
TEST(CApiCache, TieredBadArguments) {
  heed_kv_cache_config c;
  ASSERT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
  c.kv_heads = kHkv;
  c.head_dim = kD;
  c.dtype = HEED_DTYPE_F16;
  c.score_channels = 1;
  c.tiered = 1;
  heed_kv_cache* const sentinel = reinterpret_cast<heed_kv_cache*>(&c);
  heed_kv_cache* cc = sentinel;
  c.page_rows = 16;  // contiguous only
  EXPECT_EQ(heed_kv_cache_create(&c, &cc), HEED_STATUS_INVALID_ARGUMENT);
  c.page_rows = 0;
  c.low_type = HEED_DTYPE_F32;  // not smaller than f16
  EXPECT_EQ(heed_kv_cache_create(&c, &cc), HEED_STATUS_INVALID_ARGUMENT);
  int bad_type = 99;
  std::memcpy(&c.low_type, &bad_type, sizeof bad_type);
  EXPECT_EQ(heed_kv_cache_create(&c, &cc), HEED_STATUS_UNSUPPORTED_DTYPE);
  EXPECT_EQ(cc, sentinel);
  c.low_type = HEED_DTYPE_Q4;
  ASSERT_EQ(heed_kv_cache_create(&c, &cc), HEED_STATUS_OK);
  const tokens t = make_tokens(8, 41);
  const heed_tensor k = c_view(t.k, t.n, kHkv, 0, 0, t.n), v = c_view(t.v, t.n, kHkv, 0, 0, t.n);
  ASSERT_EQ(heed_kv_cache_append(cc, 0, &k, &v, nullptr), HEED_STATUS_OK);
  const std::int32_t idx[] = {1, 3};
  ASSERT_EQ(heed_kv_cache_demote(cc, 0, 0, idx, 2), HEED_STATUS_OK);
  auto state = [&] {
    std::vector<float> r(std::size_t(8 * kD));
    EXPECT_EQ(heed_kv_cache_gather_float(cc, 0, 0, 0, r.data(), r.size()), HEED_STATUS_OK);
    std::uint8_t tiers[8];
    EXPECT_EQ(heed_kv_cache_tiers(cc, 0, 0, tiers, 8), HEED_STATUS_OK);
    r.insert(r.end(), tiers, tiers + 8);
    return r;
  };
  const std::vector<float> before = state();
  const std::int32_t already_low[] = {3, 5}, descending[] = {5, 2}, out_of_range[] = {2, 8},
                     negative[] = {-1};
  EXPECT_EQ(heed_kv_cache_demote(nullptr, 0, 0, idx, 2), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, nullptr, 2), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_demote(cc, 1, 0, idx, 2), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, kHkv, idx, 2), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, idx, -1), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, idx, 9), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, already_low, 2), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, descending, 2), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, out_of_range, 2), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, negative, 1), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_demote(cc, 0, 0, nullptr, 0), HEED_STATUS_OK);
  EXPECT_EQ(state(), before);
  std::int64_t low = -1;
  EXPECT_EQ(heed_kv_cache_low_length(nullptr, 0, 0, &low), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_low_length(cc, 0, 0, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_low_length(cc, -1, 0, &low), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(low, -1);
  std::uint8_t tiers[8];
  std::vector<float> rows(std::size_t(8 * kD));
  EXPECT_EQ(heed_kv_cache_tiers(nullptr, 0, 0, tiers, 8), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_tiers(cc, 0, 0, nullptr, 8), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_tiers(cc, 0, 0, tiers, 7), HEED_STATUS_WORKSPACE_TOO_SMALL);
  EXPECT_EQ(heed_kv_cache_tiers(cc, 0, 5, tiers, 8), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_gather_float(nullptr, 0, 0, 0, rows.data(), rows.size()),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_gather_float(cc, 0, 0, 0, nullptr, rows.size()),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_gather_float(cc, 0, 0, 2, rows.data(), rows.size()),
            HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_gather_float(cc, 0, 0, 0, rows.data(), rows.size() - 1),
            HEED_STATUS_WORKSPACE_TOO_SMALL);
  EXPECT_EQ(heed_kv_cache_gather_float(cc, 3, 0, 0, rows.data(), rows.size()),
            HEED_STATUS_INVALID_ARGUMENT);
  // Loop settings: defaults, and refusals.
  heed_eviction_config e;
  ASSERT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
  EXPECT_EQ(e.high_budget, -1);
  EXPECT_EQ(e.budget_bytes, 0u);
  heed_eviction_loop* const no_loop = reinterpret_cast<heed_eviction_loop*>(&e);
  heed_eviction_loop* loop = no_loop;
  e.budget = 8;
  e.high_budget = 9;  // above the budget
  EXPECT_EQ(heed_eviction_loop_create(cc, "h2o", nullptr, 0, &e, kHq, &loop),
            HEED_STATUS_INVALID_ARGUMENT);
  e.high_budget = -2;
  EXPECT_EQ(heed_eviction_loop_create(cc, "h2o", nullptr, 0, &e, kHq, &loop),
            HEED_STATUS_INVALID_ARGUMENT);
  e.high_budget = 4;
  e.budget_bytes = 4096;  // with an entry budget too
  EXPECT_EQ(heed_eviction_loop_create(cc, "h2o", nullptr, 0, &e, kHq, &loop),
            HEED_STATUS_INVALID_ARGUMENT);
  e.budget = 0;
  e.budget_bytes = 100;  // less than the high entries take
  EXPECT_EQ(heed_eviction_loop_create(cc, "h2o", nullptr, 0, &e, kHq, &loop),
            HEED_STATUS_INVALID_ARGUMENT);
  fixture untiered;
  e.budget = 8;
  e.budget_bytes = 0;
  EXPECT_EQ(heed_eviction_loop_create(untiered.cache, "h2o", nullptr, 0, &e, kHq, &loop),
            HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(loop, no_loop);
  // budget_bytes becomes the budget the C++ loop chooses.
  e.budget = 0;
  e.budget_bytes = 4096;
  ASSERT_EQ(heed_eviction_loop_create(cc, "h2o", nullptr, 0, &e, kHq, &loop), HEED_STATUS_OK);
  heed::kv_cache same;
  heed::kv_cache_config sc;
  sc.kv_heads = kHkv;
  sc.head_dim = kD;
  sc.type = heed::dtype::f16;
  sc.score_channels = 1;
  sc.tiered = true;
  ASSERT_EQ(same.init(sc), heed::status::ok);
  heed::eviction_loop cpp_loop;
  heed::eviction_config ce;
  ce.high_budget = 4;
  ce.budget_bytes = 4096;
  ASSERT_EQ(cpp_loop.init(&same, heed::h2o_policy{}, ce, kHq), heed::status::ok);
  std::int64_t got = 0;
  EXPECT_EQ(heed_eviction_loop_budget(loop, 0, &got), HEED_STATUS_OK);
  EXPECT_EQ(got, cpp_loop.config().budget);
  EXPECT_GT(got, 4);
  EXPECT_EQ(heed_eviction_loop_destroy(loop), HEED_STATUS_OK);
  EXPECT_EQ(heed_kv_cache_destroy(cc), HEED_STATUS_OK);
}

TEST(CApiCache, UnknownPolicyAndBadParameters) {
  fixture f;
  heed_eviction_config e;
  EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
  e.budget = 4;
  heed_eviction_loop* const sentinel = reinterpret_cast<heed_eviction_loop*>(&e);
  heed_eviction_loop* out = sentinel;
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "no_such_policy", nullptr, 0, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param unknown[] = {{"sinkz", 4}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", unknown, 1, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param bad_window[] = {{"window", 0}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "snapkv", bad_window, 1, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param not_integer[] = {{"sinks", 2.5}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "knorm", not_integer, 1, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param twice[] = {{"lag", 8}, {"lag", 16}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "lagkv", twice, 2, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param nan[] = {{"lambda", std::nan("")}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "a2sf", nan, 1, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param null_name[] = {{nullptr, 1}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", null_name, 1, &e, kHq, &out),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", nullptr, 1, &e, kHq, &out),
            HEED_STATUS_NULL_POINTER);
  // A parameter of another policy, and two selection wrappers.
  const heed_policy_param foreign[] = {{"lag", 8}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", foreign, 1, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  const heed_policy_param two[] = {{"coverage", 0.9}, {"threshold_tau", 0.1}};
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "tova", two, 2, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  // Bad budgets and shapes.
  e.budget = -1;
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", nullptr, 0, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  e.budget = 4;
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", nullptr, 0, &e, 3, &out),
            HEED_STATUS_SHAPE_MISMATCH);
  EXPECT_EQ(out, sentinel);
  // A cache without the score channel H2O accumulates into.
  heed_kv_cache_config c;
  EXPECT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
  c.head_dim = kD;
  c.kv_heads = kHkv;
  heed_kv_cache* bare = nullptr;
  ASSERT_EQ(heed_kv_cache_create(&c, &bare), HEED_STATUS_OK);
  EXPECT_EQ(heed_eviction_loop_create(bare, "h2o", nullptr, 0, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  int channels = -1;
  EXPECT_EQ(heed_policy_channels("h2o", nullptr, 0, &channels), HEED_STATUS_OK);
  EXPECT_EQ(channels, 1);
  EXPECT_EQ(heed_policy_channels("knorm", nullptr, 0, &channels), HEED_STATUS_OK);
  EXPECT_EQ(channels, 0);
  EXPECT_EQ(heed_eviction_loop_create(bare, "knorm", nullptr, 0, &e, kHq, &out), HEED_STATUS_OK);
  EXPECT_EQ(heed_eviction_loop_destroy(out), HEED_STATUS_OK);
  EXPECT_EQ(heed_kv_cache_destroy(bare), HEED_STATUS_OK);
  // Callback policies: a null function, a bad mode.
  heed_callback_policy cb;
  EXPECT_EQ(heed_callback_policy_init(&cb), HEED_STATUS_OK);
  out = sentinel;
  EXPECT_EQ(heed_eviction_loop_create_callback(f.cache, &cb, &e, kHq, &out),
            HEED_STATUS_NULL_POINTER);
  cb.fn = test_score;
  cb.accumulate_mode = 3;
  EXPECT_EQ(heed_eviction_loop_create_callback(f.cache, &cb, &e, kHq, &out),
            HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(out, sentinel);
}

TEST(CApiCache, NullHandlesAndPointers) {
  fixture f;
  std::int64_t n = -1;
  std::size_t b = 0;
  const char* name = nullptr;
  heed_kv_cache_config c;
  heed_eviction_config e;
  EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
  heed_kv_cache* cache_out = nullptr;
  heed_eviction_loop* loop_out = nullptr;
  EXPECT_EQ(heed_kv_cache_config_init(nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_create(nullptr, &cache_out), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_get_config(nullptr, &c), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_length(nullptr, 0, 0, &n), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_length(f.cache, 0, 0, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_row_bytes(nullptr, &b), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_bytes_used(nullptr, &b), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_bytes_reserved(f.cache, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_positions(nullptr, 0, 0, nullptr, 0), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_read_rows(f.cache, 0, 0, nullptr, 0, nullptr, 0),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_clear(nullptr, -1), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_shrink_to_fit(nullptr, 0), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_append(nullptr, 0, nullptr, nullptr, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_kv_cache_append(f.cache, 0, nullptr, nullptr, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_create(nullptr, "h2o", nullptr, 0, &e, kHq, &loop_out),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_create(f.cache, nullptr, nullptr, 0, &e, kHq, &loop_out),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", nullptr, 0, nullptr, kHq, &loop_out),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_create(f.cache, "h2o", nullptr, 0, &e, kHq, nullptr),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_create_callback(f.cache, nullptr, &e, kHq, &loop_out),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_step(nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_step(f.loop, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr),
            HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_evict_now(nullptr, 0), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_evict_to(nullptr, 0, 1), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_budget(nullptr, 0, &n), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_budget(f.loop, 0, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_eviction_loop_policy_name(nullptr, &name), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_policy_count(nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_policy_name(0, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_policy_channels(nullptr, nullptr, 0, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_pyramid_budgets(2, 8, 2.0, 1, nullptr), HEED_STATUS_NULL_POINTER);
  heed_thread_pool* pool = nullptr;
  heed_executor ex{};
  EXPECT_EQ(heed_thread_pool_create(1, nullptr), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_thread_pool_create(-1, &pool), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_thread_pool_create(1025, &pool), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_thread_pool_executor(nullptr, &ex), HEED_STATUS_NULL_POINTER);
  EXPECT_EQ(heed_thread_pool_destroy(nullptr), HEED_STATUS_OK);
  EXPECT_EQ(pool, nullptr);
  EXPECT_EQ(heed_kv_cache_destroy(nullptr), HEED_STATUS_OK);
  EXPECT_EQ(heed_eviction_loop_destroy(nullptr), HEED_STATUS_OK);
  EXPECT_EQ(cache_out, nullptr);
  EXPECT_EQ(loop_out, nullptr);
  // Ranges: layers, heads, channels, policy indices.
  EXPECT_EQ(heed_kv_cache_length(f.cache, kLayers, 0, &n), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_length(f.cache, 0, -1, &n), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_read_scores(f.cache, 0, 0, 1, nullptr, 0), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_kv_cache_clear(f.cache, kLayers), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_eviction_loop_budget(f.loop, -1, &n), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(heed_eviction_loop_evict_to(f.loop, 0, -1), HEED_STATUS_INVALID_ARGUMENT);
  int count = 0;
  EXPECT_EQ(heed_policy_count(&count), HEED_STATUS_OK);
  EXPECT_EQ(heed_policy_name(count, &name), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(n, -1);
  EXPECT_EQ(name, nullptr);
  EXPECT_EQ(heed_kv_cache_config_init(&c), HEED_STATUS_OK);
  EXPECT_EQ(heed_kv_cache_create(&c, &cache_out), HEED_STATUS_INVALID_ARGUMENT);  // head_dim 0
  c.head_dim = kD;
  std::int32_t bad_dtype = 42;
  std::memcpy(&c.dtype, &bad_dtype, sizeof bad_dtype);
  EXPECT_EQ(heed_kv_cache_create(&c, &cache_out), HEED_STATUS_UNSUPPORTED_DTYPE);
  c.dtype = HEED_DTYPE_Q8;
  c.group = 24;  // does not divide 64
  EXPECT_EQ(heed_kv_cache_create(&c, &cache_out), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(cache_out, nullptr);
}

TEST(CApiCache, FailedCallsChangeNothing) {
  for (std::int64_t page_rows : {std::int64_t(0), std::int64_t(16)}) {
    fixture f(page_rows);
    std::vector<float> o;
    for (int l = 0; l < kLayers; ++l) ASSERT_EQ(f.step(l, 0, 6, o), HEED_STATUS_OK);
    ASSERT_EQ(f.step(0, 6, 1, o), HEED_STATUS_OK);  // decode: over budget, evicts
    const std::vector<std::int64_t> before = f.state();

    // Mismatched shapes in a step that would evict first: nothing is evicted or appended.
    heed_tensor k = c_view(f.t.k, f.t.n, kHkv, 0, 7, 1);
    k.heads = 1;
    EXPECT_EQ(f.step(0, 7, 1, o, &k), HEED_STATUS_SHAPE_MISMATCH);
    k = c_view(f.t.k, f.t.n, kHkv, 0, 7, 1);
    k.dim = 32;
    k.head_stride = 32;
    EXPECT_EQ(f.step(0, 7, 1, o, &k), HEED_STATUS_SHAPE_MISMATCH);
    k = c_view(f.t.k, f.t.n, kHkv, 0, 7, 1);
    k.dtype = static_cast<heed_dtype>(HEED_DTYPE_Q4);
    EXPECT_EQ(f.step(0, 7, 1, o, &k), HEED_STATUS_UNSUPPORTED_DTYPE);
    k = c_view(f.t.k, f.t.n, kHkv, 0, 7, 1);
    k.data = nullptr;
    EXPECT_EQ(f.step(0, 7, 1, o, &k), HEED_STATUS_NULL_POINTER);
    {
      const heed_tensor q = c_view(f.t.q, f.t.n, kHq, 0, 7, 1);
      heed_tensor qh = q;
      qh.heads = 2;
      const heed_tensor kk = c_view(f.t.k, f.t.n, kHkv, 0, 7, 1);
      const heed_tensor v = c_view(f.t.v, f.t.n, kHkv, 0, 7, 1);
      std::vector<float> out(std::size_t(kHq * kD), 0.f);
      heed_mutable_tensor om{out.data(), HEED_DTYPE_F32, 1, kHq, kD, kHq * kD, kD};
      EXPECT_EQ(heed_eviction_loop_step(f.loop, 0, &qh, &kk, &v, &om, nullptr, nullptr, nullptr),
                HEED_STATUS_SHAPE_MISMATCH);
      heed_mutable_tensor bad_o = om;
      bad_o.dtype = HEED_DTYPE_F16;
      EXPECT_EQ(heed_eviction_loop_step(f.loop, 0, &q, &kk, &v, &bad_o, nullptr, nullptr, nullptr),
                HEED_STATUS_UNSUPPORTED_DTYPE);
      bad_o = om;
      bad_o.seq = 2;
      EXPECT_EQ(heed_eviction_loop_step(f.loop, 0, &q, &kk, &v, &bad_o, nullptr, nullptr, nullptr),
                HEED_STATUS_SHAPE_MISMATCH);
      EXPECT_EQ(
          heed_eviction_loop_step(f.loop, kLayers, &q, &kk, &v, &om, nullptr, nullptr, nullptr),
          HEED_STATUS_INVALID_ARGUMENT);
      heed_executor ex{0, nullptr, nullptr};
      EXPECT_EQ(heed_eviction_loop_step(f.loop, 0, &q, &kk, &v, &om, &ex, nullptr, nullptr),
                HEED_STATUS_NULL_POINTER);
      for (float x : out) EXPECT_EQ(x, 0.f);
    }
    EXPECT_EQ(f.state(), before);

    // Appends: positions not ascending, a wrong head count, a layer out of range.
    const heed_tensor ka = c_view(f.t.k, f.t.n, kHkv, 1, 6, 2);
    const heed_tensor va = c_view(f.t.v, f.t.n, kHkv, 1, 6, 2);
    const int64_t back[] = {100, 3};
    EXPECT_EQ(heed_kv_cache_append(f.cache, 1, &ka, &va, back), HEED_STATUS_INVALID_ARGUMENT);
    const int64_t old[] = {2, 200};  // below the heads' last positions
    EXPECT_EQ(heed_kv_cache_append(f.cache, 1, &ka, &va, old), HEED_STATUS_INVALID_ARGUMENT);
    heed_tensor k1 = ka;
    k1.heads = 1;
    EXPECT_EQ(heed_kv_cache_append(f.cache, 1, &k1, &va, nullptr), HEED_STATUS_SHAPE_MISMATCH);
    EXPECT_EQ(heed_kv_cache_append(f.cache, -1, &ka, &va, nullptr), HEED_STATUS_INVALID_ARGUMENT);
    // Buffers too small for the copies.
    std::int64_t len = 0;
    ASSERT_EQ(heed_kv_cache_length(f.cache, 0, 0, &len), HEED_STATUS_OK);
    std::vector<std::int64_t> pos(std::size_t(len), -5);
    EXPECT_EQ(heed_kv_cache_positions(f.cache, 0, 0, pos.data(), len - 1),
              HEED_STATUS_WORKSPACE_TOO_SMALL);
    EXPECT_EQ(pos[0], -5);
    std::vector<float> rows(std::size_t(len * kD));
    EXPECT_EQ(heed_kv_cache_read_rows(f.cache, 0, 0, rows.data(), rows.size() * 4 - 1, nullptr, 0),
              HEED_STATUS_WORKSPACE_TOO_SMALL);
    // A callback that fails aborts the eviction before anything is evicted.
    EXPECT_EQ(f.state(), before);
  }
}

heed_status failing_score(void* user, const heed_policy_head*, float*) {
  ++*static_cast<int*>(user);
  return HEED_STATUS_INVALID_ARGUMENT;
}

TEST(CApiCache, FailingCallbackEvictsNothing) {
  fixture f;
  heed_callback_policy cb;
  EXPECT_EQ(heed_callback_policy_init(&cb), HEED_STATUS_OK);
  int calls = 0;
  cb.fn = failing_score;
  cb.user = &calls;
  heed_eviction_config e;
  EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
  e.budget = 4;
  heed_eviction_loop* loop = nullptr;
  ASSERT_EQ(heed_eviction_loop_create_callback(f.cache, &cb, &e, kHq, &loop), HEED_STATUS_OK);
  const heed_tensor q = c_view(f.t.q, f.t.n, kHq, 0, 0, 4);
  const heed_tensor k = c_view(f.t.k, f.t.n, kHkv, 0, 0, 4);
  const heed_tensor v = c_view(f.t.v, f.t.n, kHkv, 0, 0, 4);
  std::vector<float> o(std::size_t(4 * kHq * kD));
  heed_mutable_tensor om{o.data(), HEED_DTYPE_F32, 4, kHq, kD, kHq * kD, kD};
  ASSERT_EQ(heed_eviction_loop_step(loop, 0, &q, &k, &v, &om, nullptr, nullptr, nullptr),
            HEED_STATUS_OK);  // exactly the budget: no eviction
  const std::vector<std::int64_t> before = f.state();
  const heed_tensor q1 = c_view(f.t.q, f.t.n, kHq, 0, 4, 1);
  const heed_tensor k1 = c_view(f.t.k, f.t.n, kHkv, 0, 4, 1);
  const heed_tensor v1 = c_view(f.t.v, f.t.n, kHkv, 0, 4, 1);
  om.seq = 1;
  EXPECT_EQ(heed_eviction_loop_step(loop, 0, &q1, &k1, &v1, &om, nullptr, nullptr, nullptr),
            HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_GT(calls, 0);
  EXPECT_EQ(f.state(), before);
  EXPECT_EQ(heed_eviction_loop_evict_to(loop, 0, 2), HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(f.state(), before);
  const char* name = nullptr;
  EXPECT_EQ(heed_eviction_loop_policy_name(loop, &name), HEED_STATUS_OK);
  EXPECT_STREQ(name, "callback");
  EXPECT_EQ(heed_eviction_loop_destroy(loop), HEED_STATUS_OK);
}

heed_status newest_score(void*, const heed_policy_head* h, float* out) {
  for (std::int64_t j = 0; j < h->length; ++j) out[j] = float(j);
  return HEED_STATUS_OK;
}
// The gate: KV head 1 keeps out odd positions; it sees the token's key row.
heed_status odd_gate(void* user, const heed_admit_head* h, int* admit) {
  ++*static_cast<int*>(user);
  if (h->key == nullptr || h->dtype != HEED_DTYPE_F32 || h->head_dim != kD)
    return HEED_STATUS_INVALID_ARGUMENT;
  *admit = h->head != 1 || h->position % 2 == 0;
  return HEED_STATUS_OK;
}

TEST(CApiCache, CallbackWriteGate) {
  fixture f;
  heed_callback_policy cb;
  EXPECT_EQ(heed_callback_policy_init(&cb), HEED_STATUS_OK);
  EXPECT_EQ(cb.admit, nullptr);  // no gate by default
  int calls = 0;
  cb.fn = newest_score;
  cb.admit = odd_gate;
  cb.user = &calls;
  heed_eviction_config e;
  EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
  heed_eviction_loop* loop = nullptr;
  ASSERT_EQ(heed_eviction_loop_create_callback(f.cache, &cb, &e, kHq, &loop), HEED_STATUS_OK);
  const heed_tensor q = c_view(f.t.q, f.t.n, kHq, 0, 0, 6);
  const heed_tensor k = c_view(f.t.k, f.t.n, kHkv, 0, 0, 6);
  const heed_tensor v = c_view(f.t.v, f.t.n, kHkv, 0, 0, 6);
  std::vector<float> o(std::size_t(6 * kHq * kD));
  heed_mutable_tensor om{o.data(), HEED_DTYPE_F32, 6, kHq, kD, kHq * kD, kD};
  ASSERT_EQ(heed_eviction_loop_step(loop, 0, &q, &k, &v, &om, nullptr, nullptr, nullptr),
            HEED_STATUS_OK);
  EXPECT_EQ(calls, 6 * kHkv);  // every token, every KV head
  std::int64_t len0 = 0, len1 = 0;
  ASSERT_EQ(heed_kv_cache_length(f.cache, 0, 0, &len0), HEED_STATUS_OK);
  ASSERT_EQ(heed_kv_cache_length(f.cache, 0, 1, &len1), HEED_STATUS_OK);
  EXPECT_EQ(len0, 6);
  EXPECT_EQ(len1, 3);
  std::vector<std::int64_t> pos(3);
  ASSERT_EQ(heed_kv_cache_positions(f.cache, 0, 1, pos.data(), 3), HEED_STATUS_OK);
  EXPECT_EQ(pos, (std::vector<std::int64_t>{0, 2, 4}));
  EXPECT_EQ(heed_eviction_loop_destroy(loop), HEED_STATUS_OK);
}

TEST(CApiCache, QuantizedCacheRefusesNonFiniteRowsUnchanged) {
  fixture f(0, HEED_DTYPE_Q8);
  std::vector<float> o;
  ASSERT_EQ(f.step(0, 0, 3, o), HEED_STATUS_OK);
  std::int64_t len0 = 0;
  ASSERT_EQ(heed_kv_cache_length(f.cache, 0, 1, &len0), HEED_STATUS_OK);
  std::vector<float> k(std::size_t(kHkv * kD), 1.f), v(k.size(), 1.f);
  k[std::size_t(kD + 3)] = INFINITY;  // head 1
  const heed_tensor kt{k.data(), HEED_DTYPE_F32, 1, kHkv, kD, kHkv * kD, kD};
  const heed_tensor vt{v.data(), HEED_DTYPE_F32, 1, kHkv, kD, kHkv * kD, kD};
  EXPECT_EQ(heed_kv_cache_append(f.cache, 0, &kt, &vt, nullptr), HEED_STATUS_INVALID_ARGUMENT);
  std::int64_t len = 0;
  ASSERT_EQ(heed_kv_cache_length(f.cache, 0, 0, &len), HEED_STATUS_OK);
  EXPECT_EQ(len, len0);
  // The same row through a step (which would evict first at this budget).
  ASSERT_EQ(f.step(0, 3, 1, o), HEED_STATUS_OK);
  const std::vector<std::int64_t> before = f.state();
  std::vector<float> q(std::size_t(kHq * kD), 0.5f), out(q.size());
  const heed_tensor qt{q.data(), HEED_DTYPE_F32, 1, kHq, kD, kHq * kD, kD};
  heed_mutable_tensor om{out.data(), HEED_DTYPE_F32, 1, kHq, kD, kHq * kD, kD};
  EXPECT_EQ(heed_eviction_loop_step(f.loop, 0, &qt, &kt, &vt, &om, nullptr, nullptr, nullptr),
            HEED_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(f.state(), before);
}

TEST(CApiCache, VersionsAndBudgets) {
  EXPECT_EQ(heed_abi_version(), HEED_ABI_VERSION);
  std::int64_t b[4];
  ASSERT_EQ(heed_pyramid_budgets(4, 8, 2.0, 1, b), HEED_STATUS_OK);
  EXPECT_EQ(b[0] + b[1] + b[2] + b[3], 32);
  EXPECT_GE(b[0], b[3]);
  EXPECT_EQ(heed_pyramid_budgets(4, 8, 0.5, 1, b), HEED_STATUS_INVALID_ARGUMENT);
  // Per-layer budgets through the loop's config.
  fixture f;
  heed_eviction_config e;
  EXPECT_EQ(heed_eviction_config_init(&e), HEED_STATUS_OK);
  const std::int64_t per_layer[kLayers] = {6, 4, 2};
  e.layer_budgets = per_layer;
  heed_eviction_loop* loop = nullptr;
  ASSERT_EQ(heed_eviction_loop_create(f.cache, "pyramidkv", nullptr, 0, &e, kHq, &loop),
            HEED_STATUS_OK);
  for (int l = 0; l < kLayers; ++l) {
    std::int64_t got = 0;
    EXPECT_EQ(heed_eviction_loop_budget(loop, l, &got), HEED_STATUS_OK);
    EXPECT_EQ(got, per_layer[l]);
  }
  const char* name = nullptr;
  EXPECT_EQ(heed_eviction_loop_policy_name(loop, &name), HEED_STATUS_OK);
  EXPECT_STREQ(name, "snapkv");
  heed_eviction_loop_destroy(loop);
}

}  // namespace
