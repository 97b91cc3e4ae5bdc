// The epilogue modifiers (heed/attention/modifiers/): sink slot merge, ACT / VAR redistribution,
// head gates and masks, identity mix. Each runs after the header-only dense kernel (default arch,
// built-in variants) and is compared with a float64 reference that materializes the modified
// attention matrix:
//   sink slot:      naive attention over [slot, keys] (an augmented problem, one KV head per query
//                   head, the slot as key 0, the kernel's window / ALiBi / softcap as hooks);
//   redistribution: the reference probability row with S scaled by beta and T rescaled, times V;
//   identity mix:   (1 - alpha) P + alpha e_{q_pos}, times V.
//
// Tolerances (K/V stored as f32 or bf16 (f16 in one case), the reference built from the stored
// values; bounds in units of the dense tests' O bound b = (1e-5 + 5e-5 |ref|) * max(1, S / 10),
// S the row's largest |logit|, see attention/dense_harness.hpp):
//   sink slot:      O within 2 b; LSE within 5e-6 (1 + |LSE|); entropy within 1e-5 (1 + |LSE|).
//   redistribution: O within 2 b where o_T is computed directly (key_range; complement rows
//                   with P_T < direct_below), within 2 b (1 + f) where the complement shortcut
//                   o_T = o - o_S is used, f = (1 - beta) P_S / P_T: there the kernel's fp32 O
//                   and LSE errors reach the result multiplied by up to 1 + f.
//   identity mix:   O within 2 b.
// Measured worst errors (GCC 12 and clang, default arch and -march=native) are below 0.12 of these
// bounds.
// Exact identities are checked bit for bit: beta = 1, alpha = 0, a -inf slot, disabled heads.
// Every comparison also checks that the modification is large against its tolerance somewhere,
// so a modifier that did nothing would fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/dense.hpp"
#include "heed/attention/modifiers/head_gates.hpp"
#include "heed/attention/modifiers/identity_mix.hpp"
#include "heed/attention/modifiers/redistribution.hpp"
#include "heed/attention/modifiers/sink_slot.hpp"
#include "heed/attention/variants/builtin.hpp"
#include "heed/core/thread_pool.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::status;
using Arch = xsimd::default_arch;

constexpr double kInf = std::numeric_limits<double>::infinity();

// A dense case plus planted sink keys: keys aligned with a direction every query leans toward,
// so they take a large share of each row (P_S from about 0.3 to 0.95).
struct mod_case {
  dense_case c;
  std::vector<std::int64_t> planted;  // ascending key positions
  float strength = 0.f;               // added to every query along the sinks' direction
  bool dominant = false;              // the planted keys hold all but ~1e-5 of each row
};

inline void PrintTo(const mod_case& m, std::ostream* os) { *os << m.c.name; }

std::vector<mod_case> cases() {
  std::vector<mod_case> v;
  auto add = [&](const char* name, std::int64_t lq, std::int64_t lk, std::int64_t hq,
                 std::int64_t hkv, std::int64_t d, dtype kv, std::vector<std::int64_t> planted,
                 float strength) -> dense_case& {
    mod_case m;
    m.c.name = name;
    m.c.lq = lq;
    m.c.lk = lk;
    m.c.hq = hq;
    m.c.hkv = hkv;
    m.c.d = d;
    m.c.kv = kv;
    m.c.q_amp = 2.f;
    m.c.seed = 7000 + 31 * static_cast<std::uint32_t>(v.size());
    m.planted = std::move(planted);
    m.strength = strength;
    v.push_back(m);
    return v.back().c;
  };
  add("decode_f32_d64_gqa4", 1, 300, 8, 2, 64, dtype::f32, {0, 1}, 0.55f);
  add("prefill_bf16_d40_mha", 37, 37, 3, 3, 40, dtype::bf16, {0}, 0.6f);
  add("chunk_offset_f32_d64_gqa4", 20, 150, 4, 1, 64, dtype::f32, {0, 3, 70}, 0.45f).q_offset = 60;
  {
    dense_case& c = add("noncausal_bf16_d64_gqa4", 25, 90, 8, 2, 64, dtype::bf16, {2, 50}, 0.5f);
    c.causal = false;
  }
  {
    dense_case& c = add("variants_bf16_d40_gqa4", 30, 120, 8, 2, 40, dtype::bf16, {0, 95}, 0.6f);
    c.window_left = 50;
    c.alibi = true;
    c.softcap = 8.f;
    c.sinks = true;
  }
  add("decode_bf16_d40_gqa4_sinks", 1, 257, 4, 1, 40, dtype::bf16, {0, 4}, 0.6f).sinks = true;
  add("wide_f16_d300_mha", 9, 300, 2, 2, 300, dtype::f16, {0, 1, 2}, 0.25f);
  // One key holds all but about 1e-5 of each row: only the direct pass over T is accurate.
  add("dominant_sink_f32_d64_gqa4", 16, 64, 4, 1, 64, dtype::f32, {0}, 1.9f);
  v.back().dominant = true;
  {
    // q_pos 5..24 with keys 0..9 and a window of 3: rows from q_pos 13 on see no key.
    dense_case& c = add("empty_rows_f32_d64_gqa2", 20, 10, 2, 1, 64, dtype::f32, {6}, 0.5f);
    c.q_offset = 5;
    c.window_left = 3;
  }
  return v;
}

// The kernel's inputs and outputs, the reference problem and its result.
struct fixture {
  mod_case m;
  dense_setup s;
  heed_ref::attention_result r;
  std::vector<float> o0, lse0, ent0;  // kernel outputs before any modifier

  explicit fixture(const mod_case& mc) : m(mc), s(mc.c) {
    plant();
    r = heed_ref::naive_attention(s.ref);
    std::vector<char> ws(heed::dense_workspace_size_t<Arch>(s.params, 1));
    // The header-only kernel writes the entropy through an observer (the compiled library picks
    // one from dense_params).
    heed::row_stats_observer obs;
    obs.lse = s.lse.data();
    obs.entropy = s.entropy.data();
    obs.head_stride = s.row_stride();
    const status st = heed::dense_attention_t<Arch>(s.params, heed::builtin_variant(s.params), obs,
                                                    heed::workspace{ws.data(), ws.size()});
    EXPECT_EQ(st, status::ok);
    o0 = s.output();
    lse0 = s.lse;
    ent0 = s.entropy;
  }

  void plant() {
    const dense_case& c = s.c;
    std::mt19937 rng(c.seed + 1);
    std::uniform_int_distribution<int> coin(0, 1);
    for (std::int64_t g = 0; g < c.hkv; ++g) {
      std::vector<float> u(static_cast<std::size_t>(c.d));
      for (float& x : u) x = coin(rng) ? 1.f : -1.f;
      for (std::int64_t j : m.planted)
        for (std::int64_t x = 0; x < c.d; ++x) s.ref.k_at(j, g, x) = s.k.store(j, g, x, u[x]);
      for (std::int64_t h = g * (c.hq / c.hkv); h < (g + 1) * (c.hq / c.hkv); ++h)
        for (std::int64_t i = 0; i < c.lq; ++i)
          for (std::int64_t x = 0; x < c.d; ++x) {
            const float q = static_cast<float>(s.ref.q_at(i, h, x)) + m.strength * u[x];
            s.ref.q_at(i, h, x) = s.q.store(i, h, x, q);
          }
    }
  }

  std::int64_t q_pos(std::int64_t i) const { return s.ref.offset() + i; }
  bool visible(std::int64_t i, std::int64_t j) const {
    const std::int64_t qp = q_pos(i);
    if (s.c.causal && j > qp) return false;
    if (s.c.window_left >= 0 && qp - j > s.c.window_left) return false;
    return true;
  }
  double o_bound(std::int64_t h, std::int64_t i, double want) const {
    return 2.0 * (kOutAtol + kOutRtol * std::fabs(want)) *
           std::max(1.0, r.max_abs_logit_at(h, i) / 10.0);
  }
  std::size_t at(std::int64_t i, std::int64_t h, std::int64_t x) const {
    return static_cast<std::size_t>((i * s.c.hq + h) * s.c.d + x);
  }
  std::size_t row(std::int64_t h, std::int64_t i) const {
    return static_cast<std::size_t>(h * s.row_stride() + i);
  }
  void restore() {
    for (std::int64_t i = 0; i < s.c.lq; ++i)
      for (std::int64_t h = 0; h < s.c.hq; ++h)
        for (std::int64_t x = 0; x < s.c.d; ++x) {
          const float y = o0[at(i, h, x)];
          std::memcpy(s.o.bytes.data() + s.o.index(i, h, x) * 4, &y, 4);
        }
    s.lse = lse0;
    s.entropy = ent0;
    s.params.lse = s.lse.data();
    s.params.entropy = s.entropy.data();
  }
};

// Compares O with want ([lq][hq][d]); bound(h, i, want) per element. Returns the largest
// |want - base| / bound over all elements (how strongly the modifier changed the output, in units
// of its tolerance).
template <class Bound>
double expect_o(const fixture& f, const std::vector<double>& want, Bound bound,
                const std::string& what) {
  const dense_case& c = f.s.c;
  std::int64_t bad = 0;
  double worst = 0.0, moved = 0.0;
  std::ostringstream first;
  for (std::int64_t i = 0; i < c.lq; ++i)
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t x = 0; x < c.d; ++x) {
        const double w = want[f.at(i, h, x)];
        const double got = f.s.o.load_f32(i, h, x);
        const double b = bound(h, i, w);
        const double e = std::fabs(got - w) / b;
        moved = std::max(moved, std::fabs(w - f.o0[f.at(i, h, x)]) / b);
        if (!(e <= 1.0)) {
          if (bad++ == 0)
            first << what << ": first bad O at (row " << i << ", head " << h << ", col " << x
                  << "): got " << got << " want " << w;
        }
        worst = std::isnan(got) ? kInf : std::max(worst, e);
      }
  EXPECT_EQ(bad, 0) << first.str() << " (worst error / tolerance " << worst << ")";
  return moved;
}

class Modifiers : public ::testing::TestWithParam<mod_case> {};

// ---------------------------------------------------------------------------------------------
// Sink slot

// Reference: naive attention over [slot, keys]. One KV head per query head so per-query-head
// slots fit; the slot is key 0, the real keys move to 1..Lk and the queries by one position, so
// the causal limit and distances are unchanged. Window, ALiBi and softcap become hooks that leave
// the slot alone (visible to all, logit scale * q.k_s + bias).
heed_ref::attention_result slot_reference(const fixture& f, const std::vector<float>& ks,
                                          const std::vector<float>& vs,
                                          const std::vector<float>& bias, std::int64_t heads) {
  const dense_case& c = f.s.c;
  const heed_ref::attention_problem& p = f.s.ref;
  heed_ref::attention_problem a;
  a.lq = c.lq;
  a.lk = c.lk + 1;
  a.hq = c.hq;
  a.hkv = c.hq;
  a.d = c.d;
  a.resize();
  const std::int64_t group = c.hq / c.hkv, sgroup = c.hq / heads;
  for (std::int64_t h = 0; h < c.hq; ++h) {
    for (std::int64_t x = 0; x < c.d; ++x) {
      const std::size_t e = static_cast<std::size_t>((h / sgroup) * c.d + x);
      a.k_at(0, h, x) = ks.empty() ? 0.0 : ks[e];
      a.v_at(0, h, x) = vs[e];
    }
    for (std::int64_t j = 0; j < c.lk; ++j)
      for (std::int64_t x = 0; x < c.d; ++x) {
        heed_ref::attention_problem& pm = const_cast<heed_ref::attention_problem&>(p);
        a.k_at(j + 1, h, x) = pm.k_at(j, h / group, x);
        a.v_at(j + 1, h, x) = pm.v_at(j, h / group, x);
      }
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t x = 0; x < c.d; ++x)
        a.q_at(i, h, x) = const_cast<heed_ref::attention_problem&>(p).q_at(i, h, x);
  }
  a.scale = p.scale;
  a.causal = p.causal;
  a.q_offset = p.offset() + 1;
  a.sink_logits = p.sink_logits;
  const std::int64_t window = p.window_left;
  // A -inf bias removes the slot (as a mask: the reference's entropy needs finite logits).
  a.keep = [=](int h, std::int64_t qp, std::int64_t kp) {
    if (kp == 0) return bias.empty() || !std::isinf(bias[static_cast<std::size_t>(h / sgroup)]);
    return window < 0 || qp - kp <= window;
  };
  const std::vector<double> slopes = p.alibi_slopes;
  const double cap = p.softcap;
  a.transform = [=](int h, std::int64_t qp, std::int64_t kp, double x) {
    if (kp == 0) return bias.empty() ? x : x + bias[static_cast<std::size_t>(h / sgroup)];
    if (!slopes.empty()) x -= slopes[static_cast<std::size_t>(h)] * static_cast<double>(qp - kp);
    if (cap > 0.0) x = cap * std::tanh(x / cap);
    return x;
  };
  return heed_ref::naive_attention(a);
}

void check_slot(fixture& f, const std::vector<float>& ks, const std::vector<float>& vs,
                const std::vector<float>& bias, std::int64_t heads, const char* what) {
  const dense_case& c = f.s.c;
  f.restore();
  heed::sink_slot slot;
  slot.key = ks.empty() ? nullptr : ks.data();
  slot.value = vs.data();
  slot.logit_bias = bias.empty() ? nullptr : bias.data();
  slot.heads = heads;
  ASSERT_EQ(heed::merge_sink_slot(f.s.params, slot), status::ok);
  const heed_ref::attention_result ra = slot_reference(f, ks, vs, bias, heads);
  const double moved = expect_o(
      f, ra.o,
      [&](std::int64_t h, std::int64_t i, double w) {
        return 2.0 * (kOutAtol + kOutRtol * std::fabs(w)) *
               std::max(1.0, ra.max_abs_logit_at(h, i) / 10.0);
      },
      what);
  EXPECT_GT(moved, 50.0) << what << ": the slot barely changed O";
  std::int64_t bad_lse = 0, bad_ent = 0;
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t i = 0; i < c.lq; ++i) {
      const double want = ra.lse_at(h, i), got = f.s.lse[f.row(h, i)];
      const bool ok = std::isinf(want) ? (std::isinf(got) && got < 0)
                                       : std::fabs(got - want) <= kLseTol * (1 + std::fabs(want));
      bad_lse += !ok;
      const double lse_mag = std::isinf(want) ? 0.0 : std::fabs(want);
      const bool ent_ok =
          std::fabs(f.s.entropy[f.row(h, i)] - ra.entropy_at(h, i)) <= kEntropyTol * (1 + lse_mag);
      if (!ent_ok && bad_ent == 0)
        ADD_FAILURE() << "entropy h " << h << " i " << i << " got " << f.s.entropy[f.row(h, i)]
                      << " want " << ra.entropy_at(h, i) << " before " << f.ent0[f.row(h, i)]
                      << " ref before " << f.r.entropy_at(h, i);
      bad_ent += !ent_ok;
    }
  EXPECT_EQ(bad_lse, 0) << what << ": LSE";
  EXPECT_EQ(bad_ent, 0) << what << ": entropy";
}

TEST_P(Modifiers, SinkSlotMatchesAttentionOverSlotAndKeys) {
  fixture f(GetParam());
  const dense_case& c = f.s.c;
  std::mt19937 rng(c.seed + 2);
  // Slot logits of the size of the row's largest (about 15 with a dominant sink).
  const float shift = f.m.dominant ? 12.f : 0.f;
  std::uniform_real_distribution<float> unit(-1.f, 1.f), bias_dist(1.f + shift, 5.f + shift);
  auto random_vec = [&](std::int64_t n, float amp) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (float& y : x) y = amp * unit(rng);
    return x;
  };
  // Per KV head: a learned key and value, bias in [1, 5].
  {
    const std::vector<float> ks = random_vec(c.hkv * c.d, 1.f), vs = random_vec(c.hkv * c.d, 1.f);
    std::vector<float> bias(static_cast<std::size_t>(c.hkv));
    for (float& b : bias) b = bias_dist(rng);
    check_slot(f, ks, vs, bias, c.hkv, "per kv head");
  }
  // Per query head, zero key (logit = bias, gpt-oss-like with a value), head 0 disabled (-inf).
  {
    const std::vector<float> vs = random_vec(c.hq * c.d, 1.f);
    std::vector<float> bias(static_cast<std::size_t>(c.hq));
    for (float& b : bias) b = bias_dist(rng);
    bias[0] = -std::numeric_limits<float>::infinity();
    check_slot(f, {}, vs, bias, c.hq, "per query head");
    for (std::int64_t i = 0; i < c.lq; ++i) {
      for (std::int64_t x = 0; x < c.d; ++x)
        ASSERT_EQ(f.s.o.load_f32(i, 0, x), f.o0[f.at(i, 0, x)]) << "disabled head changed";
      ASSERT_EQ(std::memcmp(&f.s.lse[f.row(0, i)], &f.lse0[f.row(0, i)], 4), 0);
      ASSERT_EQ(std::memcmp(&f.s.entropy[f.row(0, i)], &f.ent0[f.row(0, i)], 4), 0);
    }
  }
}

TEST_P(Modifiers, SinkSlotWithMinusInfLogitIsPlainAttention) {
  fixture f(GetParam());
  const dense_case& c = f.s.c;
  std::vector<float> ks(static_cast<std::size_t>(c.hkv * c.d), 0.5f);
  std::vector<float> vs(ks.size(), std::numeric_limits<float>::quiet_NaN());  // never read
  std::vector<float> bias(static_cast<std::size_t>(c.hkv), -std::numeric_limits<float>::infinity());
  heed::sink_slot slot{ks.data(), vs.data(), bias.data(), c.hkv};
  ASSERT_EQ(heed::merge_sink_slot(f.s.params, slot), status::ok);
  EXPECT_EQ(f.s.output(), f.o0);
  EXPECT_EQ(std::memcmp(f.s.lse.data(), f.lse0.data(), f.lse0.size() * 4), 0);
  EXPECT_EQ(std::memcmp(f.s.entropy.data(), f.ent0.data(), f.ent0.size() * 4), 0);
}

// ---------------------------------------------------------------------------------------------
// Redistribution

struct redist_spec {
  std::vector<std::vector<std::int64_t>> s;  // [hq] sets S
  bool range = false;
  std::int64_t t_lo = 0, t_hi = 0;
  std::vector<double> beta;   // [hq]
  std::vector<char> enabled;  // [hq]
};

// The modified probability rows built explicitly, times V. Also returns f per row (for the
// tolerance) and checks each modified row's mass.
std::vector<double> redist_reference(const fixture& f, const redist_spec& sp,
                                     std::vector<double>& f_row) {
  const dense_case& c = f.s.c;
  const std::int64_t group = c.hq / c.hkv;
  std::vector<double> out(f.r.o);
  f_row.assign(static_cast<std::size_t>(c.hq * c.lq), 0.0);
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t i = 0; i < c.lq; ++i) {
      if (!sp.enabled[static_cast<std::size_t>(h)] || std::isinf(f.r.lse_at(h, i))) continue;
      const double beta = sp.beta[static_cast<std::size_t>(h)];
      const std::vector<std::int64_t>& S = sp.s[static_cast<std::size_t>(h)];
      std::vector<double> prob(static_cast<std::size_t>(c.lk), 0.0);
      std::vector<int> kind(static_cast<std::size_t>(c.lk), 0);  // 1 = S, 2 = T
      double ps = 0.0, pt = 0.0, total = f.r.sink_probs[static_cast<std::size_t>(h * c.lq + i)];
      for (std::int64_t j = 0; j < c.lk; ++j) {
        if (!f.visible(i, j)) continue;
        const double pj = f.r.prob_at(h, i, j);
        prob[static_cast<std::size_t>(j)] = pj;
        total += pj;
        if (std::binary_search(S.begin(), S.end(), j)) {
          kind[static_cast<std::size_t>(j)] = 1;
          ps += pj;
        } else if (!sp.range || (j >= sp.t_lo && j < sp.t_hi)) {
          kind[static_cast<std::size_t>(j)] = 2;
          pt += pj;
        }
      }
      EXPECT_NEAR(total, 1.0, 1e-12) << "reference row mass";
      if (ps == 0.0 || pt == 0.0) continue;
      const double grow = 1.0 + (1.0 - beta) * ps / pt;
      f_row[static_cast<std::size_t>(h * c.lq + i)] = grow - 1.0;
      double mass = f.r.sink_probs[static_cast<std::size_t>(h * c.lq + i)];
      for (std::int64_t j = 0; j < c.lk; ++j) {
        double& pj = prob[static_cast<std::size_t>(j)];
        if (kind[static_cast<std::size_t>(j)] == 1) pj *= beta;
        if (kind[static_cast<std::size_t>(j)] == 2) pj *= grow;
        mass += pj;
      }
      EXPECT_NEAR(mass, 1.0, 1e-12) << "redistribution must conserve the row mass";
      for (std::int64_t x = 0; x < c.d; ++x) {
        double acc = 0.0;
        for (std::int64_t j = 0; j < c.lk; ++j)
          acc += prob[static_cast<std::size_t>(j)] *
                 const_cast<heed_ref::attention_problem&>(f.s.ref).v_at(j, h / group, x);
        out[f.at(i, h, x)] = acc;
      }
    }
  return out;
}

// Applies r and compares with the reference; returns how much O moved (in tolerance units).
// Rows computed through the complement shortcut (o_T = o - o_S) carry the fp32 errors of O and
// LSE amplified by f, so their bound is 2 b (1 + f); rows with a directly computed o_T (key_range,
// or complement rows with P_T < direct_below) are held to 2 b. A shortcut row has
// P_T >= direct_below, i.e. f <= (1 - beta) / direct_below, hence the cap.
double check_redist(fixture& f, const heed::redistribution& r, const redist_spec& sp,
                    const char* what) {
  f.restore();
  EXPECT_EQ(heed::redistribute_attention(f.s.params, r), status::ok) << what;
  std::vector<double> fr;
  const std::vector<double> want = redist_reference(f, sp, fr);
  return expect_o(
      f, want,
      [&](std::int64_t h, std::int64_t i, double w) {
        double amp = 0.0;
        if (r.target == heed::redistribution_target::complement) {
          const double beta = sp.beta[static_cast<std::size_t>(h)];
          amp = fr[static_cast<std::size_t>(h * f.s.c.lq + i)];
          if (r.direct_below > 0.f) amp = std::min(amp, (1.0 - beta) / double(r.direct_below));
        }
        return f.o_bound(h, i, w) * (1.0 + amp);
      },
      what);
}

redist_spec uniform_spec(const fixture& f, const std::vector<std::int64_t>& S, double beta) {
  redist_spec sp;
  sp.s.assign(static_cast<std::size_t>(f.s.c.hq), S);
  sp.beta.assign(static_cast<std::size_t>(f.s.c.hq), beta);
  sp.enabled.assign(static_cast<std::size_t>(f.s.c.hq), 1);
  return sp;
}

TEST_P(Modifiers, ActComplementMatchesReference) {
  fixture f(GetParam());
  const std::vector<std::int64_t>& S = f.m.planted;
  const redist_spec sp = uniform_spec(f, S, 0.4);
  heed::redistribution r = heed::act_redistribution(S.data(), std::int64_t(S.size()));
  EXPECT_GT(check_redist(f, r, sp, "default"), 50.0);
  r.direct_below = 0.f;  // always o_T = o - o_S
  const double moved = check_redist(f, r, sp, "shortcut only");
  if (!f.m.dominant) {  // else the bound is as wide as the change
    EXPECT_GT(moved, 50.0);
  }
  r.direct_below = 1.f;  // always the direct pass over T
  EXPECT_GT(check_redist(f, r, sp, "direct only"), 50.0);
  // beta = 0 removes S entirely.
  r = heed::act_redistribution(S.data(), std::int64_t(S.size()), 0.f);
  EXPECT_GT(check_redist(f, r, uniform_spec(f, S, 0.0), "beta 0"), 50.0);
}

TEST_P(Modifiers, VarKeyRangeMatchesReference) {
  fixture f(GetParam());
  const std::int64_t lk = f.s.c.lk;
  const std::vector<std::int64_t>& S = f.m.planted;
  // "Image tokens": the middle half of the keys, and a range holding a key of S (which must stay
  // in S) when there is one past position 0.
  redist_spec sp = uniform_spec(f, S, 0.4);
  sp.range = true;
  sp.t_lo = lk / 4;
  sp.t_hi = lk - lk / 4;
  heed::redistribution r =
      heed::var_redistribution(S.data(), std::int64_t(S.size()), sp.t_lo, sp.t_hi);
  const double moved = check_redist(f, r, sp, "middle half");
  EXPECT_GT(moved, 50.0);
  sp.t_lo = S.back() > 0 ? S.back() - 1 : 1;
  sp.t_hi = std::min<std::int64_t>(lk, sp.t_lo + 40);
  r.t_lo = sp.t_lo;
  r.t_hi = sp.t_hi;
  check_redist(f, r, sp, "range holding a key of S");
  // An empty range, and a range holding only a key of S (T \ S empty), change nothing.
  f.restore();
  r.t_lo = r.t_hi = 3;
  ASSERT_EQ(heed::redistribute_attention(f.s.params, r), status::ok);
  EXPECT_EQ(f.s.output(), f.o0);
  r.t_lo = S.back();
  r.t_hi = S.back() + 1;
  ASSERT_EQ(heed::redistribute_attention(f.s.params, r), status::ok);
  EXPECT_EQ(f.s.output(), f.o0);
}

// Lists per group of heads, laid out [s_heads][stride] with counts (as detect_sinks_per_head
// writes them): group g gets the planted keys, plus keys 5 and 6 for odd g; the last group of
// several gets an empty list. Heads with h % 3 == 1 disabled; beta 0.2 + 0.1 * (h % 4).
void check_per_head(fixture& f, std::int64_t s_heads, const char* what) {
  const dense_case& c = f.s.c;
  const std::int64_t stride = static_cast<std::int64_t>(f.m.planted.size()) + 3;
  const std::int64_t hpg = c.hq / s_heads;
  redist_spec sp = uniform_spec(f, f.m.planted, 0.0);
  std::vector<std::int64_t> keys(static_cast<std::size_t>(s_heads * stride), -99);  // padding
  std::vector<std::int64_t> counts(static_cast<std::size_t>(s_heads));
  for (std::int64_t g = 0; g < s_heads; ++g) {
    std::vector<std::int64_t> S = f.m.planted;
    if (g % 2 == 1)
      for (std::int64_t extra : {5, 6})
        if (extra < c.lk && !std::binary_search(S.begin(), S.end(), extra)) S.push_back(extra);
    std::sort(S.begin(), S.end());
    if (g == s_heads - 1 && s_heads > 1) S.clear();
    std::copy(S.begin(), S.end(), keys.begin() + g * stride);
    counts[static_cast<std::size_t>(g)] = static_cast<std::int64_t>(S.size());
    for (std::int64_t h = g * hpg; h < (g + 1) * hpg; ++h) sp.s[static_cast<std::size_t>(h)] = S;
  }
  std::vector<float> betas(static_cast<std::size_t>(c.hq));
  std::vector<std::uint8_t> enabled(static_cast<std::size_t>(c.hq));
  for (std::int64_t h = 0; h < c.hq; ++h) {
    betas[static_cast<std::size_t>(h)] = 0.2f + 0.1f * static_cast<float>(h % 4);
    sp.beta[static_cast<std::size_t>(h)] = betas[static_cast<std::size_t>(h)];
    enabled[static_cast<std::size_t>(h)] = h % 3 != 1;
    sp.enabled[static_cast<std::size_t>(h)] = h % 3 != 1;
  }
  heed::redistribution r;
  r.s_keys = keys.data();
  r.s_head_counts = counts.data();
  r.s_heads = s_heads;
  r.s_head_stride = stride;
  r.head_beta = betas.data();
  r.head_enabled = enabled.data();
  EXPECT_GT(check_redist(f, r, sp, what), 50.0);
  for (std::int64_t h = 0; h < c.hq; ++h) {
    if (enabled[static_cast<std::size_t>(h)]) continue;
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t x = 0; x < c.d; ++x)
        ASSERT_EQ(f.s.o.load_f32(i, h, x), f.o0[f.at(i, h, x)]) << "disabled head " << h;
  }
}

TEST_P(Modifiers, RedistributionPerHeadListsMaskAndBeta) {
  fixture f(GetParam());
  check_per_head(f, f.s.c.hq, "per query head lists");
  check_per_head(f, f.s.c.hkv, "per kv head lists");
}

TEST_P(Modifiers, RedistributionWithBetaOneChangesNothing) {
  fixture f(GetParam());
  const std::vector<std::int64_t>& S = f.m.planted;
  heed::redistribution r = heed::act_redistribution(S.data(), std::int64_t(S.size()), 1.f);
  ASSERT_EQ(heed::redistribute_attention(f.s.params, r), status::ok);
  EXPECT_EQ(f.s.output(), f.o0);
  r = heed::var_redistribution(S.data(), std::int64_t(S.size()), 0, f.s.c.lk, 1.f);
  ASSERT_EQ(heed::redistribute_attention(f.s.params, r), status::ok);
  EXPECT_EQ(f.s.output(), f.o0);
  // And the reference's modified rows (beta = 1) are the original ones.
  std::vector<double> fr;
  const std::vector<double> want = redist_reference(f, uniform_spec(f, S, 1.0), fr);
  for (std::size_t e = 0; e < want.size(); ++e) ASSERT_NEAR(want[e], f.r.o[e], 1e-12);
}

TEST_P(Modifiers, RedistributionResultIndependentOfThreads) {
  fixture f(GetParam());
  const std::vector<std::int64_t>& S = f.m.planted;
  const heed::redistribution r = heed::act_redistribution(S.data(), std::int64_t(S.size()));
  ASSERT_EQ(heed::redistribute_attention(f.s.params, r), status::ok);
  const std::vector<float> serial = f.s.output();
  f.restore();
  heed::thread_pool_executor pool(2);
  ASSERT_EQ(heed::redistribute_attention(f.s.params, r, pool), status::ok);
  EXPECT_EQ(f.s.output(), serial);
}

// ---------------------------------------------------------------------------------------------
// Identity mix

std::vector<double> identity_reference(const fixture& f, const std::vector<double>& alpha) {
  const dense_case& c = f.s.c;
  const std::int64_t group = c.hq / c.hkv;
  std::vector<double> out(f.r.o.size());
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t i = 0; i < c.lq; ++i) {
      const double a = alpha[static_cast<std::size_t>(h)];
      std::vector<double> row(static_cast<std::size_t>(c.lk));
      for (std::int64_t j = 0; j < c.lk; ++j)
        row[static_cast<std::size_t>(j)] =
            (1.0 - a) * f.r.prob_at(h, i, j) + (j == f.q_pos(i) ? a : 0.0);
      for (std::int64_t x = 0; x < c.d; ++x) {
        double acc = 0.0;
        for (std::int64_t j = 0; j < c.lk; ++j)
          acc += row[static_cast<std::size_t>(j)] *
                 const_cast<heed_ref::attention_problem&>(f.s.ref).v_at(j, h / group, x);
        out[f.at(i, h, x)] = acc;
      }
    }
  return out;
}

TEST_P(Modifiers, IdentityMix) {
  fixture f(GetParam());
  const dense_case& c = f.s.c;
  const std::int64_t off = f.s.ref.offset();
  if (off < 0 || off + c.lq > c.lk) {
    EXPECT_EQ(heed::identity_mix(f.s.params, 0.5f), status::invalid_argument);
    EXPECT_EQ(f.s.output(), f.o0);
    return;
  }
  const auto bound = [&](std::int64_t h, std::int64_t i, double w) { return f.o_bound(h, i, w); };
  // One alpha.
  ASSERT_EQ(heed::identity_mix(f.s.params, 0.3f), status::ok);
  const std::vector<double> a03(static_cast<std::size_t>(c.hq), double(0.3f));
  EXPECT_GT(expect_o(f, identity_reference(f, a03), bound, "alpha 0.3"), 50.0);
  // Per head: 0, 1, 0.25, 0.7, ...
  f.restore();
  std::vector<float> alpha(static_cast<std::size_t>(c.hq));
  const float pattern[4] = {0.f, 1.f, 0.25f, 0.7f};
  for (std::int64_t h = 0; h < c.hq; ++h) alpha[static_cast<std::size_t>(h)] = pattern[h % 4];
  ASSERT_EQ(heed::identity_mix_per_head(f.s.params, alpha.data()), status::ok);
  EXPECT_GT(expect_o(f, identity_reference(f, std::vector<double>(alpha.begin(), alpha.end())),
                     bound, "per head"),
            50.0);
  // Exact: alpha 0 leaves the head alone, alpha 1 gives the diagonal value.
  for (std::int64_t h = 0; h < c.hq && h < 2; ++h)
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t x = 0; x < c.d; ++x) {
        const double want = h == 0 ? double(f.o0[f.at(i, h, x)])
                                   : const_cast<heed_ref::attention_problem&>(f.s.ref).v_at(
                                         off + i, h / (c.hq / c.hkv), x);
        ASSERT_EQ(double(f.s.o.load_f32(i, h, x)), want) << "head " << h << " row " << i;
      }
  // alpha 0 everywhere: no-op; the LSE and entropy are never touched.
  f.restore();
  ASSERT_EQ(heed::identity_mix(f.s.params, 0.f), status::ok);
  EXPECT_EQ(f.s.output(), f.o0);
  EXPECT_EQ(std::memcmp(f.s.lse.data(), f.lse0.data(), f.lse0.size() * 4), 0);
}

INSTANTIATE_TEST_SUITE_P(All, Modifiers, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<mod_case>& info) {
                           return info.param.c.name;
                         });

// ---------------------------------------------------------------------------------------------
// Head gates and masks (no reference needed: exact products and zeros)

TEST(HeadGates, GatesMaskAndSkipLists) {
  dense_case c;
  c.lq = 5;
  c.hq = 6;
  c.d = 40;
  c.pad = 3;  // padding must survive
  strided_tensor o = make_tensor(dtype::f32, c.lq, c.hq, c.d, heed::layout::head_seq_dim, c.pad);
  {
    float* of = reinterpret_cast<float*>(o.bytes.data());
    std::fill(of, of + o.bytes.size() / 4, kOutSentinel);
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  for (std::int64_t i = 0; i < c.lq; ++i)
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t x = 0; x < c.d; ++x) o.store(i, h, x, unit(rng));
  // Head 3 holds garbage (as if it was skipped): NaN and inf.
  for (std::int64_t i = 0; i < c.lq; ++i) {
    o.store(i, 3, 0, std::numeric_limits<float>::quiet_NaN());
    o.store(i, 3, 1, std::numeric_limits<float>::infinity());
  }
  const strided_tensor before = o;
  const std::vector<float> gates = {1.f, 0.5f, -2.f, 0.f, 1.25f, 0.f};
  ASSERT_EQ(heed::apply_head_gates(o.mutable_view(), gates.data()), status::ok);
  for (std::int64_t i = 0; i < c.lq; ++i)
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t x = 0; x < c.d; ++x)
        ASSERT_EQ(o.load_f32(i, h, x), gates[static_cast<std::size_t>(h)] == 0.f
                                           ? 0.f
                                           : before.load_f32(i, h, x) * gates[h])
            << i << " " << h << " " << x;
  {
    // Padding untouched: compare every byte outside the logical rows.
    std::vector<char> logical(o.bytes.size() / 4, 0);
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t x = 0; x < c.d; ++x) logical[o.index(i, h, x)] = 1;
    const float* of = reinterpret_cast<const float*>(o.bytes.data());
    for (std::size_t e = 0; e < logical.size(); ++e)
      if (!logical[e]) {
        ASSERT_EQ(of[e], kOutSentinel);
      }
  }

  // Mask: zero heads 1 and 3, keep the rest bit for bit.
  o = before;
  const std::vector<std::uint8_t> keep = {1, 0, 1, 0, 1, 1};
  ASSERT_EQ(heed::apply_head_mask(o.mutable_view(), keep.data()), status::ok);
  for (std::int64_t i = 0; i < c.lq; ++i)
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t x = 0; x < c.d; ++x) {
        const float got = o.load_f32(i, h, x), orig = before.load_f32(i, h, x);
        if (keep[static_cast<std::size_t>(h)])
          ASSERT_EQ(std::memcmp(&got, &orig, 4), 0);
        else
          ASSERT_EQ(got, 0.f);
      }

  // Skip lists.
  std::int32_t out[8];
  std::int64_t n = -1;
  ASSERT_EQ(heed::heads_to_skip(keep.data(), 6, out, 8, &n), status::ok);
  ASSERT_EQ(n, 2);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[1], 3);
  EXPECT_EQ(heed::heads_to_skip(keep.data(), 6, nullptr, 0, &n), status::workspace_too_small);
  EXPECT_EQ(n, 2);  // the count is still reported
  EXPECT_EQ(heed::heads_to_skip(keep.data(), 6, out, 1, &n), status::workspace_too_small);
  EXPECT_EQ(out[0], 1);
  // KV heads: 6 query heads over 3 KV heads (pairs); only the pair (2, 3) or (4, 5) can be
  // skipped when both are masked.
  const std::vector<std::uint8_t> keep2 = {1, 0, 0, 0, 1, 0};
  ASSERT_EQ(heed::kv_heads_to_skip(keep2.data(), 6, 3, out, 8, &n), status::ok);
  ASSERT_EQ(n, 1);
  EXPECT_EQ(out[0], 1);
  ASSERT_EQ(heed::kv_heads_to_skip(keep2.data(), 6, 1, out, 8, &n), status::ok);
  EXPECT_EQ(n, 0);
  ASSERT_EQ(heed::kv_heads_to_skip(keep2.data(), 6, 6, out, 8, &n), status::ok);
  EXPECT_EQ(n, 4);
  EXPECT_EQ(heed::kv_heads_to_skip(keep2.data(), 6, 4, out, 8, &n), status::shape_mismatch);
  // Gates -> mask -> skip list.
  std::vector<std::uint8_t> from_gates(6);
  ASSERT_EQ(heed::head_mask_from_gates(gates.data(), 6, from_gates.data()), status::ok);
  EXPECT_EQ(from_gates, (std::vector<std::uint8_t>{1, 1, 1, 0, 1, 0}));
}

// ---------------------------------------------------------------------------------------------
// Bad inputs

dense_case small_case() {
  dense_case c;
  c.name = "small";
  c.lq = 6;
  c.lk = 20;
  c.hq = 4;
  c.hkv = 2;
  c.d = 16;
  return c;
}

TEST(ModifierErrors, SinkSlot) {
  dense_setup s(small_case());
  std::vector<float> ks(64, 0.1f), vs(64, 0.2f), bias(4, 0.f);
  heed::sink_slot slot{ks.data(), vs.data(), bias.data(), 2};
  EXPECT_EQ(heed::merge_sink_slot(s.params, slot), status::ok);
  heed::sink_slot bad = slot;
  bad.value = nullptr;
  EXPECT_EQ(heed::merge_sink_slot(s.params, bad), status::null_pointer);
  bad = slot;
  bad.heads = 3;  // not a divisor of Hq = 4
  EXPECT_EQ(heed::merge_sink_slot(s.params, bad), status::shape_mismatch);
  bad.heads = 0;
  EXPECT_EQ(heed::merge_sink_slot(s.params, bad), status::shape_mismatch);
  bad = slot;
  bias[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(heed::merge_sink_slot(s.params, bad), status::invalid_argument);
  bias[1] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(heed::merge_sink_slot(s.params, bad), status::invalid_argument);
  bias[1] = 0.f;
  heed::dense_params p = s.params;
  p.lse = nullptr;  // missing LSE
  EXPECT_EQ(heed::merge_sink_slot(p, slot), status::null_pointer);
  p = s.params;
  p.q.data = nullptr;
  EXPECT_EQ(heed::merge_sink_slot(p, slot), status::null_pointer);
  p = s.params;
  p.o.dim = 8;
  EXPECT_EQ(heed::merge_sink_slot(p, slot), status::shape_mismatch);
}

TEST(ModifierErrors, Redistribution) {
  dense_setup s(small_case());
  const std::vector<std::int64_t> S = {0, 4};
  const heed::redistribution good = heed::act_redistribution(S.data(), 2);
  EXPECT_EQ(heed::redistribute_attention(s.params, good), status::ok);
  auto expect = [&](const heed::redistribution& r, status want, const char* what) {
    EXPECT_EQ(heed::redistribute_attention(s.params, r), want) << what;
  };
  heed::redistribution r = good;
  for (float b : {-0.1f, 1.1f, std::numeric_limits<float>::quiet_NaN()}) {
    r.beta = b;
    expect(r, status::invalid_argument, "beta outside [0, 1]");
  }
  r = good;
  r.direct_below = 2.f;
  expect(r, status::invalid_argument, "direct_below");
  const std::vector<std::int64_t> unsorted = {4, 0}, dup = {1, 1}, neg = {-1, 2}, high = {3, 20};
  for (const auto* bad : {&unsorted, &dup, &neg, &high}) {
    r = good;
    r.s_keys = bad->data();
    expect(r, status::invalid_argument, "bad S");
  }
  r = good;
  r.s_keys = nullptr;
  expect(r, status::null_pointer, "null S");
  r.s_count = 0;
  expect(r, status::ok, "empty S");
  r = good;
  r.s_count = -1;
  expect(r, status::invalid_argument, "negative count");
  // Lists per group of heads: [s_heads][stride] with counts.
  const std::vector<std::int64_t> keys = {0, 3, -1, 1, 2, -1};
  std::vector<std::int64_t> counts = {2, 2};
  r = good;
  r.s_keys = keys.data();
  r.s_head_counts = counts.data();
  r.s_heads = 2;
  r.s_head_stride = 3;
  expect(r, status::ok, "per-group lists");
  r.s_heads = 3;  // not a divisor of Hq = 4
  expect(r, status::shape_mismatch, "s_heads");
  r.s_heads = 0;
  expect(r, status::shape_mismatch, "s_heads 0");
  r.s_heads = 2;
  counts[1] = 4;  // more than the stride (a detect_sinks_per_head overflow)
  expect(r, status::invalid_argument, "count > stride");
  counts[1] = -1;
  expect(r, status::invalid_argument, "negative count");
  counts[1] = 3;  // takes the padding -1: not ascending
  expect(r, status::invalid_argument, "padding read as a key");
  counts = {2, 0};
  r.s_keys = nullptr;
  expect(r, status::null_pointer, "null keys with a count");
  counts = {0, 0};
  expect(r, status::ok, "all lists empty, no keys");
  // Ranges.
  r = heed::var_redistribution(S.data(), 2, 10, 5);
  expect(r, status::invalid_argument, "t_lo > t_hi");
  r = heed::var_redistribution(S.data(), 2, -1, 5);
  expect(r, status::invalid_argument, "t_lo < 0");
  r = heed::var_redistribution(S.data(), 2, 5, 21);
  expect(r, status::invalid_argument, "t_hi > Lk");
  r = heed::var_redistribution(S.data(), 2, 5, 20);
  expect(r, status::ok, "range to the end");
  r.target = static_cast<heed::redistribution_target>(7);
  expect(r, status::invalid_argument, "unknown target");
  // Per-head beta.
  std::vector<float> betas = {0.f, 1.f, 0.5f, 1.5f};
  r = good;
  r.head_beta = betas.data();
  expect(r, status::invalid_argument, "head beta > 1");
  betas[3] = 0.5f;
  expect(r, status::ok, "head betas");
  // Missing LSE; logits the modifier cannot recompute.
  heed::dense_params p = s.params;
  p.lse = nullptr;
  EXPECT_EQ(heed::redistribute_attention(p, good), status::null_pointer);
  p = s.params;
  std::vector<float> key_bias(4, 0.5f);
  p.key_bias = key_bias.data();
  p.key_bias_len = 1;
  EXPECT_EQ(heed::redistribute_attention(p, good), status::invalid_argument);
  p = s.params;
  p.k.data = nullptr;
  EXPECT_EQ(heed::redistribute_attention(p, good), status::null_pointer);
}

TEST(ModifierErrors, IdentityMixAndGates) {
  dense_setup s(small_case());
  EXPECT_EQ(heed::identity_mix(s.params, 0.5f), status::ok);
  for (float a : {-0.01f, 1.01f, std::numeric_limits<float>::quiet_NaN()})
    EXPECT_EQ(heed::identity_mix(s.params, a), status::invalid_argument) << a;
  std::vector<float> alpha = {0.f, 0.5f, 1.f, 2.f};
  EXPECT_EQ(heed::identity_mix_per_head(s.params, alpha.data()), status::invalid_argument);
  EXPECT_EQ(heed::identity_mix_per_head(s.params, nullptr), status::null_pointer);
  alpha[3] = 1.f;
  EXPECT_EQ(heed::identity_mix_per_head(s.params, alpha.data()), status::ok);
  heed::dense_params p = s.params;
  p.q_offset = 15;  // rows at 15..20, but keys end at 19
  EXPECT_EQ(heed::identity_mix(p, 0.5f), status::invalid_argument);
  p.q_offset = 14;
  EXPECT_EQ(heed::identity_mix(p, 0.5f), status::ok);
  p.o.data = nullptr;
  EXPECT_EQ(heed::identity_mix(p, 0.5f), status::null_pointer);

  heed::mutable_tensor_view o = s.params.o;
  std::vector<float> gates(4, 1.f);
  EXPECT_EQ(heed::apply_head_gates(o, nullptr), status::null_pointer);
  gates[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(heed::apply_head_gates(o, gates.data()), status::invalid_argument);
  std::vector<std::uint8_t> keep(4, 1);
  EXPECT_EQ(heed::apply_head_mask(o, nullptr), status::null_pointer);
  heed::mutable_tensor_view bad = o;
  bad.type = dtype::bf16;
  EXPECT_EQ(heed::apply_head_mask(bad, keep.data()), status::unsupported_dtype);
  bad = o;
  bad.data = nullptr;
  EXPECT_EQ(heed::apply_head_mask(bad, keep.data()), status::null_pointer);
  bad = o;
  bad.heads = 0;
  EXPECT_EQ(heed::apply_head_gates(bad, gates.data()), status::invalid_argument);
  std::int64_t n = 0;
  std::int32_t out[4];
  EXPECT_EQ(heed::heads_to_skip(keep.data(), 4, out, 4, nullptr), status::null_pointer);
  EXPECT_EQ(heed::heads_to_skip(nullptr, 4, out, 4, &n), status::null_pointer);
  EXPECT_EQ(heed::heads_to_skip(keep.data(), 0, out, 4, &n), status::invalid_argument);
  EXPECT_EQ(heed::head_mask_from_gates(gates.data(), 4, nullptr), status::null_pointer);
}

}  // namespace
}  // namespace heed_test
