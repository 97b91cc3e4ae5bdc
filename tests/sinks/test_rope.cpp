// RoPE (sinks/rope.hpp) against a float64 rotation written here: both pairings, partial rotary
// dims, large positions, batches and views, and the identity that re-rotating a key from p to p'
// equals rotating the raw key at p' (f32, f16, bf16).
//
// Tolerances, per element, relative to the norm of the element's pair (rotations keep it):
//   rope_apply vs float64:                     1e-6 (cos / sin rounded to float, float products)
//   rerotate(apply(x, p), p, p') vs apply(x, p'): 1e-5, at any position (angles are in double)
//   16-bit rerotate vs float64 on the stored values: one rounding of the storage type (2^-8 bf16,
//   2^-11 f16, relative to the element) plus 1e-6 of the pair norm.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "heed/sinks/rope.hpp"

namespace {

using heed::rope_config;
using heed::rope_style;
using heed::status;

std::vector<float> random_vec(std::int64_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& e : x) e = static_cast<float>(nd(rng));
  return x;
}

// Index of the partner of channel c (< rotary_dim) and the pair number of c.
void pair_of(const rope_config& c, std::int64_t ch, std::int64_t* pair, std::int64_t* a,
             std::int64_t* b) {
  const std::int64_t rd = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
  if (c.style == rope_style::interleaved) {
    *pair = ch / 2;
    *a = 2 * *pair;
    *b = *a + 1;
  } else {
    *pair = ch % (rd / 2);
    *a = *pair;
    *b = *pair + rd / 2;
  }
}

// Float64 reference: x rotated by pos positions (pos may be negative: a rotation back).
std::vector<double> ref_rope(const rope_config& c, const std::vector<double>& x, double pos) {
  const std::int64_t rd = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
  std::vector<double> y = x;
  for (std::int64_t i = 0; i < rd / 2; ++i) {
    const std::int64_t a = c.style == rope_style::interleaved ? 2 * i : i;
    const std::int64_t b = c.style == rope_style::interleaved ? 2 * i + 1 : i + rd / 2;
    const double freq = std::pow(static_cast<double>(c.theta), -2.0 * double(i) / double(rd));
    const double w = pos * freq;
    const double x0 = x[std::size_t(a)], x1 = x[std::size_t(b)];
    y[std::size_t(a)] = x0 * std::cos(w) - x1 * std::sin(w);
    y[std::size_t(b)] = x0 * std::sin(w) + x1 * std::cos(w);
  }
  return y;
}

std::vector<double> to_double(const std::vector<float>& x) {
  return std::vector<double>(x.begin(), x.end());
}

// Checks |got - want| <= rel * pair norm (+ rel_elem * |want|) for rotated channels and exact
// equality for the channels after rotary_dim.
template <class Got>
void expect_close(const rope_config& c, const Got& got, const std::vector<double>& want,
                  const std::vector<double>& unrotated, double rel, double rel_elem,
                  const char* what) {
  const std::int64_t rd = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
  for (std::int64_t ch = 0; ch < c.head_dim; ++ch) {
    const double g = static_cast<double>(got[std::size_t(ch)]);
    if (ch >= rd) {
      ASSERT_EQ(g, unrotated[std::size_t(ch)]) << what << ": channel " << ch << " is not rotated";
      continue;
    }
    std::int64_t pair, a, b;
    pair_of(c, ch, &pair, &a, &b);
    const double norm = std::hypot(want[std::size_t(a)], want[std::size_t(b)]);
    const double tol = rel * norm + rel_elem * std::fabs(want[std::size_t(ch)]) + 1e-30;
    ASSERT_NEAR(g, want[std::size_t(ch)], tol)
        << what << ": channel " << ch << " (pair " << pair << "), d " << c.head_dim << ", rotary "
        << rd << ", style " << int(c.style);
  }
}

std::vector<rope_config> configs() {
  std::vector<rope_config> out;
  const std::int64_t dims[][2] = {{2, 0},   {6, 0},   {10, 4},   {64, 0}, {80, 0},
                                  {96, 64}, {128, 0}, {128, 32}, {256, 0}};
  for (rope_style s : {rope_style::interleaved, rope_style::half})
    for (float theta : {10000.f, 500000.f})
      for (const auto& d : dims) {
        rope_config c;
        c.head_dim = d[0];
        c.rotary_dim = d[1];
        c.theta = theta;
        c.style = s;
        out.push_back(c);
      }
  return out;
}

const std::int64_t kPositions[] = {0, 1, 7, 100, 4095, 32768, 100000, 1000000};

TEST(Rope, Validate) {
  rope_config c;
  c.head_dim = 8;
  EXPECT_EQ(heed::validate(c), status::ok);
  c.rotary_dim = 4;
  EXPECT_EQ(heed::validate(c), status::ok);
  c.rotary_dim = 8;
  EXPECT_EQ(heed::validate(c), status::ok);
  c.rotary_dim = 7;  // odd
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.rotary_dim = 10;  // > head_dim
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.rotary_dim = -2;
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.rotary_dim = 0;
  c.head_dim = 7;  // rotary_dim 0 means head_dim: odd
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.head_dim = 0;
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.head_dim = -4;
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.head_dim = heed::rope_max_head_dim * 2;
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
  c.head_dim = 8;
  for (float theta : {0.f, -10000.f, std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN()}) {
    c.theta = theta;
    EXPECT_EQ(heed::validate(c), status::invalid_argument) << theta;
  }
  c.theta = 10000.f;
  c.style = static_cast<rope_style>(7);
  EXPECT_EQ(heed::validate(c), status::invalid_argument);
}

// Hand-computed: frequencies theta^(-2i / rotary_dim) = 1 and 0.01 for d = 4, theta = 10^4.
TEST(Rope, KnownValues) {
  rope_config c;
  c.head_dim = 4;
  std::vector<float> x = {1.f, 0.f, 1.f, 0.f};  // interleaved pairs (0, 1), (2, 3)
  ASSERT_EQ(heed::rope_apply(c, x.data(), 1), status::ok);
  EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(x[1], std::sin(1.0), 1e-7);
  EXPECT_NEAR(x[2], std::cos(0.01), 1e-7);
  EXPECT_NEAR(x[3], std::sin(0.01), 1e-7);
  c.style = rope_style::half;  // pairs (0, 2), (1, 3)
  x = {1.f, 1.f, 0.f, 0.f};
  ASSERT_EQ(heed::rope_apply(c, x.data(), 3), status::ok);
  EXPECT_NEAR(x[0], std::cos(3.0), 1e-7);
  EXPECT_NEAR(x[1], std::cos(0.03), 1e-7);
  EXPECT_NEAR(x[2], std::sin(3.0), 1e-7);
  EXPECT_NEAR(x[3], std::sin(0.03), 1e-7);
  EXPECT_NEAR(heed::rope_frequency(c, 1), 0.01, 1e-15);
}

TEST(Rope, PositionZeroIsTheIdentity) {
  std::mt19937 rng(1);
  for (const auto& c : configs()) {
    const auto x = random_vec(c.head_dim, rng);
    auto y = x;
    ASSERT_EQ(heed::rope_apply(c, y.data(), 0), status::ok);
    EXPECT_EQ(y, x);
  }
}

TEST(Rope, ApplyMatchesFloat64) {
  std::mt19937 rng(2);
  for (const auto& c : configs()) {
    for (std::int64_t pos : kPositions) {
      const auto x = random_vec(c.head_dim, rng);
      auto y = x;
      ASSERT_EQ(heed::rope_apply(c, y.data(), pos), status::ok);
      const auto xd = to_double(x);
      expect_close(c, y, ref_rope(c, xd, double(pos)), xd, 1e-6, 0.0, "rope_apply");
    }
  }
}

// A wrong pairing is caught: the interleaved result is not the half one.
TEST(Rope, StylesDiffer) {
  std::mt19937 rng(3);
  rope_config a;
  a.head_dim = 16;
  rope_config b = a;
  b.style = rope_style::half;
  const auto x = random_vec(16, rng);
  auto ya = x, yb = x;
  ASSERT_EQ(heed::rope_apply(a, ya.data(), 5), status::ok);
  ASSERT_EQ(heed::rope_apply(b, yb.data(), 5), status::ok);
  double diff = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    diff = std::max(diff, double(std::fabs(ya[i] - yb[i])));
  EXPECT_GT(diff, 0.1);
}

// Batches (shared position), strided rows with padding, and views of [seq, heads, d] equal the
// single-row results bit for bit; padding is never written.
TEST(Rope, BatchesAndViewsMatchSingleRows) {
  std::mt19937 rng(4);
  rope_config c;
  c.head_dim = 24;
  c.rotary_dim = 16;
  c.style = rope_style::half;
  const std::int64_t n = 5, stride = 29, d = c.head_dim;
  auto x = random_vec(n * stride, rng);
  auto batch = x;
  ASSERT_EQ(heed::rope_apply(c, batch.data(), n, stride, 1234), status::ok);
  for (std::int64_t r = 0; r < n; ++r) {
    std::vector<float> one(x.begin() + r * stride, x.begin() + r * stride + d);
    ASSERT_EQ(heed::rope_apply(c, one.data(), 1234), status::ok);
    for (std::int64_t ch = 0; ch < d; ++ch)
      ASSERT_EQ(batch[std::size_t(r * stride + ch)], one[std::size_t(ch)]) << r << " " << ch;
    for (std::int64_t ch = d; ch < stride && r + 1 < n; ++ch)
      ASSERT_EQ(batch[std::size_t(r * stride + ch)], x[std::size_t(r * stride + ch)]);
  }
  // Rerotate a batch: every row moves by the same shift.
  auto moved = batch;
  ASSERT_EQ(heed::rope_rerotate(c, moved.data(), n, stride, 1234, 17), status::ok);
  for (std::int64_t r = 0; r < n; ++r) {
    std::vector<float> one(batch.begin() + r * stride, batch.begin() + r * stride + d);
    ASSERT_EQ(heed::rope_rerotate(c, one.data(), 1234, 17), status::ok);
    for (std::int64_t ch = 0; ch < d; ++ch)
      ASSERT_EQ(moved[std::size_t(r * stride + ch)], one[std::size_t(ch)]);
  }

  // View [seq 3, heads 2, d], head-major with padding: row (s, h) at first_pos + s.
  const std::int64_t seq = 3, heads = 2, row = d + 3;
  auto v = random_vec(heads * seq * row, rng);
  auto view_data = v;
  heed::mutable_tensor_view view = heed::make_mutable_view(view_data.data(), seq, heads, d);
  view.seq_stride = row;
  view.head_stride = seq * row;
  ASSERT_EQ(heed::rope_apply(c, view, 40), status::ok);
  for (std::int64_t s = 0; s < seq; ++s)
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t at = h * seq * row + s * row;
      std::vector<float> one(v.begin() + at, v.begin() + at + d);
      ASSERT_EQ(heed::rope_apply(c, one.data(), 40 + s), status::ok);
      for (std::int64_t ch = 0; ch < d; ++ch)
        ASSERT_EQ(view_data[std::size_t(at + ch)], one[std::size_t(ch)]) << s << " " << h;
      for (std::int64_t ch = d; ch < row; ++ch)
        ASSERT_EQ(view_data[std::size_t(at + ch)], v[std::size_t(at + ch)]);
    }
  auto view_moved = view_data;
  view.data = view_moved.data();
  ASSERT_EQ(heed::rope_rerotate(c, view, 50, 9), status::ok);
  for (std::int64_t s = 0; s < seq; ++s)
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t at = h * seq * row + s * row;
      std::vector<float> one(view_data.begin() + at, view_data.begin() + at + d);
      ASSERT_EQ(heed::rope_rerotate(c, one.data(), 50, 9), status::ok);
      for (std::int64_t ch = 0; ch < d; ++ch)
        ASSERT_EQ(view_moved[std::size_t(at + ch)], one[std::size_t(ch)]);
    }
}

// THE IDENTITY: moving a rotated key from p to p' gives the key rotated at p' directly.
TEST(Rope, RerotateEqualsApplyAtTheNewPosition) {
  std::mt19937 rng(5);
  const std::int64_t moves[][2] = {{0, 17},     {100, 3},         {4096, 4000},      {100000, 4},
                                   {5, 100000}, {123456, 123455}, {1000000, 999000}, {31, 31}};
  for (const auto& c : configs()) {
    for (const auto& m : moves) {
      const auto x = random_vec(c.head_dim, rng);
      auto at_p = x, at_q = x;
      ASSERT_EQ(heed::rope_apply(c, at_p.data(), m[0]), status::ok);
      ASSERT_EQ(heed::rope_apply(c, at_q.data(), m[1]), status::ok);
      ASSERT_EQ(heed::rope_rerotate(c, at_p.data(), m[0], m[1]), status::ok);
      std::vector<double> direct(at_q.begin(), at_q.end());
      expect_close(c, at_p, direct, to_double(x), 1e-5, 0.0, "rerotate vs apply");
      expect_close(c, at_p, ref_rope(c, to_double(x), double(m[1])), to_double(x), 1e-5, 0.0,
                   "rerotate vs float64");
    }
  }
}

// Rotations compose: twenty hops through random positions end where one rotation would.
TEST(Rope, RerotationsCompose) {
  std::mt19937 rng(6);
  std::uniform_int_distribution<std::int64_t> pos(0, 200000);
  for (const auto& c : configs()) {
    const auto x = random_vec(c.head_dim, rng);
    auto y = x;
    std::int64_t p = pos(rng);
    ASSERT_EQ(heed::rope_apply(c, y.data(), p), status::ok);
    for (int hop = 0; hop < 20; ++hop) {
      const std::int64_t q = pos(rng);
      ASSERT_EQ(heed::rope_rerotate(c, y.data(), p, q), status::ok);
      p = q;
    }
    expect_close(c, y, ref_rope(c, to_double(x), double(p)), to_double(x), 2e-5, 0.0, "20 hops");
  }
}

template <class T>
class Rope16 : public ::testing::Test {};
using Storage16 = ::testing::Types<heed::f16, heed::bf16>;
TYPED_TEST_SUITE(Rope16, Storage16);

template <class T>
double storage_rounding() {
  return std::is_same<T, heed::bf16>::value ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// A 16-bit row moved from p to p' is the float64 rotation of its stored values, rounded once.
TYPED_TEST(Rope16, RerotateWithinOneRounding) {
  using T = TypeParam;
  std::mt19937 rng(7);
  const std::int64_t moves[][2] = {{0, 9}, {12, 3}, {4096, 4100}, {100000, 64}, {70, 100070}};
  for (const auto& c : configs()) {
    for (const auto& m : moves) {
      const auto x = random_vec(c.head_dim, rng);
      // Stored row: the key rotated at p, rounded to T.
      const auto rotated = ref_rope(c, to_double(x), double(m[0]));
      std::vector<T> row(x.size());
      std::vector<double> stored(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        row[i] = heed::from_float<T>(static_cast<float>(rotated[i]));
        stored[i] = heed::to_float(row[i]);
      }
      ASSERT_EQ(heed::rope_rerotate(c, row.data(), m[0], m[1]), status::ok);
      std::vector<double> got(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) got[i] = heed::to_float(row[i]);
      expect_close(c, got, ref_rope(c, stored, double(m[1] - m[0])), stored, 1e-6,
                   storage_rounding<T>(), "16-bit rerotate");
      // And close to the key rotated at p' directly: two roundings of T.
      // (channels past rotary_dim hold the stored, rounded values)
      expect_close(c, got, ref_rope(c, to_double(x), double(m[1])), stored,
                   3 * storage_rounding<T>(), 0.0, "16-bit rerotate vs apply");
    }
  }
}

// Strided 16-bit batches and 16-bit views give the same bits as one row at a time.
TYPED_TEST(Rope16, BatchesAndViews) {
  using T = TypeParam;
  std::mt19937 rng(8);
  rope_config c;
  c.head_dim = 32;
  c.style = rope_style::half;
  const std::int64_t n = 4, stride = 40;
  const auto x = random_vec(n * stride, rng);
  std::vector<T> rows(x.size()), one_at_a_time(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) rows[i] = one_at_a_time[i] = heed::from_float<T>(x[i]);
  ASSERT_EQ(heed::rope_rerotate(c, rows.data(), n, stride, 300, 12), status::ok);
  for (std::int64_t r = 0; r < n; ++r)
    ASSERT_EQ(heed::rope_rerotate(c, one_at_a_time.data() + r * stride, 300, 12), status::ok);
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(rows[i].bits, one_at_a_time[i].bits) << i;

  std::vector<T> via_view(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) via_view[i] = heed::from_float<T>(x[i]);
  heed::mutable_tensor_view v = heed::make_mutable_view(via_view.data(), n, 1, c.head_dim);
  v.seq_stride = stride;
  ASSERT_EQ(heed::rope_rerotate(c, v, 300, 12), status::ok);
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(via_view[i].bits, rows[i].bits) << i;

  // apply on 16-bit rows: within one rounding of the float64 rotation of the stored values.
  std::vector<T> a(static_cast<std::size_t>(c.head_dim));
  std::vector<double> stored(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = heed::from_float<T>(x[i]);
    stored[i] = heed::to_float(a[i]);
  }
  ASSERT_EQ(heed::rope_apply(c, a.data(), 777), status::ok);
  std::vector<double> got(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) got[i] = heed::to_float(a[i]);
  expect_close(c, got, ref_rope(c, stored, 777.0), stored, 1e-6, storage_rounding<T>(),
               "16-bit apply");
}

TEST(Rope, BadInputs) {
  rope_config c;
  c.head_dim = 8;
  std::vector<float> x(32, 1.f);
  float* null = nullptr;
  EXPECT_EQ(heed::rope_apply(c, null, 3), status::null_pointer);
  EXPECT_EQ(heed::rope_rerotate(c, null, 3, 4), status::null_pointer);
  EXPECT_EQ(heed::rope_apply(c, null, 0, 8, 3), status::ok);  // nothing to do
  EXPECT_EQ(heed::rope_apply(c, x.data(), -1), status::invalid_argument);
  EXPECT_EQ(heed::rope_rerotate(c, x.data(), -1, 3), status::invalid_argument);
  EXPECT_EQ(heed::rope_rerotate(c, x.data(), 3, -1), status::invalid_argument);
  EXPECT_EQ(heed::rope_apply(c, x.data(), -2, 8, 3), status::invalid_argument);
  EXPECT_EQ(heed::rope_apply(c, x.data(), 2, 7, 3), status::invalid_stride);   // rows overlap
  EXPECT_EQ(heed::rope_apply(c, x.data(), 2, -8, 3), status::invalid_stride);  // negative
  EXPECT_EQ(heed::rope_apply(c, x.data(), 1, 0, 3), status::ok);  // one row: stride unused
  heed::bf16* null16 = nullptr;
  EXPECT_EQ(heed::rope_rerotate(c, null16, 2, 8, 3, 4), status::null_pointer);

  rope_config odd = c;
  odd.rotary_dim = 5;
  rope_config wide = c;
  wide.rotary_dim = 10;
  const auto before = x;
  EXPECT_EQ(heed::rope_apply(odd, x.data(), 3), status::invalid_argument);
  EXPECT_EQ(heed::rope_rerotate(wide, x.data(), 3, 4), status::invalid_argument);
  EXPECT_EQ(x, before);  // nothing written on failure

  heed::mutable_tensor_view v = heed::make_mutable_view(x.data(), 4, 1, 8);
  EXPECT_EQ(heed::rope_apply(c, v, -1), status::invalid_argument);
  EXPECT_EQ(heed::rope_rerotate(c, v, 0, -1), status::invalid_argument);
  EXPECT_EQ(heed::rope_apply(odd, v, 0), status::invalid_argument);
  heed::mutable_tensor_view v6 = heed::make_mutable_view(x.data(), 4, 1, 6);
  EXPECT_EQ(heed::rope_apply(c, v6, 0), status::shape_mismatch);  // dim != head_dim
  heed::mutable_tensor_view vnull = v;
  vnull.data = nullptr;
  EXPECT_EQ(heed::rope_rerotate(c, vnull, 0, 1), status::null_pointer);
  heed::mutable_tensor_view vover = v;
  vover.seq_stride = 4;  // rows overlap
  EXPECT_EQ(heed::rope_apply(c, vover, 0), status::invalid_stride);
  heed::mutable_tensor_view vtype = v;
  vtype.type = static_cast<heed::dtype>(9);
  EXPECT_EQ(heed::rope_apply(c, vtype, 0), status::unsupported_dtype);
  EXPECT_EQ(x, before);
}

}  // namespace
