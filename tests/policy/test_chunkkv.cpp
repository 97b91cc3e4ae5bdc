// ChunkKV (heed/policy/chunkkv.hpp) against a float64 reference of its definition: chunk means by
// position (NaN left out, +inf / -inf rules), then the inner policy's selection; several shapes,
// GQA ratios, budgets, ties, NaN scores, thinned chunks (gapped positions), paged caches; errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "heed/policy/chunkkv.hpp"
#include "heed/policy/evict.hpp"
#include "reference/naive_select.hpp"
#include "wrapper_fixture.hpp"

namespace {

using heed::status;
constexpr float kInf = std::numeric_limits<float>::infinity();

// The definition, in double: every entry gets the mean of its chunk's non-NaN scores; +inf wins,
// then -inf; a chunk of NaN only is NaN.
std::vector<float> chunk_mean_ref(const std::vector<float>& s, const std::vector<std::int64_t>& pos,
                                  std::int64_t c) {
  std::vector<float> out(s.size());
  for (std::size_t a = 0; a < s.size();) {
    std::size_t b = a;
    while (b < s.size() && pos[b] / c == pos[a] / c) ++b;
    double sum = 0;
    int count = 0;
    bool pinf = false, ninf = false;
    for (std::size_t j = a; j < b; ++j) {
      const double x = s[j];
      if (std::isnan(x)) continue;
      if (x == double(kInf)) pinf = true;
      if (x == -double(kInf)) ninf = true;
      if (std::isfinite(x)) sum += x, ++count;
    }
    const float m = pinf ? kInf : ninf ? -kInf : count ? float(sum / count) : std::nanf("");
    for (std::size_t j = a; j < b; ++j) out[j] = m;
    a = b;
  }
  return out;
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

TEST(ChunkKV, ChunkMeansMatchTheReference) {
  std::mt19937 rng(5);
  for (std::int64_t c : {1, 2, 3, 10, 17}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::int64_t n = 1 + std::int64_t(rng() % 90);
      std::vector<float> s(static_cast<std::size_t>(n));
      std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
      std::int64_t p = 0;
      for (std::int64_t j = 0; j < n; ++j) {
        p += 1 + (trial % 3 == 0 ? std::int64_t(rng() % 4) : 0);  // thinned chunks
        pos[std::size_t(j)] = p;
        const unsigned r = rng() % 40;
        s[std::size_t(j)] = r == 0   ? std::nanf("")
                            : r == 1 ? kInf
                            : r == 2 ? -kInf
                                     : float(int(rng() % 7)) * 0.25f - 0.5f;
      }
      const auto want = chunk_mean_ref(s, pos, c);
      std::vector<float> got = s;
      ASSERT_EQ(heed::chunk_mean_scores(got.data(), pos.data(), n, c), status::ok);
      for (std::size_t j = 0; j < got.size(); ++j)
        ASSERT_TRUE(same_float(got[j], want[j])) << "c " << c << " j " << j;
    }
  }
  // Null positions: the entry indices.
  std::vector<float> s = {1, 2, 3, 4, 5};
  ASSERT_EQ(heed::chunk_mean_scores(s.data(), nullptr, 5, 2), status::ok);
  EXPECT_EQ(s, (std::vector<float>{1.5f, 1.5f, 3.5f, 3.5f, 5.f}));
}

// One eviction of a layer through evict_layer: the kept positions of every head equal the
// reference's (chunk means of the channel scores, then the inner selection: top-k with its
// protection).
TEST(ChunkKV, KeepSetsMatchTheReference) {
  std::mt19937 rng(11);
  int checked = 0;
  for (int heads : {1, 2, 4})
    for (int group : {1, 2, 4})
      for (std::int64_t n : {7, 40, 123})
        for (std::int64_t chunk : {3, 10}) {
          const std::int64_t budget = 1 + std::int64_t(rng() % std::uint64_t(n + 5));
          const bool gaps = rng() % 2 == 0, protect = rng() % 2 == 0;
          const std::int64_t page_rows = rng() % 2 ? 16 : 0;
          std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
          for (std::int64_t j = 0, p = 0; j < n; ++j, ++p) {
            if (gaps && rng() % 3 == 0) p += 1 + std::int64_t(rng() % 5);
            pos[std::size_t(j)] = p;
          }
          wrapper_test::filled_cache f;
          ASSERT_EQ(
              f.fill(1, heads, 8, n, heed::dtype::f32, unsigned(rng()), page_rows, pos.data()),
              status::ok);
          std::vector<std::vector<float>> inner(static_cast<std::size_t>(heads));
          for (int h = 0; h < heads; ++h) {
            for (std::int64_t j = 0; j < n; ++j) {
              const unsigned r = rng() % 12;
              inner[std::size_t(h)].push_back(r == 0 ? std::nanf("") : float(r % 4));  // ties
            }
            std::copy(inner[std::size_t(h)].begin(), inner[std::size_t(h)].end(),
                      f.cache.scores(0, h, 0));
          }
          wrapper_test::channel_scores cs;
          cs.n_sink = protect ? 2 : 0;
          cs.n_recent = protect ? 3 : 0;
          auto policy = heed::chunked(cs, chunk);
          const auto in = wrapper_test::input_of(f.cache, 0, heads * group, budget);
          std::vector<std::int64_t> targets(std::size_t(heads), budget);
          heed::eviction_scratch scratch;
          ASSERT_EQ(heed::evict_layer(f.cache, policy, in, targets.data(), scratch), status::ok);
          for (int h = 0; h < heads; ++h) {
            const auto& s = inner[std::size_t(h)];
            const auto scores = n < chunk ? s : chunk_mean_ref(s, pos, chunk);
            const auto keep = heed_ref::select_top_k(scores, budget, cs.n_sink, cs.n_recent);
            ASSERT_EQ(f.cache.length(0, h), std::int64_t(keep.size())) << "head " << h;
            for (std::size_t r = 0; r < keep.size(); ++r)
              ASSERT_EQ(f.cache.positions(0, h)[r], pos[std::size_t(keep[r])])
                  << "head " << h << " n " << n << " chunk " << chunk << " budget " << budget;
            if (protect || n < chunk || budget >= n) continue;
            // Whole chunks, but for one chunk of which the newest entries are kept.
            int partial = 0;
            for (std::int64_t a = 0; a < n;) {
              std::int64_t b = a;
              while (b < n && pos[std::size_t(b)] / chunk == pos[std::size_t(a)] / chunk) ++b;
              std::int64_t kept = 0, first_kept = b;
              for (auto i : keep)
                if (i >= a && i < b) ++kept, first_kept = std::min(first_kept, i);
              if (kept > 0 && kept < b - a) {
                ++partial;
                EXPECT_EQ(first_kept, b - kept) << "the newest entries of the partial chunk";
              }
              a = b;
            }
            EXPECT_LE(partial, 1);
          }
          ++checked;
        }
  EXPECT_EQ(checked, 54);
}

// A chunk size below 1 is refused at the eviction, which then changes nothing.
TEST(ChunkKV, BadChunkSizeIsAnErrorAndChangesNothing) {
  wrapper_test::filled_cache f;
  ASSERT_EQ(f.fill(1, 2, 8, 30, heed::dtype::f16, 1), status::ok);
  auto policy = heed::chunked(wrapper_test::channel_scores{}, 0);
  const auto in = wrapper_test::input_of(f.cache, 0, 2, 10);
  std::vector<std::int64_t> targets(2, 10);
  heed::eviction_scratch scratch;
  EXPECT_EQ(heed::evict_layer(f.cache, policy, in, targets.data(), scratch),
            status::invalid_argument);
  EXPECT_EQ(f.cache.length(0, 0), 30);
  EXPECT_EQ(f.cache.length(0, 1), 30);
  std::vector<float> s(4, 1.f);
  EXPECT_EQ(heed::chunk_mean_scores(s.data(), nullptr, 4, 0), status::invalid_argument);
  EXPECT_EQ(heed::chunk_mean_scores(s.data(), nullptr, -1, 2), status::invalid_argument);
  EXPECT_EQ(heed::chunk_mean_scores(nullptr, nullptr, 4, 2), status::null_pointer);
  static_assert(noexcept(policy.score(in, 0, nullptr, heed::workspace{})), "noexcept");
}

}  // namespace
