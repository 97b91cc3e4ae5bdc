// The dense decode kernel over paged K/V (dense_params::pages): pages of any length, in the
// llama.cpp [seq, heads, d] layout, against the float64 reference on every compiled ISA, and
// the page table's validation.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "reference/naive_attention.hpp"

namespace {

using heed::status;

struct paged_kv {
  std::vector<std::vector<heed::f16>> k, v;  // one buffer per page, [len, hkv, d]
  std::vector<heed::kv_page> pages;
};

// Cuts [L, hkv, d] rows into pages of the given lengths (copies, so pages are apart in memory).
paged_kv make_pages(const std::vector<heed::f16>& k, const std::vector<heed::f16>& v,
                    const std::vector<std::int64_t>& lens, std::int64_t row) {
  paged_kv p;
  std::int64_t begin = 0;
  for (std::int64_t n : lens) {
    p.k.emplace_back(k.begin() + begin * row, k.begin() + (begin + n) * row);
    p.v.emplace_back(v.begin() + begin * row, v.begin() + (begin + n) * row);
    begin += n;
  }
  for (std::size_t i = 0; i < lens.size(); ++i) {
    p.pages.push_back({p.k[i].data(), p.v[i].data(), 0, lens[i]});
    if (i > 0) p.pages[i].begin = p.pages[i - 1].begin + lens[i - 1];
  }
  return p;
}

TEST(DensePages, DecodeMatchesReferenceOnEveryIsa) {
  const int hq = 8, hkv = 2;
  const std::int64_t d = 64;
  const std::vector<std::vector<std::int64_t>> layouts = {
      {300}, {1, 200, 0, 77, 5}, {64, 64, 64, 64, 1}, {1030, 900}};
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const auto& lens : layouts) {
    std::int64_t L = 0;
    for (auto n : lens) L += n;
    std::vector<float> q(std::size_t(hq * d));
    std::vector<heed::f16> k(std::size_t(L * hkv * d)), v(k.size());
    for (auto& x : q) x = nd(rng);
    for (auto& x : k) x = heed::from_float<heed::f16>(nd(rng));
    for (auto& x : v) x = heed::from_float<heed::f16>(nd(rng));
    const paged_kv pk = make_pages(k, v, lens, hkv * d);
    heed_ref::attention_problem rp;
    rp.lq = 1;
    rp.lk = L;
    rp.hq = hq;
    rp.hkv = hkv;
    rp.d = d;
    rp.resize();
    for (int h = 0; h < hq; ++h)
      for (std::int64_t e = 0; e < d; ++e) rp.q_at(0, h, e) = q[std::size_t(h * d + e)];
    for (std::int64_t j = 0; j < L; ++j)
      for (int h = 0; h < hkv; ++h)
        for (std::int64_t e = 0; e < d; ++e) {
          rp.k_at(j, h, e) = heed::to_float(k[std::size_t((j * hkv + h) * d + e)]);
          rp.v_at(j, h, e) = heed::to_float(v[std::size_t((j * hkv + h) * d + e)]);
        }
    const auto r = heed_ref::naive_attention(rp);
    for (heed::isa i : heed::platform_isas) {
      if (!heed::isa_available(i)) continue;
      for (int threads : {1, 2}) {
        std::vector<float> o(q.size()), lse(static_cast<std::size_t>(hq));
        heed::dense_params p;
        p.q = heed::make_view(q.data(), 1, hq, d);
        p.k = heed::make_view(pk.k[0].data(), L, hkv, d);
        p.v = heed::make_view(pk.v[0].data(), L, hkv, d);
        p.o = heed::make_mutable_view(o.data(), 1, hq, d);
        p.lse = lse.data();
        p.pages = pk.pages.data();
        p.n_pages = std::int64_t(pk.pages.size());
        heed::thread_pool_executor ex(threads);
        std::vector<char> ws(heed::dense_workspace_size(p, threads, i));
        ASSERT_EQ(heed::dense_attention(p, {ws.data(), ws.size()}, ex, i), status::ok);
        for (int h = 0; h < hq; ++h) {
          ASSERT_NEAR(lse[std::size_t(h)], r.lse_at(h, 0), 2e-5) << lens.size() << " pages";
          for (std::int64_t e = 0; e < d; ++e)
            ASSERT_NEAR(o[std::size_t(h * d + e)], r.o_at(0, h, e), 2e-5);
        }
      }
    }
  }
}

TEST(DensePages, BadPageTablesReturnStatus) {
  const std::int64_t d = 16;
  std::vector<float> q(2 * 2 * d, 0.5f), o(q.size()), k(10 * d, 0.25f), v(k.size(), 1.f);
  heed::kv_page pages[2] = {{k.data(), v.data(), 0, 6}, {k.data() + 6 * d, v.data() + 6 * d, 6, 4}};
  heed::dense_params p;
  p.q = heed::make_view(q.data(), 1, 2, d);
  p.k = heed::make_view(k.data(), 10, 1, d);
  p.v = heed::make_view(v.data(), 10, 1, d);
  p.o = heed::make_mutable_view(o.data(), 1, 2, d);
  p.pages = pages;
  p.n_pages = 2;
  std::vector<char> ws(heed::dense_workspace_size(p, 1) + 1);
  const heed::workspace w{ws.data(), ws.size()};
  ASSERT_EQ(heed::dense_attention(p, w), status::ok);
  EXPECT_NEAR(o[0], 1.f, 1e-6);  // every value row is 1
  auto bad = p;
  bad.n_pages = 0;  // a table without pages
  EXPECT_EQ(heed::dense_attention(bad, w), status::invalid_argument);
  bad = p;
  bad.pages = nullptr;  // pages announced, none given
  EXPECT_EQ(heed::dense_attention(bad, w), status::null_pointer);
  bad = p;
  bad.k.seq = bad.v.seq = 9;  // the pages hold 10 keys
  EXPECT_EQ(heed::dense_attention(bad, w), status::shape_mismatch);
  heed::kv_page gap[2] = {pages[0], pages[1]};
  gap[1].begin = 7;  // not consecutive
  bad = p;
  bad.pages = gap;
  EXPECT_EQ(heed::dense_attention(bad, w), status::invalid_argument);
  gap[1] = pages[1];
  gap[1].k = nullptr;
  EXPECT_EQ(heed::dense_attention(bad, w), status::null_pointer);
  gap[1] = pages[1];
  gap[1].len = -1;
  EXPECT_EQ(heed::dense_attention(bad, w), status::invalid_argument);
  bad = p;
  bad.q = heed::make_view(q.data(), 2, 2, d);  // pages are decode-only
  bad.o = heed::make_mutable_view(o.data(), 2, 2, d);
  EXPECT_EQ(heed::dense_attention(bad, w), status::invalid_argument);
}

}  // namespace
