// Linear attention against the float64 quadratic reference (linear_reference.hpp): every feature
// map, chunk size, gate, normalization, K/V dtype, GQA ratio, causal and not, through the
// compiled library on every ISA this machine runs, with 1 and 2 threads (bitwise equal); the
// recurrent decode step equals prefill's last row; continuing from a state equals one long
// pass; a user feature map through the header-only kernel; the entropy slow path; FAVOR+
// features; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <iterator>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/linear/favor_features.hpp"
#include "heed/linear/linear.hpp"
#include "heed/linear/linear_dispatch.hpp"
#include "heed/linear/linear_entropy.hpp"
#include "linear/linear_reference.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::feature_map_kind;
using heed::isa;
using heed_ref::lin_map;
using heed_ref::lin_norm;

struct lin_case {
  std::string name;
  std::int64_t L = 64, hq = 2, hkv = 2, d = 32, dv = 32;
  dtype kv = dtype::f32;
  bool causal = true;
  lin_norm norm = lin_norm::sum;
  float gate = -1.f;  // < 0: no gate; otherwise every KV head gets gate, gate^2, ...
  lin_map map = lin_map::elu1;
  std::int64_t m = 0;
  std::int32_t chunk = 64;
  float amp = 1.f;
  std::uint32_t seed = 1;
};
void PrintTo(const lin_case& c, std::ostream* os) { *os << c.name; }

// Storage of one tensor [seq][heads][dim] in f32 / f16 / bf16 plus the values as read, in double.
struct stored {
  dtype type = dtype::f32;
  std::int64_t seq = 0, heads = 0, dim = 0;
  std::vector<unsigned char> bytes;
  std::vector<double> values;

  void fill(dtype t, std::int64_t s, std::int64_t h, std::int64_t d, std::mt19937& rng, float amp,
            float shift = 0.f) {
    type = t;
    seq = s;
    heads = h;
    dim = d;
    const std::int64_t n = s * h * d;
    bytes.assign(static_cast<std::size_t>(n * heed::dtype_size(t)), 0);
    values.resize(static_cast<std::size_t>(n));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (std::int64_t i = 0; i < n; ++i) {
      const float x = amp * u(rng) + shift;
      if (t == dtype::f32) {
        reinterpret_cast<float*>(bytes.data())[i] = x;
        values[i] = x;
      } else if (t == dtype::f16) {
        const heed::f16 y = heed::from_float<heed::f16>(x);
        reinterpret_cast<heed::f16*>(bytes.data())[i] = y;
        values[i] = heed::to_float(y);
      } else {
        const heed::bf16 y = heed::from_float<heed::bf16>(x);
        reinterpret_cast<heed::bf16*>(bytes.data())[i] = y;
        values[i] = heed::to_float(y);
      }
    }
  }
  heed::tensor_view view(std::int64_t s0 = 0, std::int64_t n = -1) const {
    const std::int64_t len = n < 0 ? seq - s0 : n;
    const unsigned char* base = bytes.data() + s0 * heads * dim * heed::dtype_size(type);
    return heed::make_view<const void*>(base, type, len, heads, dim);
  }
};

struct lin_setup {
  lin_case c;
  stored q, k, v;
  std::vector<float> out;  // [L][hq][dv]
  std::vector<float> gates, w, b;
  heed::linear_params params;
  heed::feature_map_spec spec;
  heed_ref::linear_problem ref;

  explicit lin_setup(const lin_case& cs) : c(cs) {
    std::mt19937 rng(c.seed);
    q.fill(dtype::f32, c.L, c.hq, c.d, rng, c.amp);
    k.fill(c.kv, c.L, c.hkv, c.d, rng, c.amp);
    v.fill(c.kv, c.L, c.hkv, c.dv, rng, 1.f);
    out.assign(static_cast<std::size_t>(c.L * c.hq * c.dv), std::nanf(""));
    ref.L = c.L;
    ref.hq = c.hq;
    ref.hkv = c.hkv;
    ref.d = c.d;
    ref.dv = c.dv;
    ref.q = q.values;
    ref.k = k.values;
    ref.v = v.values;
    ref.causal = c.causal;
    ref.norm = c.norm;
    ref.map = c.map;
    ref.m = c.m;
    params.causal = c.causal;
    params.norm = c.norm == lin_norm::none  ? heed::linear_norm::none
                  : c.norm == lin_norm::sum ? heed::linear_norm::sum
                                            : heed::linear_norm::mala;
    params.chunk = c.chunk;
    ref.eps = params.eps;
    if (c.gate >= 0.f) {
      float g = c.gate;
      for (std::int64_t h = 0; h < c.hkv; ++h, g *= c.gate) gates.push_back(g);
      params.gates = gates.data();
      ref.gates.assign(gates.begin(), gates.end());
    }
    switch (c.map) {
      case lin_map::identity:
        spec.kind = feature_map_kind::identity;
        break;
      case lin_map::relu:
        spec.kind = feature_map_kind::relu;
        break;
      case lin_map::elu1:
        spec.kind = feature_map_kind::elu_plus_one;
        break;
      case lin_map::favor:
        spec.kind = feature_map_kind::favor_plus;
        w.resize(static_cast<std::size_t>(c.d * c.m));
        EXPECT_EQ(heed::make_favor_features(c.d, c.m, c.seed, w.data()), heed::status::ok);
        spec.w = w.data();
        spec.m = c.m;
        break;
      case lin_map::hedgehog: {
        spec.kind = feature_map_kind::hedgehog;
        std::normal_distribution<float> nd(0.f, 0.3f);
        for (std::int64_t i = 0; i < c.d * c.m; ++i) w.push_back(nd(rng));
        for (std::int64_t i = 0; i < c.m; ++i) b.push_back(nd(rng));
        spec.w = w.data();
        spec.b = b.data();
        spec.m = c.m;
        break;
      }
    }
    if (!w.empty()) ref.w.assign(w.begin(), w.end());
    if (!b.empty()) ref.b.assign(b.begin(), b.end());
    set_range(0, c.L);
  }

  // Points the kernel at tokens [s0, s0 + n) (queries, keys, values and output rows).
  void set_range(std::int64_t s0, std::int64_t n) {
    params.q = q.view(s0, n);
    params.k = k.view(s0, n);
    params.v = v.view(s0, n);
    params.o = heed::make_mutable_view(out.data() + s0 * c.hq * c.dv, n, c.hq, c.dv);
  }
};

heed::status run(lin_setup& s, isa i, heed::executor& ex) {
  const std::size_t need = heed::linear_workspace_size(s.params, s.spec, ex.concurrency(), i);
  if (need == 0) return heed::status::invalid_argument;
  std::vector<unsigned char> ws(need + 7, 0xff);  // NaN-filled, misaligned
  return heed::linear_attention(s.params, s.spec, {ws.data() + 7, need}, ex, i);
}

// Rows [r0, L) of the output against the reference: |err| <= 1e-5 + 3e-5 * bound (the sum of
// |coefficient| * |v| of the row, i.e. the scale float rounding works at).
void expect_matches(const lin_setup& s, const heed_ref::linear_result& r, std::int64_t r0 = 0) {
  std::int64_t bad = 0;
  double worst = 0.0;
  std::string first;
  for (std::int64_t i = r0; i < s.c.L; ++i)
    for (std::int64_t h = 0; h < s.c.hq; ++h) {
      const double tol = 1e-5 + 3e-5 * r.bound[static_cast<std::size_t>(i * s.c.hq + h)];
      for (std::int64_t x = 0; x < s.c.dv; ++x) {
        const std::size_t idx = static_cast<std::size_t>((i * s.c.hq + h) * s.c.dv + x);
        const double err = std::fabs(double(s.out[idx]) - r.o[idx]) / tol;
        if (!(err <= 1.0)) {
          if (bad++ == 0)
            first = "row " + std::to_string(i) + " head " + std::to_string(h) + " col " +
                    std::to_string(x) + ": got " + std::to_string(s.out[idx]) + " want " +
                    std::to_string(r.o[idx]);
        }
        worst = std::isnan(err) ? INFINITY : std::max(worst, err);
      }
    }
  EXPECT_EQ(bad, 0) << first << " (worst error / tolerance " << worst << ")";
}

std::vector<lin_case> cases() {
  std::vector<lin_case> v;
  auto add = [&](lin_case c) {
    c.seed = 100 + static_cast<std::uint32_t>(v.size()) * 7;
    v.push_back(c);
  };
  lin_case c;
  for (lin_map map :
       {lin_map::elu1, lin_map::relu, lin_map::identity, lin_map::favor, lin_map::hedgehog}) {
    const char* mn = map == lin_map::elu1       ? "elu1"
                     : map == lin_map::relu     ? "relu"
                     : map == lin_map::identity ? "identity"
                     : map == lin_map::favor    ? "favor"
                                                : "hedgehog";
    for (std::int32_t chunk : {8, 64}) {
      c = lin_case{};
      c.name = std::string(mn) + "_chunk" + std::to_string(chunk);
      c.map = map;
      c.m = map == lin_map::favor ? 44 : 20;  // 44: a partial last vector on AVX2 and AVX-512
      c.L = 150;
      c.chunk = chunk;
      c.norm = map == lin_map::identity ? lin_norm::none : lin_norm::sum;
      add(c);
    }
  }
  c = lin_case{};
  c.name = "gqa4_d64_dv40_bf16";
  c.hq = 8;
  c.hkv = 2;
  c.d = 64;
  c.dv = 40;
  c.L = 200;
  c.kv = dtype::bf16;
  add(c);
  c.name = "gqa4_d128_f16_chunk256_L300";
  c.d = 128;
  c.dv = 128;
  c.kv = dtype::f16;
  c.chunk = 256;
  c.L = 300;
  add(c);
  c = lin_case{};
  c.name = "gate_0p9_none";
  c.gate = 0.9f;
  c.norm = lin_norm::none;
  c.hkv = 2;
  c.hq = 4;
  c.L = 130;
  c.chunk = 16;
  add(c);
  c.name = "gate_0p97_sum_relu";
  c.gate = 0.97f;
  c.norm = lin_norm::sum;
  c.map = lin_map::relu;
  add(c);
  c.name = "gate_zero_only_self";
  c.gate = 0.f;  // g = 0: each row sees its own key only
  c.map = lin_map::elu1;
  add(c);
  c = lin_case{};
  c.name = "mala";
  c.norm = lin_norm::mala;
  c.L = 140;
  c.chunk = 32;
  add(c);
  c.name = "mala_gated_favor";
  c.map = lin_map::favor;
  c.m = 64;
  c.gate = 0.95f;
  add(c);
  for (lin_norm n : {lin_norm::sum, lin_norm::none, lin_norm::mala}) {
    c = lin_case{};
    c.name = std::string("noncausal_") + (n == lin_norm::sum    ? "sum"
                                          : n == lin_norm::none ? "none"
                                                                : "mala");
    c.causal = false;
    c.norm = n;
    c.L = 100;
    c.hq = 4;
    c.hkv = 1;
    c.d = 24;
    c.dv = 17;
    add(c);
  }
  c = lin_case{};
  c.name = "single_token";
  c.L = 1;
  add(c);
  c.name = "odd_dims_d7_dv3_L9";
  c.d = 7;
  c.dv = 3;
  c.L = 9;
  c.chunk = 8;
  add(c);
  return v;
}

const std::vector<isa> kIsas(std::begin(heed::platform_isas), std::end(heed::platform_isas));

class LinearCases : public ::testing::TestWithParam<std::tuple<isa, lin_case>> {};

TEST_P(LinearCases, MatchesReferenceWithOneAndTwoThreads) {
  const auto& [i, c] = GetParam();
  if (!heed::isa_available(i)) GTEST_SKIP() << heed::isa_name(i) << " unavailable";
  lin_setup s(c);
  const heed_ref::linear_result r = heed_ref::linear_attention_ref(s.ref);
  ASSERT_EQ(run(s, i, heed::default_executor()), heed::status::ok);
  expect_matches(s, r);
  const std::vector<float> one = s.out;
  heed::thread_pool_executor two(2);
  std::fill(s.out.begin(), s.out.end(), std::nanf(""));
  ASSERT_EQ(run(s, i, two), heed::status::ok);
  EXPECT_EQ(std::memcmp(one.data(), s.out.data(), one.size() * 4), 0) << "1 vs 2 threads";
}

INSTANTIATE_TEST_SUITE_P(All, LinearCases,
                         ::testing::Combine(::testing::ValuesIn(kIsas),
                                            ::testing::ValuesIn(cases())),
                         [](const ::testing::TestParamInfo<std::tuple<isa, lin_case>>& info) {
                           return std::string(heed::isa_name(std::get<0>(info.param))) + "_" +
                                  std::get<1>(info.param).name;
                         });

// Prefill of the first L - 1 tokens leaves a state; one recurrent decode step from it gives the
// last row of a single prefill over all L tokens. Also: continuing a prefill from a state in
// several pieces equals one pass.
TEST(LinearState, DecodeEqualsPrefillLastRowAndPiecesEqualOnePass) {
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    for (lin_norm n : {lin_norm::sum, lin_norm::mala, lin_norm::none}) {
      for (float gate : {-1.f, 0.9f}) {
        SCOPED_TRACE(std::string(heed::isa_name(i)) + " norm " + std::to_string(int(n)) + " gate " +
                     std::to_string(gate));
        lin_case c;
        c.name = "state";
        c.L = 157;
        c.hq = 4;
        c.hkv = 2;
        c.norm = n;
        c.gate = gate;
        c.chunk = 32;
        lin_setup s(c);
        const heed_ref::linear_result r = heed_ref::linear_attention_ref(s.ref);
        const std::int64_t F = heed::linear_feature_dim(s.spec, c.d);
        std::vector<float> state(
            static_cast<std::size_t>(c.hkv * heed::linear_state_floats(F, c.dv)));
        s.params.state = state.data();
        // Pieces 0..40, 40..100, 100..156, then one decode step.
        const std::int64_t cuts[] = {0, 40, 100, c.L - 1, c.L};
        for (int piece = 0; piece < 4; ++piece) {
          s.set_range(cuts[piece], cuts[piece + 1] - cuts[piece]);
          s.params.state_in = piece > 0;
          ASSERT_EQ(run(s, i, heed::default_executor()), heed::status::ok);
        }
        expect_matches(s, r);

        // The header-only decode entry agrees with the compiled one bit for bit on the last row.
        std::vector<float> last(s.out.end() - c.hq * c.dv, s.out.end());
        s.set_range(0, c.L - 1);
        s.params.state_in = false;
        ASSERT_EQ(run(s, i, heed::default_executor()), heed::status::ok);
        s.set_range(c.L - 1, 1);
        s.params.state_in = true;
        std::vector<unsigned char> ws(
            heed::linear_workspace_size_t(s.params, heed::elu_plus_one{}, 1));
        ASSERT_FALSE(ws.empty());
        ASSERT_EQ(heed::linear_decode_t(s.params, heed::elu_plus_one{}, {ws.data(), ws.size()}),
                  heed::status::ok);
        expect_matches(s, r, c.L - 1);
      }
    }
  }
}

// A feature map a user writes: 2 * (elu + 1). Under sum normalization the factor cancels, so the
// output equals elu + 1's reference.
struct twice_elu : heed::elementwise_map<twice_elu> {
  template <class A>
  xsimd::batch<float, A> apply(xsimd::batch<float, A> x) const noexcept {
    return heed::elu_plus_one{}.apply<A>(x) * xsimd::batch<float, A>(2.f);
  }
};

TEST(LinearHeaderOnly, UserFeatureMap) {
  lin_case c;
  c.name = "user_map";
  c.L = 90;
  c.chunk = 16;
  lin_setup s(c);
  const heed_ref::linear_result r = heed_ref::linear_attention_ref(s.ref);
  heed::thread_pool_executor two(2);
  std::vector<unsigned char> ws(heed::linear_workspace_size_t(s.params, twice_elu{}, 2));
  ASSERT_EQ(heed::linear_attention_t(s.params, twice_elu{}, {ws.data(), ws.size()}, two),
            heed::status::ok);
  expect_matches(s, r);
}

TEST(LinearEntropy, MatchesReference) {
  for (lin_norm n : {lin_norm::sum, lin_norm::mala}) {
    lin_case c;
    c.name = "entropy";
    c.L = 70;
    c.hq = 4;
    c.hkv = 2;
    c.norm = n;
    c.gate = 0.95f;
    c.kv = dtype::bf16;
    lin_setup s(c);
    const heed_ref::linear_result r = heed_ref::linear_attention_ref(s.ref);
    const std::vector<int> heads = {0, 3};
    const std::vector<std::int64_t> rows = {0, 1, 33, 69};
    std::vector<float> ent(heads.size() * rows.size());
    ASSERT_EQ(heed::linear_attention_entropy_t(s.params, heed::elu_plus_one{}, heads.data(), 2,
                                               rows.data(), 4, ent.data()),
              heed::status::ok);
    int compared = 0;
    for (std::size_t hi = 0; hi < heads.size(); ++hi)
      for (std::size_t ri = 0; ri < rows.size(); ++ri) {
        const double want = r.entropy[static_cast<std::size_t>(heads[hi] * c.L + rows[ri])];
        const float got = ent[hi * rows.size() + ri];
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(got));
        } else {
          EXPECT_NEAR(got, want, 1e-4 * (1.0 + want));
          ++compared;
        }
      }
    EXPECT_GT(compared, 0);
    if (n == lin_norm::sum) {
      EXPECT_EQ(ent[0], 0.f);  // row 0 sees one key
    }
  }
}

// FAVOR+ features: reproducible by seed, orthogonal within a block, and an unbiased estimate of
// the softmax kernel: mean of phi(q).phi(k) over many features ~ exp(q.k / sqrt(d)).
TEST(FavorFeatures, OrthogonalSeededAndUnbiased) {
  const std::int64_t d = 16, m = 4096;
  std::vector<float> w1(d * m), w2(d * m), w3(d * m);
  ASSERT_EQ(heed::make_favor_features(d, m, 7, w1.data()), heed::status::ok);
  ASSERT_EQ(heed::make_favor_features(d, m, 7, w2.data()), heed::status::ok);
  ASSERT_EQ(heed::make_favor_features(d, m, 8, w3.data()), heed::status::ok);
  EXPECT_EQ(w1, w2);
  EXPECT_NE(w1, w3);
  for (std::int64_t a = 0; a < d; ++a)  // rows 0..d-1 form one orthogonal block
    for (std::int64_t b2 = a + 1; b2 < d; ++b2) {
      double dot = 0, na = 0, nb = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        dot += double(w1[c * m + a]) * w1[c * m + b2];
        na += double(w1[c * m + a]) * w1[c * m + a];
        nb += double(w1[c * m + b2]) * w1[c * m + b2];
      }
      EXPECT_LT(std::fabs(dot) / std::sqrt(na * nb), 1e-5);
    }
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-0.6f, 0.6f);
  const heed::favor_plus map(w1.data(), m);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<float> q(d), k(d), fq(m), fk(m);
    for (auto& x : q) x = u(rng);
    for (auto& x : k) x = u(rng);
    map.map_rows<xsimd::default_arch>(heed::feature_role::query, 0, q.data(), d, 1, d, fq.data(),
                                      m);
    map.map_rows<xsimd::default_arch>(heed::feature_role::key, 0, k.data(), d, 1, d, fk.data(), m);
    double est = 0, dot = 0;
    for (std::int64_t r = 0; r < m; ++r) est += double(fq[r]) * fk[r];
    for (std::int64_t c = 0; c < d; ++c) dot += double(q[c]) * k[c];
    EXPECT_NEAR(est, std::exp(dot / std::sqrt(double(d))), 0.05 * std::exp(dot / 4.0));
  }
}

TEST(LinearErrors, BadInputReturnsStatus) {
  lin_case c;
  c.name = "errors";
  lin_setup s(c);
  auto status_of = [&](heed::linear_params p, heed::feature_map_spec spec = {}) {
    std::vector<unsigned char> ws(1 << 20);
    return heed::linear_attention(p, spec, {ws.data(), ws.size()});
  };
  heed::linear_params p = s.params;
  EXPECT_EQ(status_of(p), heed::status::ok);
  p.q.data = nullptr;
  EXPECT_EQ(status_of(p), heed::status::null_pointer);
  p = s.params;
  p.k.seq = 10;  // keys and queries are the same tokens
  EXPECT_EQ(status_of(p), heed::status::shape_mismatch);
  p = s.params;
  p.chunk = 4;
  EXPECT_EQ(status_of(p), heed::status::invalid_argument);
  p = s.params;
  const float bad_gate[2] = {0.5f, 1.5f};
  p.gates = bad_gate;
  EXPECT_EQ(status_of(p), heed::status::invalid_argument);
  p = s.params;
  const float ok_gate[2] = {0.5f, 0.5f};
  p.gates = ok_gate;
  p.causal = false;  // a decay has no meaning without an order
  EXPECT_EQ(status_of(p), heed::status::invalid_argument);
  p = s.params;
  p.state_in = true;  // no state to start from
  EXPECT_EQ(status_of(p), heed::status::null_pointer);
  p = s.params;
  p.eps = -1.f;
  EXPECT_EQ(status_of(p), heed::status::invalid_argument);
  p = s.params;
  heed::feature_map_spec favor;
  favor.kind = feature_map_kind::favor_plus;  // no features given
  favor.m = 16;
  EXPECT_EQ(status_of(p, favor), heed::status::null_pointer);
  favor.m = 0;
  EXPECT_EQ(status_of(p, favor), heed::status::invalid_argument);
  // Workspace too small.
  std::vector<unsigned char> tiny(64);
  EXPECT_EQ(heed::linear_attention(s.params, {}, {tiny.data(), tiny.size()}),
            heed::status::workspace_too_small);
  // The decode entry needs one token and a state.
  std::vector<unsigned char> ws(1 << 20);
  EXPECT_EQ(heed::linear_decode_t(s.params, heed::elu_plus_one{}, {ws.data(), ws.size()}),
            heed::status::null_pointer);
}

}  // namespace
}  // namespace heed_test
