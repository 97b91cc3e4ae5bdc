// Keep-set selection (heed/policy/select.hpp) against the naive reference in
// reference/naive_select.hpp: exact keep-sets, invariants on every result, bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "heed/policy/select.hpp"
#include "reference/naive_select.hpp"

namespace {

using heed::protect_spec;
using heed::status;
using idx_vec = std::vector<std::int64_t>;

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Score patterns.
enum class pattern { normal, ties, all_equal, all_nan, specials, masses, wide_masses };

std::vector<float> make_scores(std::int64_t n, pattern p, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> small(0, 4), pick(0, 9);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (auto& x : s) {
    switch (p) {
      case pattern::normal:
        x = nd(rng);
        break;
      case pattern::ties:
        x = float(small(rng)) - 2.f;
        break;
      case pattern::all_equal:
        x = 0.5f;
        break;
      case pattern::all_nan:
        x = pick(rng) < 5 ? kNaN : -kNaN;
        break;
      case pattern::specials: {
        const int k = pick(rng);
        x = k == 0   ? kNaN
            : k == 1 ? kInf
            : k == 2 ? -kInf
            : k == 3 ? 0.f
            : k == 4 ? -0.f
                     : float(small(rng));
        break;
      }
      case pattern::masses: {  // attention-like masses with zeros, negatives and NaN
        const int k = pick(rng);
        x = k == 0 ? 0.f : k == 1 ? -unit(rng) : k == 2 ? kNaN : unit(rng) * unit(rng);
        break;
      }
      case pattern::wide_masses: {  // huge, tiny and subnormal masses: the sums need exactness
        const int k = pick(rng);
        x = k < 2    ? std::ldexp(1.f + unit(rng), 100 + small(rng))
            : k < 4  ? std::numeric_limits<float>::denorm_min() * float(1 + small(rng))
            : k < 6  ? std::ldexp(unit(rng), -60)
            : k == 6 ? -kInf
                     : unit(rng);
        break;
      }
    }
  }
  return s;
}

// Checks the invariants of one keep-set and returns it as int64.
idx_vec check_keep_set(const std::vector<std::int32_t>& keep, std::int64_t n_keep, std::int64_t n,
                       const protect_spec& pr) {
  EXPECT_GE(n_keep, 0);
  EXPECT_LE(n_keep, n);
  idx_vec out;
  for (std::int64_t k = 0; k < n_keep && k < std::int64_t(keep.size()); ++k) {
    const std::int64_t i = keep[std::size_t(k)];
    EXPECT_GE(i, 0);
    EXPECT_LT(i, n);
    if (k > 0) {
      EXPECT_LT(keep[std::size_t(k - 1)], i) << "not sorted / unique at " << k;
    }
    out.push_back(i);
  }
  // Protected entries: all present when the count allows, else the sinks then the most recent.
  std::int64_t n_prot = 0;
  const idx_vec order = heed_ref::select_priority(std::vector<float>(std::size_t(n)), pr.n_sink,
                                                  pr.n_recent, &n_prot);
  for (std::int64_t k = 0; k < std::min(n_prot, n_keep); ++k)
    EXPECT_TRUE(std::binary_search(out.begin(), out.end(), order[std::size_t(k)]))
        << "protected " << order[std::size_t(k)] << " missing";
  return out;
}

// Runs f(keep, n_keep, scratch) twice with exactly sized buffers (keep: room for the documented
// bound cap on the count, at least 1 so that it is not null), checks invariants and
// determinism, returns the keep-set.
template <class F>
idx_vec run_head(std::int64_t n, std::int64_t cap, const protect_spec& pr, F&& f) {
  cap = std::min(cap, n);
  const std::size_t room = std::size_t(std::max<std::int64_t>(cap, 1));
  std::vector<std::int32_t> keep(room, -7), keep2(room, -9);
  std::vector<std::int32_t> scratch(std::size_t(heed::select_scratch_size(n)));
  std::int64_t n_keep = -1, n_keep2 = -2;
  EXPECT_EQ(f(keep.data(), &n_keep, scratch.data()), status::ok);
  EXPECT_EQ(f(keep2.data(), &n_keep2, scratch.data()), status::ok);
  EXPECT_LE(n_keep, cap);
  EXPECT_EQ(n_keep, n_keep2);
  for (std::int64_t k = 0; k < n_keep && k < std::int64_t(keep.size()); ++k)
    EXPECT_EQ(keep[std::size_t(k)], keep2[std::size_t(k)]);
  return check_keep_set(keep, n_keep, n, pr);
}

idx_vec top_k(const std::vector<float>& s, std::int64_t budget, const protect_spec& pr) {
  const std::int64_t n = std::int64_t(s.size());
  return run_head(n, budget, pr, [&](std::int32_t* keep, std::int64_t* nk, std::int32_t* scr) {
    return heed::select_top_k(s.data(), n, budget, pr, keep, nk, scr);
  });
}

idx_vec threshold(const std::vector<float>& s, float tau, std::int64_t mn, std::int64_t mx,
                  const protect_spec& pr) {
  const std::int64_t n = std::int64_t(s.size());
  return run_head(n, mx, pr, [&](std::int32_t* keep, std::int64_t* nk, std::int32_t* scr) {
    return heed::select_threshold(s.data(), n, tau, mn, mx, pr, keep, nk, scr);
  });
}

idx_vec coverage(const std::vector<float>& s, double gamma, std::int64_t mn, std::int64_t mx,
                 const protect_spec& pr) {
  const std::int64_t n = std::int64_t(s.size());
  return run_head(n, mx, pr, [&](std::int32_t* keep, std::int64_t* nk, std::int32_t* scr) {
    return heed::select_coverage(s.data(), n, gamma, mn, mx, pr, keep, nk, scr);
  });
}

const std::int64_t kLengths[] = {0, 1, 2, 7, 100, 5000, 70000};

std::vector<protect_spec> protections(std::int64_t n) {
  return {{0, 0}, {1, 0}, {0, 3}, {4, 16}, {n / 2 + 1, n / 2 + 1}, {n + 3, 0}};
}

// n - 16 and n - 17 straddle the few-drops path (one scan instead of a selection).
std::vector<std::int64_t> budgets(std::int64_t n) {
  return {0,
          1,
          n / 3,
          n > 0 ? n - 1 : 0,
          std::max<std::int64_t>(n - 16, 0),
          std::max<std::int64_t>(n - 17, 0),
          n,
          n + 5};
}

// ---------------------------------------------------------------------------------------------

TEST(SelectRanking, MatchesReferenceOnSpecialValues) {
  const float vals[] = {kNaN, -kNaN, -kInf, kInf, 0.f, -0.f, 1.f, -1.f, 1e-45f, -1e-45f, 3e38f};
  for (float a : vals)
    for (float b : vals)
      for (std::int64_t ia : {0, 5, 9})
        for (std::int64_t ib : {0, 5, 9})
          EXPECT_EQ(heed::ranks_above(a, ia, b, ib), heed_ref::select_ranks_above(a, ia, b, ib))
              << a << "@" << ia << " vs " << b << "@" << ib;
  EXPECT_TRUE(heed::ranks_above(-kInf, 0, kNaN, 9));
  EXPECT_TRUE(heed::ranks_above(1.f, 3, 1.f, 2));
  EXPECT_FALSE(heed::ranks_above(1.f, 3, 1.f, 3));
  EXPECT_TRUE(heed::ranks_above(kNaN, 4, kNaN, 3));
  EXPECT_TRUE(heed::ranks_above(0.f, 4, -0.f, 3));
  EXPECT_TRUE(heed::ranks_above(-0.f, 4, 0.f, 3));
}

TEST(SelectTopK, MatchesReferenceAcrossShapes) {
  const pattern pats[] = {pattern::normal, pattern::ties, pattern::all_equal, pattern::all_nan,
                          pattern::specials};
  for (std::int64_t n : kLengths) {
    const bool big = n > 1000;
    for (pattern p : pats) {
      for (std::uint32_t seed = 0; seed < (big ? 1u : 4u); ++seed) {
        const auto s = make_scores(n, p, seed * 31 + std::uint32_t(n));
        for (const auto& pr : protections(n)) {
          if (big && pr.n_sink != 0 && pr.n_sink != 4) continue;
          for (std::int64_t b : budgets(n)) {
            if (big && b != n / 3 && b != n - 1 && b != n - 16 && b != n - 17) continue;
            const idx_vec got = top_k(s, b, pr);
            ASSERT_EQ(got, heed_ref::select_top_k(s, b, pr.n_sink, pr.n_recent))
                << "n=" << n << " pattern=" << int(p) << " seed=" << seed << " budget=" << b
                << " sink=" << pr.n_sink << " recent=" << pr.n_recent;
            ASSERT_EQ(std::int64_t(got.size()), std::min(b, n));
          }
        }
      }
    }
  }
}

TEST(SelectTopK, ManySeedsSmall) {
  for (std::uint32_t seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    const std::int64_t n = std::uniform_int_distribution<std::int64_t>(0, 40)(rng);
    const auto s = make_scores(n, seed % 2 ? pattern::specials : pattern::ties, seed);
    const protect_spec pr{std::uniform_int_distribution<std::int64_t>(0, 6)(rng),
                          std::uniform_int_distribution<std::int64_t>(0, 6)(rng)};
    const std::int64_t b = std::uniform_int_distribution<std::int64_t>(0, n + 2)(rng);
    ASSERT_EQ(top_k(s, b, pr), heed_ref::select_top_k(s, b, pr.n_sink, pr.n_recent))
        << "seed " << seed;
  }
}

TEST(SelectTopK, HandPickedCases) {
  // Highest scores win; NaN loses to -inf; ties go to the higher index.
  const std::vector<float> s = {3.f, kNaN, -kInf, 3.f, 1.f, kInf, 1.f};
  EXPECT_EQ(top_k(s, 1, {}), (idx_vec{5}));
  EXPECT_EQ(top_k(s, 2, {}), (idx_vec{3, 5}));
  EXPECT_EQ(top_k(s, 3, {}), (idx_vec{0, 3, 5}));
  EXPECT_EQ(top_k(s, 4, {}), (idx_vec{0, 3, 5, 6}));
  EXPECT_EQ(top_k(s, 6, {}), (idx_vec{0, 2, 3, 4, 5, 6}));
  // Protection counts toward the budget.
  EXPECT_EQ(top_k(s, 3, {1, 1}), (idx_vec{0, 5, 6}));
  EXPECT_EQ(top_k(s, 3, {2, 0}), (idx_vec{0, 1, 5}));
  // Protection beyond the budget: sinks first, then the most recent.
  EXPECT_EQ(top_k(s, 3, {2, 3}), (idx_vec{0, 1, 6}));
  EXPECT_EQ(top_k(s, 2, {3, 3}), (idx_vec{0, 1}));
  EXPECT_EQ(top_k(s, 4, {0, 7}), (idx_vec{3, 4, 5, 6}));
  EXPECT_EQ(top_k(s, 0, {3, 3}), (idx_vec{}));
  // Overlapping protection covers everything.
  EXPECT_EQ(top_k(s, 7, {5, 5}), (idx_vec{0, 1, 2, 3, 4, 5, 6}));
}

TEST(SelectThreshold, MatchesReferenceWithClamps) {
  const pattern pats[] = {pattern::normal, pattern::ties, pattern::all_nan, pattern::specials};
  const float taus[] = {0.f, 0.7f, -1.f, -kInf, kInf, kNaN};
  for (std::int64_t n : kLengths) {
    const bool big = n > 1000;
    for (pattern p : pats) {
      if (big && p != pattern::normal && p != pattern::specials) continue;
      const auto s = make_scores(n, p, std::uint32_t(n) + 3);
      for (const auto& pr : protections(n)) {
        if (big && pr.n_sink != 4) continue;
        for (float tau : taus) {
          if (big && tau != 0.7f && tau != 0.f) continue;
          // No clamp, clamp up (min), clamp down (max), both, and beyond n.
          const std::int64_t clamps[][2] = {{0, n + 10},    {n / 2, n + 10}, {0, n / 5},
                                            {n / 4, n / 3}, {n + 2, n + 4},  {0, 0}};
          for (const auto& c : clamps) {
            if (big && tau != 0.7f && c[0] != n / 2 && c[1] != n / 5) continue;
            ASSERT_EQ(threshold(s, tau, c[0], c[1], pr),
                      heed_ref::select_threshold(s, tau, c[0], c[1], pr.n_sink, pr.n_recent))
                << "n=" << n << " pattern=" << int(p) << " tau=" << tau << " min=" << c[0]
                << " max=" << c[1] << " sink=" << pr.n_sink << " recent=" << pr.n_recent;
          }
        }
      }
    }
  }
}

TEST(SelectThreshold, HandPickedCases) {
  const std::vector<float> s = {0.9f, 0.1f, kNaN, 0.5f, 0.5f, 0.2f, 0.8f};
  EXPECT_EQ(threshold(s, 0.5f, 0, 100, {}), (idx_vec{0, 3, 4, 6}));
  EXPECT_EQ(threshold(s, 0.5f, 0, 100, {1, 1}), (idx_vec{0, 3, 4, 6}));
  EXPECT_EQ(threshold(s, 0.5f, 0, 100, {2, 0}), (idx_vec{0, 1, 3, 4, 6}));
  EXPECT_EQ(threshold(s, 0.5f, 6, 100, {}), (idx_vec{0, 1, 3, 4, 5, 6}));  // NaN added last
  EXPECT_EQ(threshold(s, 0.5f, 0, 2, {}), (idx_vec{0, 6}));
  EXPECT_EQ(threshold(s, 0.5f, 0, 3, {}), (idx_vec{0, 4, 6}));  // tie: higher index
  EXPECT_EQ(threshold(s, 0.5f, 0, 2, {0, 2}), (idx_vec{5, 6}));
  EXPECT_EQ(threshold(s, 0.5f, 0, 3, {0, 2}), (idx_vec{0, 5, 6}));
  EXPECT_EQ(threshold(s, kNaN, 0, 100, {}), (idx_vec{}));
  EXPECT_EQ(threshold(s, kNaN, 1, 100, {}), (idx_vec{0}));
  EXPECT_EQ(threshold(s, -kInf, 0, 100, {}), (idx_vec{0, 1, 3, 4, 5, 6}));
  EXPECT_EQ(threshold(s, 0.f, 9, 20, {}).size(), 7u);
}

TEST(SelectCoverage, MatchesReference) {
  const pattern pats[] = {pattern::masses, pattern::wide_masses, pattern::normal, pattern::all_nan,
                          pattern::ties};
  const double gammas[] = {0.0, 0.3, 0.9, 0.999, 1.0};
  for (std::int64_t n : kLengths) {
    const bool big = n > 1000;
    for (pattern p : pats) {
      for (std::uint32_t seed = 0; seed < (big ? 1u : 3u); ++seed) {
        const auto s = make_scores(n, p, std::uint32_t(n) * 7 + seed);
        for (const auto& pr : protections(n)) {
          if (big && pr.n_sink != 4) continue;
          for (double g : gammas) {
            if (big && g != 0.9 && g != 1.0) continue;
            const std::int64_t clamps[][2] = {{0, n + 10}, {n / 2, n + 10}, {0, n / 5}};
            for (const auto& c : clamps) {
              if (big && c[0] != 0 && g != 0.9) continue;
              ASSERT_EQ(coverage(s, g, c[0], c[1], pr),
                        heed_ref::select_coverage(s, g, c[0], c[1], pr.n_sink, pr.n_recent))
                  << "n=" << n << " pattern=" << int(p) << " seed=" << seed << " gamma=" << g
                  << " min=" << c[0] << " max=" << c[1] << " sink=" << pr.n_sink
                  << " recent=" << pr.n_recent;
            }
          }
        }
      }
    }
  }
}

TEST(SelectCoverage, HandPickedCases) {
  const std::vector<float> s = {0.1f, 0.4f, kNaN, 0.3f, -1.f, 0.2f, 0.f};
  EXPECT_EQ(coverage(s, 0.0, 0, 100, {}), (idx_vec{}));
  EXPECT_EQ(coverage(s, 0.39, 0, 100, {}), (idx_vec{1}));
  EXPECT_EQ(coverage(s, 0.41, 0, 100, {}), (idx_vec{1, 3}));
  EXPECT_EQ(coverage(s, 0.69, 0, 100, {}), (idx_vec{1, 3}));
  EXPECT_EQ(coverage(s, 0.71, 0, 100, {}), (idx_vec{1, 3, 5}));
  EXPECT_EQ(coverage(s, 1.0, 0, 100, {}), (idx_vec{0, 1, 3, 5}));  // no zero-mass entry
  EXPECT_EQ(coverage(s, 1.0, 0, 2, {}), (idx_vec{1, 3}));
  EXPECT_EQ(coverage(s, 0.39, 3, 100, {}), (idx_vec{1, 3, 5}));
  // Protected mass counts: the sink 0.1 and recent 0.0 + 0.2 cover 0.3 of 1.0.
  EXPECT_EQ(coverage(s, 0.29, 0, 100, {1, 2}), (idx_vec{0, 5, 6}));
  EXPECT_EQ(coverage(s, 0.31, 0, 100, {1, 2}), (idx_vec{0, 1, 5, 6}));
  // A set whose mass is exactly the target is enough (binary fractions, no rounding).
  const std::vector<float> e = {0.5f, 0.25f, 0.25f};
  EXPECT_EQ(coverage(e, 0.5, 0, 10, {}), (idx_vec{0}));
  EXPECT_EQ(coverage(e, 0.75, 0, 10, {}), (idx_vec{0, 2}));
  EXPECT_EQ(coverage(e, 0.5, 0, 10, {0, 2}), (idx_vec{1, 2}));
  // Zero total mass: only min_keep (best-ranked: 0.0 at 2, then -0.5 at 4; NaN last).
  const std::vector<float> z = {-1.f, kNaN, 0.f, -kInf, -0.5f};
  EXPECT_EQ(coverage(z, 1.0, 0, 100, {}), (idx_vec{}));
  EXPECT_EQ(coverage(z, 1.0, 2, 100, {}), (idx_vec{2, 4}));
  EXPECT_EQ(coverage(z, 0.5, 5, 100, {}).size(), 5u);
  // gamma 1 keeps every mass, even one below the rounding of the total; gamma < 1 compares
  // rounded sums: round(1e30 + 1e-30) == round(1e30).
  const std::vector<float> w = {1e30f, 1e-30f, 0.f};
  EXPECT_EQ(coverage(w, 1.0, 0, 10, {}), (idx_vec{0, 1}));
  EXPECT_EQ(coverage(w, 0.999999, 0, 10, {}), (idx_vec{0}));
  EXPECT_EQ(coverage(w, 0.5, 0, 10, {}), (idx_vec{0}));
}

TEST(SelectCoverage, ExactMassMatchesReferenceSum) {
  for (std::uint32_t seed = 0; seed < 60; ++seed) {
    std::mt19937 rng(seed);
    const std::int64_t n = std::uniform_int_distribution<std::int64_t>(1, 300)(rng);
    const auto s = make_scores(n, seed % 3 ? pattern::wide_masses : pattern::masses, seed);
    heed::select_detail::exact_mass a;
    heed_ref::select_fsum b;
    for (float x : s) {
      a.add(x);
      b.add(heed_ref::select_mass(x));
    }
    EXPECT_EQ(a.value(), b.value()) << "seed " << seed;
  }
  // 2^100 + 2^47 is a tie between two doubles (half an ulp): to even, unless anything lies
  // below (a bit far below, or just below the 64 bits the rounding looks at).
  const double two100 = std::ldexp(1.0, 100), two48 = std::ldexp(1.0, 48);
  const float below[] = {0.f, std::ldexp(1.f, -100), std::ldexp(1.f, 12), 1e-45f};
  for (int extra = 0; extra < 4; ++extra) {
    heed::select_detail::exact_mass a;
    heed_ref::select_fsum b;
    const float xs[] = {std::ldexp(1.f, 100), below[extra], std::ldexp(1.f, 47)};
    for (float x : xs) {
      a.add(x);
      b.add(heed_ref::select_mass(x));
    }
    EXPECT_EQ(a.value(), b.value()) << extra;
    EXPECT_EQ(a.value(), extra == 0 ? two100 : two100 + two48) << extra;
  }
  heed::select_detail::exact_mass big;
  for (int k = 0; k < 1000; ++k) big.add(std::numeric_limits<float>::max());
  EXPECT_EQ(big.value(), 1000.0 * double(std::numeric_limits<float>::max()));
}

// ---------------------------------------------------------------------------------------------
// Global (AdaKV) selection.

std::vector<idx_vec> global_top_k(const std::vector<std::vector<float>>& s, std::int64_t budget,
                                  double ff, const protect_spec& pr) {
  const int heads = int(s.size());
  std::vector<std::int64_t> n(s.size());
  std::vector<const float*> sp(s.size());
  std::vector<std::vector<std::int32_t>> keep(s.size()), keep2(s.size());
  std::vector<std::int32_t*> kp(s.size()), kp2(s.size());
  for (std::size_t h = 0; h < s.size(); ++h) {
    n[h] = std::int64_t(s[h].size());
    sp[h] = n[h] ? s[h].data() : nullptr;
    keep[h].assign(s[h].size(), -5);
    keep2[h].assign(s[h].size(), -6);
    kp[h] = n[h] ? keep[h].data() : nullptr;
    kp2[h] = n[h] ? keep2[h].data() : nullptr;
  }
  std::vector<std::int32_t> scratch(std::size_t(heed::select_global_scratch_size(n.data(), heads)));
  std::vector<std::int64_t> nk(s.size(), -1), nk2(s.size(), -2);
  EXPECT_EQ(heed::select_global_top_k(sp.data(), n.data(), heads, budget, ff, pr, kp.data(),
                                      nk.data(), scratch.data()),
            status::ok);
  EXPECT_EQ(heed::select_global_top_k(sp.data(), n.data(), heads, budget, ff, pr, kp2.data(),
                                      nk2.data(), scratch.data()),
            status::ok);
  std::vector<idx_vec> out;
  std::int64_t total = 0, kept = 0;
  for (std::size_t h = 0; h < s.size(); ++h) {
    EXPECT_EQ(nk[h], nk2[h]);
    for (std::int64_t k = 0; k < nk[h] && k < n[h]; ++k)
      EXPECT_EQ(keep[h][std::size_t(k)], keep2[h][std::size_t(k)]);
    out.push_back(check_keep_set(keep[h], nk[h], n[h], pr));
    total += n[h];
    kept += nk[h];
  }
  EXPECT_EQ(kept, std::min(budget, total));
  return out;
}

std::vector<std::vector<float>> make_heads(const std::vector<std::int64_t>& lens, pattern p,
                                           std::uint32_t seed) {
  std::vector<std::vector<float>> s;
  for (std::size_t h = 0; h < lens.size(); ++h)
    s.push_back(make_scores(lens[h], p, seed * 101 + std::uint32_t(h)));
  return s;
}

TEST(SelectGlobalTopK, MatchesReferenceRagged) {
  const std::vector<std::vector<std::int64_t>> shapes = {
      {100},  {0, 0, 0},       {7, 0, 100, 1},          {1, 2, 7, 0, 100, 33, 0, 5},
      {5000}, {3000, 0, 1200}, {70000, 20, 9000, 1500},
  };
  const pattern pats[] = {pattern::normal, pattern::ties, pattern::specials, pattern::all_nan};
  const double ffs[] = {0.0, 0.2, 0.5, 1.0};
  const protect_spec prs[] = {{0, 0}, {2, 8}, {40, 40}};
  for (const auto& lens : shapes) {
    std::int64_t total = 0;
    for (auto x : lens) total += x;
    const bool big = total > 1000;
    for (pattern p : pats) {
      if (big && p != pattern::normal && p != pattern::ties) continue;
      const auto s = make_heads(lens, p, std::uint32_t(total));
      for (const auto& pr : prs) {
        if (big && pr.n_sink != 2) continue;
        for (double ff : ffs) {
          if (big && ff != 0.2 && ff != 1.0) continue;
          const std::int64_t bs[] = {0, 1, total / 7, total / 2, total - 1, total, total + 3};
          for (std::int64_t b : bs) {
            if (b < 0 || (big && b != total / 7 && b != total - 1)) continue;
            const auto got = global_top_k(s, b, ff, pr);
            const auto want = heed_ref::select_global_top_k(s, b, ff, pr.n_sink, pr.n_recent);
            ASSERT_EQ(got, want) << "heads=" << lens.size() << " total=" << total
                                 << " pattern=" << int(p) << " ff=" << ff << " budget=" << b
                                 << " sink=" << pr.n_sink << " recent=" << pr.n_recent;
          }
        }
      }
    }
  }
}

TEST(SelectGlobalTopK, ManySeedsSmall) {
  for (std::uint32_t seed = 0; seed < 150; ++seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::int64_t> len(0, 30);
    const int heads = int(std::uniform_int_distribution<int>(1, 5)(rng));
    std::vector<std::int64_t> lens(std::size_t(heads), 0);
    std::int64_t total = 0;
    for (auto& x : lens) total += (x = len(rng));
    const auto s = make_heads(lens, seed % 2 ? pattern::ties : pattern::specials, seed);
    const protect_spec pr{std::uniform_int_distribution<std::int64_t>(0, 5)(rng),
                          std::uniform_int_distribution<std::int64_t>(0, 5)(rng)};
    const std::int64_t b = std::uniform_int_distribution<std::int64_t>(0, total + 1)(rng);
    const double ff = std::uniform_int_distribution<int>(0, 4)(rng) / 4.0;
    ASSERT_EQ(global_top_k(s, b, ff, pr),
              heed_ref::select_global_top_k(s, b, ff, pr.n_sink, pr.n_recent))
        << "seed " << seed;
  }
}

TEST(SelectGlobalTopK, HandPickedCases) {
  const std::vector<std::vector<float>> s = {{5.f, 1.f, 2.f}, {}, {1.f, 9.f, 8.f, 7.f}, {2.f}};
  // No floor: the best scores across heads.
  EXPECT_EQ(global_top_k(s, 4, 0.0, {}), (std::vector<idx_vec>{{0}, {}, {1, 2, 3}, {}}));
  // Floor 1 per head (floor(1.0 * 4 / 4)): every non-empty head gets its best, then the rest.
  EXPECT_EQ(global_top_k(s, 4, 1.0, {}), (std::vector<idx_vec>{{0}, {}, {1, 2}, {0}}));
  EXPECT_EQ(global_top_k(s, 5, 1.0, {}), (std::vector<idx_vec>{{0}, {}, {1, 2, 3}, {0}}));
  // Equal score and index across heads: the lower head wins.
  const std::vector<std::vector<float>> t = {{1.f}, {1.f}, {1.f}};
  EXPECT_EQ(global_top_k(t, 2, 0.0, {}), (std::vector<idx_vec>{{0}, {0}, {}}));
  // Protection beats scores in the global phase, round-robin when it does not all fit.
  const std::vector<std::vector<float>> u = {{0.f, 0.f, 9.f, 0.f}, {0.f, 9.f, 9.f, 0.f}};
  EXPECT_EQ(global_top_k(u, 4, 0.0, {1, 1}), (std::vector<idx_vec>{{0, 3}, {0, 3}}));
  EXPECT_EQ(global_top_k(u, 3, 0.0, {1, 1}), (std::vector<idx_vec>{{0, 3}, {0}}));
  EXPECT_EQ(global_top_k(u, 5, 0.0, {1, 1}), (std::vector<idx_vec>{{0, 2, 3}, {0, 3}}));
  EXPECT_EQ(global_top_k(u, 8, 0.0, {1, 1}), (std::vector<idx_vec>{{0, 1, 2, 3}, {0, 1, 2, 3}}));
}

// ---------------------------------------------------------------------------------------------
// Bad inputs.

TEST(SelectErrors, SingleHeadStatuses) {
  std::vector<float> s = {1.f, 2.f, 3.f};
  std::vector<std::int32_t> keep(3), scratch(3);
  std::int64_t nk = 0;
  const protect_spec ok{}, bad_sink{-1, 0}, bad_recent{0, -1};
  auto tk = [&](const float* sc, std::int64_t n, std::int64_t b, const protect_spec& pr,
                std::int32_t* k, std::int64_t* nkp,
                std::int32_t* scr) { return heed::select_top_k(sc, n, b, pr, k, nkp, scr); };
  EXPECT_EQ(tk(s.data(), 3, 2, ok, keep.data(), &nk, scratch.data()), status::ok);
  EXPECT_EQ(tk(nullptr, 3, 2, ok, keep.data(), &nk, scratch.data()), status::null_pointer);
  EXPECT_EQ(tk(s.data(), 3, 2, ok, nullptr, &nk, scratch.data()), status::null_pointer);
  EXPECT_EQ(tk(s.data(), 3, 2, ok, keep.data(), nullptr, scratch.data()), status::null_pointer);
  EXPECT_EQ(tk(s.data(), 3, 2, ok, keep.data(), &nk, nullptr), status::null_pointer);
  EXPECT_EQ(tk(nullptr, 0, 2, ok, nullptr, &nk, nullptr), status::ok);
  EXPECT_EQ(nk, 0);
  EXPECT_EQ(tk(s.data(), -1, 2, ok, keep.data(), &nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(tk(s.data(), std::int64_t(1) << 31, 2, ok, keep.data(), &nk, scratch.data()),
            status::invalid_argument);
  EXPECT_EQ(tk(s.data(), 3, -1, ok, keep.data(), &nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(tk(s.data(), 3, 2, bad_sink, keep.data(), &nk, scratch.data()),
            status::invalid_argument);
  EXPECT_EQ(tk(s.data(), 3, 2, bad_recent, keep.data(), &nk, scratch.data()),
            status::invalid_argument);
  // An error writes nothing.
  nk = 42;
  keep.assign(3, -3);
  EXPECT_EQ(tk(s.data(), 3, -1, ok, keep.data(), &nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(nk, 42);
  EXPECT_EQ(keep, std::vector<std::int32_t>(3, -3));

  auto th = [&](float tau, std::int64_t mn, std::int64_t mx, const float* sc) {
    return heed::select_threshold(sc, 3, tau, mn, mx, ok, keep.data(), &nk, scratch.data());
  };
  EXPECT_EQ(th(0.f, 0, 3, s.data()), status::ok);
  EXPECT_EQ(th(0.f, -1, 3, s.data()), status::invalid_argument);
  EXPECT_EQ(th(0.f, 2, 1, s.data()), status::invalid_argument);
  EXPECT_EQ(th(0.f, 0, 3, nullptr), status::null_pointer);
  EXPECT_EQ(
      heed::select_threshold(s.data(), 3, 0.f, 0, 3, bad_sink, keep.data(), &nk, scratch.data()),
      status::invalid_argument);

  auto cv = [&](double g, std::int64_t mn, std::int64_t mx, const float* sc) {
    return heed::select_coverage(sc, 3, g, mn, mx, ok, keep.data(), &nk, scratch.data());
  };
  EXPECT_EQ(cv(0.5, 0, 3, s.data()), status::ok);
  EXPECT_EQ(cv(-0.01, 0, 3, s.data()), status::invalid_argument);
  EXPECT_EQ(cv(1.01, 0, 3, s.data()), status::invalid_argument);
  EXPECT_EQ(cv(std::nan(""), 0, 3, s.data()), status::invalid_argument);
  EXPECT_EQ(cv(0.5, -1, 3, s.data()), status::invalid_argument);
  EXPECT_EQ(cv(0.5, 3, 2, s.data()), status::invalid_argument);
  EXPECT_EQ(cv(0.5, 0, 3, nullptr), status::null_pointer);
  const std::vector<float> with_inf = {1.f, kInf, 2.f}, with_ninf = {1.f, -kInf, kNaN};
  EXPECT_EQ(cv(0.5, 0, 3, with_inf.data()), status::invalid_argument);
  EXPECT_EQ(cv(0.5, 0, 3, with_ninf.data()), status::ok);
  EXPECT_EQ(
      heed::select_coverage(s.data(), 3, 0.5, 0, 3, bad_recent, keep.data(), &nk, scratch.data()),
      status::invalid_argument);
  EXPECT_EQ(heed::select_scratch_size(5), 5);
  EXPECT_EQ(heed::select_scratch_size(-5), 0);
}

TEST(SelectErrors, GlobalStatuses) {
  std::vector<float> a = {1.f, 2.f}, b = {3.f};
  const float* sp[] = {a.data(), b.data()};
  std::int64_t n[] = {2, 1};
  std::vector<std::int32_t> ka(2), kb(1);
  std::int32_t* kp[] = {ka.data(), kb.data()};
  std::int64_t nk[2] = {0, 0};
  std::vector<std::int32_t> scratch(std::size_t(heed::select_global_scratch_size(n, 2)));
  EXPECT_EQ(scratch.size(), 3u + 11u);
  auto g = [&](const float* const* s, const std::int64_t* nn, int heads, std::int64_t budget,
               double ff, protect_spec pr, std::int32_t* const* k, std::int64_t* nkp,
               std::int32_t* scr) {
    return heed::select_global_top_k(s, nn, heads, budget, ff, pr, k, nkp, scr);
  };
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::ok);
  EXPECT_EQ(nk[0] + nk[1], 2);
  EXPECT_EQ(g(sp, n, 0, 2, 0.2, {}, nullptr, nullptr, nullptr), status::ok);
  EXPECT_EQ(g(sp, n, -1, 2, 0.2, {}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, n, 2, -1, 0.2, {}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, n, 2, 2, -0.1, {}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, n, 2, 2, 1.1, {}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, n, 2, 2, std::nan(""), {}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {-1, 0}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {0, -1}, kp, nk, scratch.data()), status::invalid_argument);
  EXPECT_EQ(g(sp, nullptr, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::null_pointer);
  EXPECT_EQ(g(nullptr, n, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::null_pointer);
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {}, nullptr, nk, scratch.data()), status::null_pointer);
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {}, kp, nullptr, scratch.data()), status::null_pointer);
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {}, kp, nk, nullptr), status::null_pointer);
  const float* sp_null[] = {a.data(), nullptr};
  EXPECT_EQ(g(sp_null, n, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::null_pointer);
  std::int32_t* kp_null[] = {nullptr, kb.data()};
  EXPECT_EQ(g(sp, n, 2, 2, 0.2, {}, kp_null, nk, scratch.data()), status::null_pointer);
  std::int64_t n_neg[] = {2, -1};
  EXPECT_EQ(g(sp, n_neg, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::invalid_argument);
  std::int64_t n_big[] = {std::int64_t(1) << 31, 1};
  EXPECT_EQ(g(sp, n_big, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::invalid_argument);
  std::int64_t n_sum[] = {(std::int64_t(1) << 30) + 5, std::int64_t(1) << 30};
  EXPECT_EQ(g(sp, n_sum, 2, 2, 0.2, {}, kp, nk, scratch.data()), status::invalid_argument);
  // Empty heads need no pointers.
  const float* sp_empty[] = {a.data(), nullptr};
  std::int32_t* kp_empty[] = {ka.data(), nullptr};
  std::int64_t n_empty[] = {2, 0};
  EXPECT_EQ(g(sp_empty, n_empty, 2, 1, 0.2, {}, kp_empty, nk, scratch.data()), status::ok);
  EXPECT_EQ(nk[0], 1);
  EXPECT_EQ(nk[1], 0);
  EXPECT_EQ(ka[0], 1);
}

}  // namespace
