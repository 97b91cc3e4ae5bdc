// Sink detection per head (sinks/sink_detection.hpp): against a plain loop on random scores with
// strides, ties at the threshold, NaN and infinities; end to end on attention with planted sinks
// at positions other than 0, from observation_window_scores' normalized column means compared
// with the float64 reference's; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "heed/scoring/observation_window.hpp"
#include "heed/sinks/sink_detection.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::status;

// Reference: positions j with score > threshold, ascending.
std::vector<std::int64_t> ref_sinks(const float* row, std::int64_t lk, double threshold) {
  std::vector<std::int64_t> out;
  for (std::int64_t j = 0; j < lk; ++j)
    if (double(row[j]) > threshold) out.push_back(j);
  return out;
}

TEST(SinkDetection, MatchesAPlainLoop) {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(0.f, 0.2f);
  const int heads = 5;
  const std::int64_t lk = 300, stride = 311, capacity = lk;
  std::vector<float> scores(std::size_t(heads * stride), 1e9f);  // padding would be a sink
  for (int h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < lk; ++j) scores[std::size_t(h * stride + j)] = u(rng);
  scores[std::size_t(0 * stride + 7)] = 0.1f;  // exactly the threshold: not a sink
  scores[std::size_t(1 * stride + 8)] = std::numeric_limits<float>::quiet_NaN();
  scores[std::size_t(2 * stride + 9)] = std::numeric_limits<float>::infinity();
  scores[std::size_t(3 * stride + 10)] = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < lk; ++j) scores[std::size_t(4 * stride + j)] = 0.f;  // no sinks
  for (float threshold : {0.1f, 0.05f, 0.19f}) {
    std::vector<std::int64_t> counts(heads, -1), idx(std::size_t(heads * capacity), -1);
    ASSERT_EQ(heed::detect_sinks_per_head(scores.data(), heads, lk, stride, counts.data(),
                                          idx.data(), capacity, threshold),
              status::ok);
    for (int h = 0; h < heads; ++h) {
      const auto want = ref_sinks(scores.data() + h * stride, lk, threshold);
      ASSERT_EQ(counts[std::size_t(h)], std::int64_t(want.size())) << "head " << h;
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(idx[std::size_t(h * capacity) + i], want[i]) << "head " << h << " i " << i;
      if (threshold == 0.1f && h == 0) {  // the tie is excluded
        for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NE(want[i], 7);
      }
    }
    EXPECT_EQ(counts[4], 0);
    EXPECT_GT(counts[0], 3);  // the test data has sinks to find
  }
  // Default threshold (0.1, ACT) and default stride (0 = lk) on a packed copy.
  std::vector<float> packed(std::size_t(heads * lk));
  for (int h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < lk; ++j)
      packed[std::size_t(h * lk + j)] = scores[std::size_t(h * stride + j)];
  std::vector<std::int64_t> counts(heads), idx(std::size_t(heads * capacity));
  ASSERT_EQ(
      heed::detect_sinks_per_head(packed.data(), heads, lk, 0, counts.data(), idx.data(), capacity),
      status::ok);
  for (int h = 0; h < heads; ++h) {
    const auto want = ref_sinks(packed.data() + h * lk, lk, double(0.1f));
    ASSERT_EQ(counts[std::size_t(h)], std::int64_t(want.size()));
    for (std::size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(idx[std::size_t(h * capacity) + i], want[i]);
  }
}

// Too small a capacity: counts stay exact, the first capacity indices are written, every head is
// processed, and the result says so. Capacity 0 only counts.
TEST(SinkDetection, CapacityAndCounting) {
  const std::vector<float> s = {0.5f, 0.f, 0.3f, 0.2f,   // head 0: 0, 2, 3
                                0.f,  0.f, 0.f,  0.9f};  // head 1: 3
  std::int64_t counts[2] = {-1, -1}, idx[4] = {-1, -1, -1, -1};
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, counts, idx, 2),
            status::workspace_too_small);
  EXPECT_EQ(counts[0], 3);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 2);
  EXPECT_EQ(idx[2], 3);  // head 1 still written
  counts[0] = counts[1] = -1;
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, counts, nullptr, 0),
            status::workspace_too_small);
  EXPECT_EQ(counts[0], 3);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, counts, nullptr, 0, 0.95f), status::ok);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 0, 0, counts, nullptr, 0), status::ok);
  EXPECT_EQ(counts[0], 0);
}

// Attention with planted sinks: keys aligned with a direction every query shares, at positions
// that are not 0. The kernel's normalized column means find the same sinks as the float64
// reference's.
TEST(SinkDetection, PlantedSinksFromObservationWindow) {
  const std::int64_t lk = 256, w = 16, hq = 4, hkv = 2, d = 32;
  std::mt19937 rng(22);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> u(static_cast<std::size_t>(d));
  double un = 0;
  for (auto& e : u) {
    e = nd(rng);
    un += e * e;
  }
  for (auto& e : u) e /= std::sqrt(un);
  // Queries: 4 u + noise. Keys: noise, except planted sinks = 8 u.
  const std::vector<std::vector<std::int64_t>> planted = {{0, 37, 200}, {90, 150}};
  std::vector<float> qf(std::size_t(w * hq * d)), kf(std::size_t(lk * hkv * d));
  for (std::int64_t i = 0; i < w * hq; ++i)
    for (std::int64_t c = 0; c < d; ++c)
      qf[std::size_t(i * d + c)] = float(4.0 * u[std::size_t(c)] + 0.3 * nd(rng));
  for (std::int64_t j = 0; j < lk; ++j)
    for (std::int64_t h = 0; h < hkv; ++h)
      for (std::int64_t c = 0; c < d; ++c)
        kf[std::size_t((j * hkv + h) * d + c)] = float(0.5 * nd(rng));
  for (std::int64_t h = 0; h < hkv; ++h)
    for (std::int64_t j : planted[std::size_t(h)])
      for (std::int64_t c = 0; c < d; ++c)
        kf[std::size_t((j * hkv + h) * d + c)] = float(8.0 * u[std::size_t(c)]);

  heed_ref::kv_tensor kref;
  kref.len = lk;
  kref.heads = hkv;
  kref.d = d;
  kref.x.assign(kf.begin(), kf.end());
  const std::vector<double> qref(qf.begin(), qf.end());
  const auto ref = heed_ref::observation_window(qref, w, hq, kref, lk - w, 0.0, 0, 1, false);

  heed::observation_window_options opt;
  opt.pool = heed::pool_kind::none;
  opt.pool_kernel = 1;
  std::vector<float> cm(std::size_t(hkv * lk));
  heed::observation_window_outputs out;
  out.colmean = cm.data();
  std::vector<char> ws(heed::observation_window_workspace_size(lk, opt));
  ASSERT_EQ(heed::observation_window_scores(heed::make_view(qf.data(), w, hq, d),
                                            heed::make_view(kf.data(), lk, hkv, d), nullptr, 0, opt,
                                            out, {ws.data(), ws.size()}),
            status::ok);
  std::vector<float> cm_ref(cm.size());
  for (std::size_t i = 0; i < cm.size(); ++i) {
    cm_ref[i] = float(ref.colmean[i]);
    // No reference score sits so close to the threshold that float rounding could flip it.
    ASSERT_GT(std::fabs(ref.colmean[i] - 0.1), 1e-3) << i;
    ASSERT_NEAR(cm[i], ref.colmean[i], 1e-5 + 1e-4 * ref.colmean[i]) << i;
  }
  std::vector<std::int64_t> counts(hkv), idx(std::size_t(hkv * lk)), counts_ref(hkv),
      idx_ref(idx.size());
  ASSERT_EQ(heed::detect_sinks_per_head(cm.data(), int(hkv), lk, 0, counts.data(), idx.data(), lk),
            status::ok);
  ASSERT_EQ(heed::detect_sinks_per_head(cm_ref.data(), int(hkv), lk, 0, counts_ref.data(),
                                        idx_ref.data(), lk),
            status::ok);
  for (std::int64_t h = 0; h < hkv; ++h) {
    ASSERT_EQ(counts[std::size_t(h)], counts_ref[std::size_t(h)]) << h;
    for (std::int64_t i = 0; i < counts[std::size_t(h)]; ++i)
      EXPECT_EQ(idx[std::size_t(h * lk + i)], idx_ref[std::size_t(h * lk + i)]);
    // The planted sinks are exactly what is found: head 1 has none at position 0.
    ASSERT_EQ(counts[std::size_t(h)], std::int64_t(planted[std::size_t(h)].size())) << h;
    for (std::size_t i = 0; i < planted[std::size_t(h)].size(); ++i)
      EXPECT_EQ(idx[std::size_t(h * lk) + i], planted[std::size_t(h)][i]) << h;
  }
}

TEST(SinkDetection, BadInputs) {
  std::vector<float> s(8, 0.5f);
  std::int64_t counts[2], idx[8];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(heed::detect_sinks_per_head(nullptr, 2, 4, 0, counts, idx, 4), status::null_pointer);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, nullptr, idx, 4), status::null_pointer);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, counts, nullptr, 4),
            status::null_pointer);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 0, 4, 0, counts, idx, 4),
            status::invalid_argument);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), -1, 4, 0, counts, idx, 4),
            status::invalid_argument);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, -4, 0, counts, idx, 4),
            status::invalid_argument);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, counts, idx, -1),
            status::invalid_argument);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 0, counts, idx, 4, nan),
            status::invalid_argument);
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, 3, counts, idx, 4),
            status::invalid_stride);  // heads would overlap
  EXPECT_EQ(heed::detect_sinks_per_head(s.data(), 2, 4, -1, counts, idx, 4),
            status::invalid_stride);
}

}  // namespace
