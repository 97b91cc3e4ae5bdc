// The header-only kernel dense_attention_t<default arch, Variant, Observer> with compile-time
// variants and observers a user writes: every hook (logits transform, mask, row finalize, key
// range), the public variant types (alibi, softcap, sliding_window, learned_sinks) chained, and
// observers (row stats, decode probabilities, observer_pair), against the float64 reference.
// Only the default arch is instantiated here (the compiled library covers the other ISAs), and
// only three (variant, observer) pairs, to keep compile time down.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/dense.hpp"
#include "heed/attention/variants/alibi.hpp"
#include "heed/attention/variants/learned_sinks.hpp"
#include "heed/attention/variants/sliding_window.hpp"
#include "heed/attention/variants/softcap.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/scoring/observer.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using Arch = xsimd::default_arch;

// A user variant with every hook:
//   transform: s + bias[h] * (k_pos & 3)
//   mask:      q_pos - k_pos <= 20, and k_pos even or q_pos - k_pos < 4
//   key range: k >= q_lo - 20 (agrees with the mask)
//   finalize:  a sink whose logit depends on the row: 0.25 * (q_pos % 5) - 0.5
struct user_variant : heed::variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_row_finalize = true;
  static constexpr bool has_key_range = true;
  static constexpr std::int32_t reach = 20;
  const float* bias = nullptr;  // [Hq]

  static double sink_of(std::int64_t q_pos) { return 0.25 * double(q_pos % 5) - 0.5; }

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const heed::lane_ctx<A>& c) const noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    return xsimd::fma(xsimd::batch<float, A>(bias[c.q_head]), xsimd::to_float(c.k_pos & I(3)), s);
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const heed::lane_ctx<A>& c) const noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    const I dist = c.q_pos - c.k_pos;
    const auto near = dist <= I(reach);
    const auto even = (c.k_pos & I(1)) == I(0);
    return xsimd::bool_cast(near && (even || dist < I(4)));
  }
  void finalize_row(int, std::int64_t q_pos, heed::row_state& r) const noexcept {
    heed::fold_virtual_logit(r, static_cast<float>(sink_of(q_pos)));
  }
  void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                 std::int64_t&) const noexcept {
    k_lo = std::max(k_lo, q_lo - reach);
  }
};

// The public single-purpose variants applied in sequence (ALiBi, softcap, window, sinks: the
// same order as the compiled library's built-ins).
struct chained_public_variants : heed::variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_row_finalize = true;
  static constexpr bool has_key_range = true;
  heed::alibi a;
  heed::softcap cap;
  heed::sliding_window win;
  heed::learned_sinks sinks;

  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const heed::lane_ctx<A>& c) const noexcept {
    return cap.transform_logits(a.transform_logits(s, c), c);
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const heed::lane_ctx<A>& c) const noexcept {
    return win.keep(c);
  }
  void finalize_row(int h, std::int64_t q_pos, heed::row_state& r) const noexcept {
    sinks.finalize_row(h, q_pos, r);
  }
  void key_range(std::int64_t q_lo, std::int64_t q_hi, std::int64_t& k_lo,
                 std::int64_t& k_hi) const noexcept {
    win.key_range(q_lo, q_hi, k_lo, k_hi);
  }
};

static_assert(chained_public_variants::has_logits_transform && heed::alibi::has_logits_transform &&
                  heed::softcap::has_logits_transform && !heed::softcap::has_logits_mask &&
                  heed::sliding_window::has_logits_mask && heed::sliding_window::has_key_range &&
                  heed::learned_sinks::has_row_finalize && !heed::learned_sinks::has_logits_mask,
              "variant feature flags");
static_assert(!heed::observer_traits<heed::null_observer>::row_stats &&
                  !heed::observer_traits<heed::null_observer>::probs,
              "the null observer wants nothing");

// Records everything an observer can see; thread safe.
struct recording_observer {
  static constexpr bool wants_row_stats = true;
  static constexpr bool wants_probs = true;
  std::int64_t hq, lq, lk;
  bool active = true;
  std::mutex mu;
  std::vector<float> lse, entropy;  // [hq][lq]
  std::vector<int> row_calls;       // [hq][lq]
  std::vector<float> probs;         // [hq][lk] (decode)
  std::vector<int> prob_calls;      // [hq][lk]
  std::int64_t bad = 0;

  recording_observer(std::int64_t h, std::int64_t q, std::int64_t k) : hq(h), lq(q), lk(k) {
    lse.assign(static_cast<std::size_t>(hq * lq), 0.f);
    entropy = lse;
    row_calls.assign(static_cast<std::size_t>(hq * lq), 0);
    probs.assign(static_cast<std::size_t>(hq * lk), 0.f);
    prob_calls.assign(static_cast<std::size_t>(hq * lk), 0);
  }
  void on_row(int h, std::int64_t row, float l, float e) noexcept {
    std::lock_guard<std::mutex> lock(mu);
    if (h < 0 || h >= hq || row < 0 || row >= lq) {
      ++bad;
      return;
    }
    const std::size_t at = static_cast<std::size_t>(h * lq + row);
    lse[at] = l;
    entropy[at] = e;
    ++row_calls[at];
  }
  bool probs_active() const noexcept { return active; }
  void on_probs(int h, std::int64_t k0, const float* p, std::int64_t n) noexcept {
    std::lock_guard<std::mutex> lock(mu);
    if (h < 0 || h >= hq || k0 < 0 || n < 0 || k0 + n > lk) {
      ++bad;
      return;
    }
    for (std::int64_t j = 0; j < n; ++j) {
      probs[static_cast<std::size_t>(h * lk + k0 + j)] = p[j];
      ++prob_calls[static_cast<std::size_t>(h * lk + k0 + j)];
    }
  }

  void expect_rows_match(const heed_ref::attention_result& r) const {
    EXPECT_EQ(bad, 0);
    for (std::int64_t h = 0; h < hq; ++h) {
      for (std::int64_t i = 0; i < lq; ++i) {
        const std::size_t at = static_cast<std::size_t>(h * lq + i);
        ASSERT_EQ(row_calls[at], 1) << "on_row calls for head " << h << " row " << i;
        const double want_lse = r.lse_at(h, i);
        EXPECT_NEAR(lse[at], want_lse, kLseTol * (1 + std::fabs(want_lse)));
        EXPECT_NEAR(entropy[at], r.entropy_at(h, i), kEntropyTol * (1 + std::fabs(want_lse)));
      }
    }
  }
  void expect_probs_match(const heed_ref::attention_result& r) const {
    EXPECT_EQ(bad, 0);
    for (std::int64_t h = 0; h < hq; ++h) {
      for (std::int64_t j = 0; j < lk; ++j) {
        const std::size_t at = static_cast<std::size_t>(h * lk + j);
        const double want = r.prob_at(h, 0, j);
        EXPECT_LE(prob_calls[at], 1);
        if (prob_calls[at] == 0) {
          EXPECT_EQ(want, 0.0) << "visible key " << j << " of head " << h << " not reported";
          continue;
        }
        EXPECT_NEAR(probs[at], want, kProbAtol + kProbRtol * want) << "head " << h << " key " << j;
      }
    }
  }
};

template <class Variant, class Observer>
heed::status run_header_only(dense_setup& s, const Variant& var, Observer& obs, heed::executor& ex,
                             bool probs) {
  const std::size_t need = heed::dense_workspace_size_t<Arch>(s.params, ex.concurrency(), probs);
  if (need == 0) return heed::status::invalid_argument;
  exact_workspace w(need, 3);
  return heed::dense_attention_t<Arch>(s.params, var, obs, w.ws, ex);
}

dense_case user_case(const char* name, std::int64_t lq, std::int64_t lk) {
  dense_case c;
  c.name = name;
  c.lq = lq;
  c.lk = lk;
  c.hq = 4;
  c.hkv = 2;
  c.d = 64;
  c.want_entropy = false;  // a null_observer run computes no entropy; observers report it
  c.seed = 4000 + static_cast<std::uint32_t>(lq * 31 + lk);
  return c;
}

TEST(HeaderOnly, UserVariantAndObserver) {
  const std::vector<float> bias = {0.5f, -0.25f, 1.f, 0.125f};
  user_variant var;
  var.bias = bias.data();
  for (dense_case c : {user_case("prefill", 70, 90), user_case("decode", 1, 2500)}) {
    for (dtype t : {dtype::f32, dtype::f16}) {
      for (std::int64_t d : {std::int64_t(64), std::int64_t(50)}) {
        c.kv = t;
        c.d = d;
        SCOPED_TRACE(c.name + " " + heed::dtype_name(t) + " d" + std::to_string(d));
        dense_setup s(c);
        s.ref.transform = [&](int h, std::int64_t, std::int64_t k, double x) {
          return x + double(bias[static_cast<std::size_t>(h)]) * double(k & 3);
        };
        s.ref.keep = [](int, std::int64_t q, std::int64_t k) {
          return q - k <= user_variant::reach && ((k & 1) == 0 || q - k < 4);
        };
        s.ref.row_sink = [](int, std::int64_t q) { return user_variant::sink_of(q); };
        const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);

        recording_observer obs(c.hq, c.lq, c.lk);
        ASSERT_EQ(run_header_only(s, var, obs, heed::default_executor(), true), heed::status::ok);
        expect_matches_reference(s, r);
        obs.expect_rows_match(r);
        if (c.lq == 1) obs.expect_probs_match(r);
        const std::vector<unsigned char> serial = s.result_bytes();

        heed::thread_pool_executor two(2);
        recording_observer obs2(c.hq, c.lq, c.lk);
        s.reset_outputs();
        ASSERT_EQ(run_header_only(s, var, obs2, two, true), heed::status::ok);
        EXPECT_TRUE(s.result_bytes() == serial) << "1 and 2 threads differ";
        EXPECT_EQ(obs2.lse, obs.lse);
        EXPECT_EQ(obs2.entropy, obs.entropy);
        EXPECT_EQ(obs2.probs, obs.probs);
      }
    }
  }
}

TEST(HeaderOnly, ProbsInactiveObserverIsNotCalled) {
  const std::vector<float> bias = {0.f, 0.f, 0.f, 0.f};
  user_variant var;
  var.bias = bias.data();
  dense_setup s(user_case("decode", 1, 300));
  recording_observer obs(4, 1, 300);
  obs.active = false;
  // Without probabilities the workspace is smaller and enough.
  ASSERT_EQ(run_header_only(s, var, obs, heed::default_executor(), false), heed::status::ok);
  for (int calls : obs.prob_calls) ASSERT_EQ(calls, 0);
  for (int calls : obs.row_calls) ASSERT_EQ(calls, 1);
  // An active observer with a workspace sized without probabilities is refused.
  obs.active = true;
  const std::size_t small = heed::dense_workspace_size_t<Arch>(s.params, 1, false);
  std::vector<unsigned char> ws(small);
  EXPECT_EQ(heed::dense_attention_t<Arch>(s.params, var, obs, {ws.data(), ws.size()}),
            heed::status::workspace_too_small);
}

TEST(HeaderOnly, PublicVariantsChained) {
  std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
  std::vector<float> sink_logits = {0.5f, -1.f, 2.f, 0.f};
  chained_public_variants var{{},
                              heed::alibi(slopes.data()),
                              heed::softcap(6.f),
                              heed::sliding_window(25),
                              heed::learned_sinks(sink_logits.data())};
  for (dense_case c : {user_case("prefill", 80, 100), user_case("decode", 1, 2100)}) {
    c.q_amp = 10.f;
    c.kv = dtype::bf16;
    SCOPED_TRACE(c.name);
    dense_setup s(c);
    s.ref.alibi_slopes.assign(slopes.begin(), slopes.end());
    s.ref.softcap = 6.0;
    s.ref.window_left = 25;
    s.ref.sink_logits.assign(sink_logits.begin(), sink_logits.end());
    heed::null_observer obs;
    ASSERT_EQ(run_header_only(s, var, obs, heed::default_executor(), false), heed::status::ok);
    expect_matches_reference(s, heed_ref::naive_attention(s.ref));
  }
}

TEST(HeaderOnly, ObserverPairFeedsBoth) {
  for (dense_case c : {user_case("prefill", 40, 60), user_case("decode", 1, 1500)}) {
    c.kv = dtype::f16;
    c.row_head_stride = c.lq + 3;
    SCOPED_TRACE(c.name);
    dense_setup s(c);
    const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
    std::vector<float> lse(static_cast<std::size_t>(c.hq * (c.lq + 3)), kOutSentinel);
    std::vector<float> ent = lse;
    heed::row_stats_observer stats;
    stats.lse = lse.data();
    stats.entropy = ent.data();
    stats.head_stride = c.lq + 3;
    recording_observer rec(c.hq, c.lq, c.lk);
    heed::observer_pair<heed::row_stats_observer, recording_observer> both{stats, rec};
    static_assert(decltype(both)::wants_row_stats && decltype(both)::wants_probs, "pair flags");
    ASSERT_EQ(run_header_only(s, heed::no_variant{}, both, heed::default_executor(), true),
              heed::status::ok);
    expect_matches_reference(s, r);
    rec.expect_rows_match(r);
    if (c.lq == 1) rec.expect_probs_match(r);
    for (std::int64_t h = 0; h < c.hq; ++h) {
      for (std::int64_t i = 0; i < c.lq + 3; ++i) {
        const std::size_t at = static_cast<std::size_t>(h * (c.lq + 3) + i);
        if (i >= c.lq) {
          EXPECT_EQ(lse[at], kOutSentinel);
          EXPECT_EQ(ent[at], kOutSentinel);
          continue;
        }
        EXPECT_EQ(lse[at], rec.lse[static_cast<std::size_t>(h * c.lq + i)]);
        EXPECT_EQ(ent[at], rec.entropy[static_cast<std::size_t>(h * c.lq + i)]);
      }
    }
  }
}

}  // namespace
}  // namespace heed_test
