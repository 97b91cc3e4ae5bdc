// Observation-window scores against the float64 reference (tests/reference/naive_scores.hpp),
// which materializes the window rows' full softmax (no LSE shortcut): passing the reference LSE
// (or the compiled kernel's main-pass LSE) checks that p = exp(s - lse) is right.
// Tolerance: 2e-5 relative per output (f32 logits of magnitude up to ~10 and a fast exp of 2e-7
// relative error, summed over <= 64 rows), plus an absolute 1e-9 for probabilities that
// underflow in f32.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/variants/builtin.hpp"
#include "heed/scoring/observation_window.hpp"
#include "reference/naive_attention.hpp"
#include "reference/naive_scores.hpp"

namespace {

using heed::dtype;
using heed::head_reduce;
using heed::pool_kind;
using heed::status;

struct win_case {
  std::int64_t lk, w, hq, hkv, d;
  dtype t;
  pool_kind pool;
  int kernel;
  bool use_lse;
  head_reduce reduce;
  std::int64_t q_offset;  // -1 = lk - w
};

void PrintTo(const win_case& c, std::ostream* os) {
  *os << "lk " << c.lk << " w " << c.w << " hq " << c.hq << " hkv " << c.hkv << " d " << c.d << " "
      << heed::dtype_name(c.t) << " pool " << int(c.pool) << "/" << c.kernel
      << (c.use_lse ? " lse" : " own-lse") << (c.reduce == head_reduce::max ? " max" : " mean")
      << " offset " << c.q_offset;
}

// The reference attention problem of W window queries over Lk keys (values unused: the window
// scores read probabilities only).
heed_ref::attention_problem window_problem(const heed_ref::stored_q& q,
                                           const heed_ref::stored_kv& k, std::int64_t w,
                                           std::int64_t lk, std::int64_t hq, std::int64_t hkv,
                                           std::int64_t d) {
  heed_ref::attention_problem ap;
  ap.lq = w;
  ap.lk = lk;
  ap.hq = hq;
  ap.hkv = hkv;
  ap.d = d;
  ap.resize();
  ap.q = q.ref;
  ap.k = k.ref.x;
  return ap;
}

// The reference's per-row LSE of the window, [hq][w], as the main pass would hand it over.
std::vector<float> window_lse(const heed_ref::attention_result& r, std::int64_t hq,
                              std::int64_t w) {
  std::vector<float> lse(std::size_t(hq * w));
  for (std::int64_t h = 0; h < hq; ++h)
    for (std::int64_t i = 0; i < w; ++i) lse[std::size_t(h * w + i)] = float(r.lse_at(h, i));
  return lse;
}

void expect_rows(const std::vector<float>& got, std::int64_t stride, const heed_ref::vec& ref,
                 std::int64_t heads, std::int64_t lk, const char* what) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < lk; ++j) {
      const double r = ref[std::size_t(h * lk + j)];
      ASSERT_NEAR(got[std::size_t(h * stride + j)], r, 2e-5 * std::fabs(r) + 1e-9)
          << what << " head " << h << " key " << j;
    }
}

class ScoreObservationWindow : public ::testing::TestWithParam<win_case> {};

TEST_P(ScoreObservationWindow, MatchesReference) {
  const win_case c = GetParam();
  heed_ref::stored_q q(c.w, c.hq, c.d, 41, 0.0, 1.7);
  heed_ref::stored_kv k(c.lk, c.hkv, c.d, c.t, 42, c.lk % 2 == 1, c.d == 40 ? 3 : 0, 0.1, 1.0);
  const std::int64_t off = c.q_offset >= 0 ? c.q_offset : c.lk - c.w;
  const auto ref = heed_ref::observation_window(q.ref, c.w, c.hq, k.ref, off, 0.0, int(c.pool),
                                                c.kernel, c.reduce == head_reduce::max);
  std::vector<float> lse(std::size_t(c.hq * (c.w + 1)));
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t i = 0; i < c.w; ++i)
      lse[std::size_t(h * (c.w + 1) + i)] = float(ref.lse[std::size_t(h * c.w + i)]);

  heed::observation_window_options opt;
  opt.pool = c.pool;
  opt.pool_kernel = c.kernel;
  opt.reduce = c.reduce;
  opt.q_offset = c.q_offset;
  const std::int64_t s = c.lk + 5;  // padded output strides
  std::vector<float> win(std::size_t(c.hkv * s)), vert(std::size_t(c.hq * s)),
      slash(std::size_t(c.hq * s)), colmean(std::size_t(c.hkv * c.lk));
  heed::observation_window_outputs out;
  out.window = win.data();
  out.window_head_stride = s;
  out.vertical = vert.data();
  out.vertical_head_stride = s;
  out.slash = slash.data();
  out.slash_head_stride = s;
  out.colmean = colmean.data();
  std::vector<char> ws(heed::observation_window_workspace_size(c.lk, opt));
  ASSERT_EQ(heed::observation_window_scores(q.view, k.view, c.use_lse ? lse.data() : nullptr,
                                            c.w + 1, opt, out, {ws.data(), ws.size()}),
            status::ok);
  expect_rows(win, s, ref.window, c.hkv, c.lk, "window");
  expect_rows(vert, s, ref.vertical, c.hq, c.lk, "vertical");
  expect_rows(slash, s, ref.slash, c.hq, c.lk, "slash");
  expect_rows(colmean, c.lk, ref.colmean, c.hkv, c.lk, "colmean");

  // Each output alone gives the same values (the others skipped).
  std::vector<float> win2(std::size_t(c.hkv * c.lk));
  heed::observation_window_outputs only;
  only.window = win2.data();
  ASSERT_EQ(heed::observation_window_scores(q.view, k.view, c.use_lse ? lse.data() : nullptr,
                                            c.w + 1, opt, only, {ws.data(), ws.size()}),
            status::ok);
  expect_rows(win2, c.lk, ref.window, c.hkv, c.lk, "window alone");
}

constexpr auto f32 = dtype::f32, f16 = dtype::f16, bf16 = dtype::bf16, q8 = dtype::q8,
               q4 = dtype::q4;
constexpr auto pmax = pool_kind::max, pavg = pool_kind::avg, pnone = pool_kind::none;
constexpr auto mean = head_reduce::mean, hmax = head_reduce::max;

INSTANTIATE_TEST_SUITE_P(
    Shapes, ScoreObservationWindow,
    ::testing::Values(win_case{1, 1, 4, 4, 64, f32, pmax, 7, true, mean, -1},
                      win_case{5, 1, 4, 4, 40, f16, pavg, 7, false, mean, -1},
                      win_case{5, 5, 8, 2, 64, bf16, pmax, 5, true, hmax, -1},
                      win_case{5, 64, 4, 4, 40, f32, pavg, 5, false, mean, 0},  // W > Lk: offset 0
                      win_case{100, 8, 8, 2, 128, f32, pavg, 7, true, mean, -1},
                      win_case{100, 32, 4, 4, 40, bf16, pmax, 7, false, hmax, -1},
                      win_case{100, 33, 8, 2, 64, f16, pnone, 7, true, mean, -1},
                      win_case{100, 8, 4, 4, 64, f32, pmax, 1, true, mean, 50},  // chunk mid-way
                      win_case{1037, 32, 8, 2, 64, f16, pmax, 7, true, mean, -1},
                      win_case{1037, 64, 4, 4, 128, bf16, pavg, 5, false, hmax, -1},
                      win_case{1037, 8, 32, 8, 40, f32, pavg, 7, true, mean, -1},
                      win_case{4100, 64, 4, 4, 40, f16, pavg, 7, true, mean, -1},
                      win_case{4100, 8, 8, 2, 128, f32, pmax, 5, false, hmax, -1},
                      win_case{100, 32, 8, 2, 64, q8, pmax, 7, true, mean, -1},
                      win_case{1037, 8, 4, 4, 40, q4, pavg, 5, false, hmax, -1}));

// The LSE from the compiled main pass (dense_attention over the whole prompt), for the last W
// rows: the window probabilities must match the full softmax.
TEST(ScoreObservationWindowUnit, MainPassLseFromTheKernel) {
  const std::int64_t l = 300, w = 32, hq = 8, hkv = 2, d = 64;
  heed_ref::stored_q q(l, hq, d, 3, 0.0, 1.5);
  heed_ref::stored_kv k(l, hkv, d, dtype::bf16, 4), v(l, hkv, d, dtype::bf16, 5);
  std::vector<float> o(std::size_t(l * hq * d)), lse(std::size_t(hq * l));
  heed::dense_params p;
  p.q = q.view;
  p.k = k.view;
  p.v = v.view;
  p.o = heed::make_mutable_view(o.data(), l, hq, d);
  p.lse = lse.data();
  std::vector<char> ws(heed::dense_workspace_size(p, 1));
  ASSERT_EQ(heed::dense_attention(p, {ws.data(), ws.size()}), status::ok);

  heed::tensor_view qw = q.view;  // the last W rows
  qw.data = q.f.data() + (l - w) * hq * d;
  qw.seq = w;
  heed_ref::vec qref(q.ref.begin() + (l - w) * hq * d, q.ref.end());
  const auto ref = heed_ref::observation_window(qref, w, hq, k.ref, l - w, 0.0, 0, 1, false);
  heed::observation_window_options opt;
  std::vector<float> vert(std::size_t(hq * l)), vert_own(vert.size());
  heed::observation_window_outputs out;
  out.vertical = vert.data();
  std::vector<char> ws2(heed::observation_window_workspace_size(l, opt));
  ASSERT_EQ(heed::observation_window_scores(qw, k.view, lse.data() + (l - w), l, opt, out,
                                            {ws2.data(), ws2.size()}),
            status::ok);
  expect_rows(vert, l, ref.vertical, hq, l, "vertical (kernel lse)");
  out.vertical = vert_own.data();
  ASSERT_EQ(
      heed::observation_window_scores(qw, k.view, nullptr, 0, opt, out, {ws2.data(), ws2.size()}),
      status::ok);
  expect_rows(vert_own, l, ref.vertical, hq, l, "vertical (own lse)");
  // Every row's probabilities sum to 1, so the vertical sums of a head add up to W.
  for (std::int64_t h = 0; h < hq; ++h) {
    double sum = 0;
    for (std::int64_t j = 0; j < l; ++j) sum += vert[std::size_t(h * l + j)];
    EXPECT_NEAR(sum, double(w), 1e-4);
  }
}

// A stale LSE (keys evicted since the main pass) gives rows that do not sum to 1, while
// lse == nullptr renormalizes over the given keys.
TEST(ScoreObservationWindowUnit, StaleLseVersusOwnLse) {
  const std::int64_t lk = 50, w = 4, d = 16;
  heed_ref::stored_q q(w, 1, d, 8);
  heed_ref::stored_kv k(lk, 1, d, dtype::f32, 9);
  const auto ref = heed_ref::observation_window(q.ref, w, 1, k.ref, lk - w, 0.0, 0, 1, false);
  std::vector<float> lse(w);
  for (std::int64_t i = 0; i < w; ++i) lse[std::size_t(i)] = float(ref.lse[std::size_t(i)]) + 1.f;
  heed::observation_window_options opt;
  std::vector<float> vert(lk);
  heed::observation_window_outputs out;
  out.vertical = vert.data();
  std::vector<char> ws(heed::observation_window_workspace_size(lk, opt));
  ASSERT_EQ(heed::observation_window_scores(q.view, k.view, lse.data(), 0, opt, out,
                                            {ws.data(), ws.size()}),
            status::ok);
  double sum = 0;
  for (float x : vert) sum += x;
  EXPECT_NEAR(sum, double(w) / std::exp(1.0), 1e-4);
  ASSERT_EQ(
      heed::observation_window_scores(q.view, k.view, nullptr, 0, opt, out, {ws.data(), ws.size()}),
      status::ok);
  sum = 0;
  for (float x : vert) sum += x;
  EXPECT_NEAR(sum, double(w), 1e-4);
}

// Soft-capping, ALiBi, a sliding window and learned sinks through builtin_variant, against the
// naive attention reference's probabilities; with the reference LSE and with lse == nullptr (the
// variant's sinks must join the normalizer then).
TEST(ScoreObservationWindowUnit, BuiltinVariantMatchesNaiveAttention) {
  const std::int64_t lk = 90, w = 12, hq = 4, hkv = 2, d = 24;
  heed_ref::stored_q q(w, hq, d, 12, 0.0, 2.0);
  heed_ref::stored_kv k(lk, hkv, d, dtype::f16, 13);
  const std::vector<float> slopes = {0.1f, 0.05f, 0.2f, 0.f}, sinks = {1.f, -0.5f, 0.f, 2.f};
  heed_ref::attention_problem ap = window_problem(q, k, w, lk, hq, hkv, d);
  ap.softcap = 5.0;
  ap.window_left = 40;
  ap.alibi_slopes.assign(slopes.begin(), slopes.end());
  ap.sink_logits.assign(sinks.begin(), sinks.end());
  const auto r = heed_ref::naive_attention(ap);
  heed_ref::vec vref(std::size_t(hq * lk), 0.0), cref(std::size_t(hq * lk), 0.0);
  for (std::int64_t h = 0; h < hq; ++h)
    for (std::int64_t j = 0; j < lk; ++j) {
      double cnt = 0;
      for (std::int64_t i = 0; i < w; ++i) {
        const std::int64_t pos = lk - w + i;
        vref[std::size_t(h * lk + j)] += r.prob_at(h, i, j);
        if (j <= pos && pos - j <= 40) cnt += 1;
      }
      cref[std::size_t(h * lk + j)] = cnt > 0 ? vref[std::size_t(h * lk + j)] / cnt : 0.0;
    }
  const auto cmean = heed_ref::reduce_heads(cref, hq, hkv, lk, false);

  heed::builtin_variant var;
  var.cap = 5.f;
  var.window_left = 40;
  var.slopes = slopes.data();
  var.sinks = sinks.data();
  const std::vector<float> lse = window_lse(r, hq, w);
  heed::observation_window_options opt;
  std::vector<float> vert(std::size_t(hq * lk)), cm(std::size_t(hkv * lk));
  heed::observation_window_outputs out;
  out.vertical = vert.data();
  out.colmean = cm.data();
  std::vector<char> ws(heed::observation_window_workspace_size(lk, opt));
  for (const float* l :
       {static_cast<const float*>(lse.data()), static_cast<const float*>(nullptr)}) {
    ASSERT_EQ(heed::observation_window_scores(q.view, k.view, l, 0, opt, out,
                                              {ws.data(), ws.size()}, var),
              status::ok);
    expect_rows(vert, lk, vref, hq, lk, l ? "vertical (lse)" : "vertical (own lse)");
    expect_rows(cm, lk, cmean, hkv, lk, l ? "colmean (lse)" : "colmean (own lse)");
  }
}

// The options' logit settings, one built-in at a time and together, through with_builtin_variant
// (the kernels' own mapping), against the naive attention reference; with the reference LSE and
// with lse == nullptr. An explicit variant beside settings is refused (one source for the logits).
TEST(ScoreObservationWindowUnit, EveryLogitSettingMatchesNaiveAttention) {
  const std::int64_t lk = 70, w = 9, hq = 4, hkv = 2, d = 16;
  heed_ref::stored_q q(w, hq, d, 31, 0.0, 2.0);
  heed_ref::stored_kv k(lk, hkv, d, dtype::f16, 32);
  const std::vector<float> per_head = {0.3f, 0.05f, 0.2f, 0.1f}, sinks = {1.f, -0.5f, 0.f, 2.f};
  std::vector<float> bias(std::size_t(hq * 3));
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.5f * float(i % 5) - 1.f;
  for (int which = 0; which < 9; ++which) {
    SCOPED_TRACE(which);
    heed::observation_window_options opt;
    heed_ref::attention_problem ap = window_problem(q, k, w, lk, hq, hkv, d);
    if (which == 0 || which == 8) opt.logits.softcap = 3.f, ap.softcap = 3.0;
    if (which == 1 || which == 8) {
      opt.logits.alibi_slopes = per_head.data();
      ap.alibi_slopes.assign(per_head.begin(), per_head.end());
    }
    if (which == 2 || which == 8) opt.logits.window_left = 20, ap.window_left = 20;
    if (which == 3 || which == 8) {
      opt.logits.sink_logits = sinks.data();
      ap.sink_logits.assign(sinks.begin(), sinks.end());
    }
    if (which == 4) {
      opt.logits.ssmax = per_head.data();
      ap.ssmax.assign(per_head.begin(), per_head.end());
    }
    if (which == 5) {
      opt.logits.length_scale_base = 8;
      opt.logits.length_scale_floor = 0.7f;
      ap.length_scale_base = 8;
      ap.length_scale_floor = 0.7f;
    }
    if (which == 6) {
      opt.logits.key_bias = bias.data();
      opt.logits.key_bias_len = 3;
      ap.key_bias.assign(bias.begin(), bias.end());
      ap.key_bias_len = 3;
    }
    if (which == 7) {
      opt.logits.sigmoid = true;
      opt.logits.sigmoid_bias = per_head.data();
      ap.sigmoid = true;
      ap.sigmoid_bias.assign(per_head.begin(), per_head.end());
    }
    if (which == 8) opt.logits.scale = 0.4f, ap.scale = 0.4;
    const auto r = heed_ref::naive_attention(ap);
    heed_ref::vec vref(std::size_t(hq * lk), 0.0);
    for (std::int64_t h = 0; h < hq; ++h)
      for (std::int64_t j = 0; j < lk; ++j)
        for (std::int64_t i = 0; i < w; ++i) vref[std::size_t(h * lk + j)] += r.prob_at(h, i, j);
    const std::vector<float> lse = window_lse(r, hq, w);
    std::vector<float> vert(std::size_t(hq * lk));
    heed::observation_window_outputs out;
    out.vertical = vert.data();
    std::vector<char> ws(heed::observation_window_workspace_size(lk, opt));
    for (const float* l :
         {static_cast<const float*>(lse.data()), static_cast<const float*>(nullptr)}) {
      ASSERT_EQ(
          heed::observation_window_scores(q.view, k.view, l, 0, opt, out, {ws.data(), ws.size()}),
          status::ok);
      expect_rows(vert, lk, vref, hq, lk, l ? "vertical (lse)" : "vertical (own lse)");
    }
    if (which != 8) continue;
    EXPECT_EQ(heed::observation_window_scores(q.view, k.view, nullptr, 0, opt, out,
                                              {ws.data(), ws.size()}, heed::builtin_variant{}),
              status::invalid_argument);
    opt.logits.softcap = -1.f;
    EXPECT_EQ(heed::observation_window_scores(q.view, k.view, nullptr, 0, opt, out,
                                              {ws.data(), ws.size()}),
              status::invalid_argument);
  }
}

// The query-scale hook (SSMax and entropy-invariant length scaling, through builtin_row_variant):
// each row's logits are multiplied by its scale before the softmax, as in the main pass.
TEST(ScoreObservationWindowUnit, QueryScaleMatchesNaiveAttention) {
  const std::int64_t lk = 120, w = 10, hq = 4, hkv = 1, d = 32;
  heed_ref::stored_q q(w, hq, d, 21, 0.0, 1.5);
  heed_ref::stored_kv k(lk, hkv, d, dtype::f32, 22);
  const std::vector<float> a = {0.3f, 0.25f, 0.4f, 0.2f};
  heed_ref::attention_problem ap = window_problem(q, k, w, lk, hq, hkv, d);
  ap.ssmax.assign(a.begin(), a.end());
  ap.length_scale_base = 16;
  ap.length_scale_floor = 0.5;
  const auto r = heed_ref::naive_attention(ap);
  heed_ref::vec vref(std::size_t(hq * lk), 0.0);
  for (std::int64_t h = 0; h < hq; ++h)
    for (std::int64_t j = 0; j < lk; ++j)
      for (std::int64_t i = 0; i < w; ++i) vref[std::size_t(h * lk + j)] += r.prob_at(h, i, j);

  heed::builtin_row_variant var;
  var.ssmax = a.data();
  var.inv_log_base = 1.f / std::log(16.f);
  var.length_floor = 0.5f;
  const std::vector<float> lse = window_lse(r, hq, w);
  heed::observation_window_options opt;
  std::vector<float> vert(std::size_t(hq * lk));
  heed::observation_window_outputs out;
  out.vertical = vert.data();
  std::vector<char> ws(heed::observation_window_workspace_size(lk, opt));
  for (const float* l :
       {static_cast<const float*>(lse.data()), static_cast<const float*>(nullptr)}) {
    ASSERT_EQ(heed::observation_window_scores(q.view, k.view, l, 0, opt, out,
                                              {ws.data(), ws.size()}, var),
              status::ok);
    expect_rows(vert, lk, vref, hq, lk, l ? "vertical (lse)" : "vertical (own lse)");
  }
  // Without the scale the probabilities differ (the check above can fail).
  const heed::builtin_row_variant plain;
  ASSERT_EQ(heed::observation_window_scores(q.view, k.view, nullptr, 0, opt, out,
                                            {ws.data(), ws.size()}, plain),
            status::ok);
  double diff = 0;
  for (std::size_t j = 0; j < vert.size(); ++j) diff = std::max(diff, std::abs(vert[j] - vref[j]));
  EXPECT_GT(diff, 1e-2);
}

// Without the causal mask every row sees every key (slash offsets below 0 are dropped).
TEST(ScoreObservationWindowUnit, NonCausal) {
  const std::int64_t lk = 600, w = 9, hq = 8, hkv = 2, d = 40;
  heed_ref::stored_q q(w, hq, d, 14, 0.0, 1.5);
  heed_ref::stored_kv k(lk, hkv, d, dtype::bf16, 15);
  const auto ref = heed_ref::observation_window(q.ref, w, hq, k.ref, 100, 0.0, 1, 5, false,
                                                /*causal=*/false);
  heed::observation_window_options opt;
  opt.causal = false;
  opt.q_offset = 100;
  opt.pool = pool_kind::max;
  opt.pool_kernel = 5;
  std::vector<float> win(std::size_t(hkv * lk)), vert(std::size_t(hq * lk)), sl(vert.size()),
      cm(win.size());
  heed::observation_window_outputs out;
  out.window = win.data();
  out.vertical = vert.data();
  out.slash = sl.data();
  out.colmean = cm.data();
  std::vector<char> ws(heed::observation_window_workspace_size(lk, opt));
  for (bool own : {false, true}) {
    std::vector<float> lse(std::size_t(hq * w));
    for (std::size_t i = 0; i < lse.size(); ++i) lse[i] = float(ref.lse[i]);
    ASSERT_EQ(heed::observation_window_scores(q.view, k.view, own ? nullptr : lse.data(), 0, opt,
                                              out, {ws.data(), ws.size()}),
              status::ok);
    expect_rows(win, lk, ref.window, hkv, lk, "window");
    expect_rows(vert, lk, ref.vertical, hq, lk, "vertical");
    expect_rows(sl, lk, ref.slash, hq, lk, "slash");
    expect_rows(cm, lk, ref.colmean, hkv, lk, "colmean");
  }
}

TEST(ScoreObservationWindowUnit, DetectSinks) {
  const std::vector<float> cm = {0.5f, 0.01f, 0.2f, 0.1f, 0.0f, 0.11f};
  std::int64_t idx[6], n = -1;
  ASSERT_EQ(heed::detect_sinks(cm.data(), 6, heed::default_sink_threshold, idx, 6, &n), status::ok);
  ASSERT_EQ(n, 3);
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 2);
  EXPECT_EQ(idx[2], 5);  // not only position 0
  EXPECT_EQ(heed::detect_sinks(cm.data(), 6, 0.1f, idx, 2, &n), status::workspace_too_small);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(heed::detect_sinks(cm.data(), 6, 0.1f, nullptr, 0, &n), status::workspace_too_small);
  EXPECT_EQ(heed::detect_sinks(cm.data(), 6, 0.6f, nullptr, 0, &n), status::ok);
  EXPECT_EQ(n, 0);
  EXPECT_EQ(heed::detect_sinks(nullptr, 6, 0.1f, idx, 6, &n), status::null_pointer);
  EXPECT_EQ(heed::detect_sinks(cm.data(), 6, 0.1f, idx, 6, nullptr), status::null_pointer);
  EXPECT_EQ(heed::detect_sinks(cm.data(), -1, 0.1f, idx, 6, &n), status::invalid_argument);
  EXPECT_EQ(heed::detect_sinks(cm.data(), 6, NAN, idx, 6, &n), status::invalid_argument);
}

TEST(ScoreObservationWindowErrors, BadInputs) {
  heed_ref::stored_q q(8, 4, 16, 1), q3(8, 3, 16, 1), q32(40, 4, 16, 1);
  heed_ref::stored_kv k(30, 2, 16, dtype::bf16, 2);
  heed::observation_window_options opt;
  std::vector<char> ws(heed::observation_window_workspace_size(30, opt));
  const heed::workspace w{ws.data(), ws.size()};
  std::vector<float> buf(4 * 64), lse(64);
  heed::observation_window_outputs out;
  out.window = buf.data();
  auto run = [&](const heed::tensor_view& qq, const heed::observation_window_options& o,
                 const heed::observation_window_outputs& oo, heed::workspace wk,
                 const float* l = nullptr, std::int64_t ls = 0) {
    return heed::observation_window_scores(qq, k.view, l, ls, o, oo, wk);
  };
  EXPECT_EQ(run(q.view, opt, out, w), status::ok);
  EXPECT_EQ(run(q32.view, opt, out, w), status::invalid_argument);  // W > Lk, default offset
  auto o = opt;
  o.q_offset = 0;
  EXPECT_EQ(run(q32.view, o, out, w), status::ok);  // explicit offset: allowed
  o.q_offset = -2;
  EXPECT_EQ(run(q.view, o, out, w), status::invalid_argument);
  EXPECT_EQ(run(q3.view, opt, out, w), status::shape_mismatch);
  EXPECT_EQ(run(k.view, opt, out, w), status::unsupported_dtype);
  EXPECT_EQ(run(q.view, opt, out, {ws.data(), ws.size() - 1}), status::workspace_too_small);
  for (int kernel : {0, 2, 6, -1}) {
    o = opt;
    o.pool_kernel = kernel;
    EXPECT_EQ(run(q.view, o, out, w), status::invalid_argument) << kernel;
  }
  o = opt;
  o.pool = static_cast<pool_kind>(3);
  EXPECT_EQ(run(q.view, o, out, w), status::invalid_argument);
  o = opt;
  o.reduce = static_cast<head_reduce>(-1);
  EXPECT_EQ(run(q.view, o, out, w), status::invalid_argument);
  o = opt;
  o.logits.scale = -0.5f;
  EXPECT_EQ(run(q.view, o, out, w), status::invalid_argument);
  EXPECT_EQ(run(q.view, opt, out, w, lse.data(), 7), status::invalid_stride);  // < W
  auto bad = out;
  bad.window_head_stride = 29;
  EXPECT_EQ(run(q.view, opt, bad, w), status::invalid_stride);
  bad = out;
  bad.slash = buf.data();
  bad.slash_head_stride = -1;
  EXPECT_EQ(run(q.view, opt, bad, w), status::invalid_stride);
  // No output requested: nothing to do, even without a workspace.
  EXPECT_EQ(run(q.view, opt, heed::observation_window_outputs{}, {nullptr, 0}), status::ok);
}

}  // namespace
