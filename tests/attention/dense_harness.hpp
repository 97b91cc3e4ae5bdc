// Test harness for the dense kernels: builds strided (optionally padded) Q/K/V/O storage from a
// case description, the matching float64 reference problem, runs the kernel and compares.
//
// Tolerances (stated once, used by every dense test):
//   The kernel computes in fp32 with a fast exp2 (relative error ~2e-7). K/V stored as f16 or
//   bf16 are converted exactly to fp32, and the reference is built from the same rounded values,
//   so every dtype gets the same tolerances:
//     O:        |o - ref| <= (1e-5 + 5e-5 |ref|) * max(1, S / 10)   (V is in [-1, 1])
//     LSE:      |lse - ref| <= 5e-6 (1 + |ref|)
//     entropy:  |H - ref| <= 1e-5 (1 + |LSE|)    (H = LSE - t / d cancels digits of LSE)
//     probs:    |p - ref| <= 1e-7 + 2e-5 |ref|   (decode probability tap)
//   Quantized K/V (q8, q4) are compared with the reference built from their dequantized values
//   (quant::dequantize_value), so they get the same bounds; decode over q8 keys quantizes the
//   query row too, and the reference takes that row's dequantized values.
//   S is the row's largest |logit|: fp32 logits carry an absolute error proportional to their
//   size, so rows with logits in the tens (the "large_logits" cases) get a proportionally wider
//   bound on O; every other case has S < 10 and the plain bound. Measured worst errors (all ISAs,
//   GCC 12) are below a fifth of these bounds.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/params.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/quant/quantize.hpp"
#include "reference/naive_attention.hpp"

namespace heed_test {

constexpr double kOutAtol = 1e-5, kOutRtol = 5e-5;
constexpr double kLseTol = 5e-6;
constexpr double kEntropyTol = 1e-5;
constexpr double kProbAtol = 1e-7, kProbRtol = 2e-5;

struct dense_case {
  std::string name;
  std::int64_t lq = 1, lk = 1, hq = 1, hkv = 1, d = 64;
  heed::dtype kv = heed::dtype::f32;
  heed::layout q_layout = heed::layout::seq_head_dim;
  heed::layout kv_layout = heed::layout::seq_head_dim;
  heed::layout o_layout = heed::layout::seq_head_dim;
  std::int64_t pad = 0;  // extra elements (bytes, for q8 / q4) after each row and outer block
  int group = 0;         // q8 / q4 K/V: values per scale (0: quant::default_group)
  bool causal = true;
  std::int64_t q_offset = -1;
  float scale = 0.f;
  std::int64_t window_left = -1;
  float softcap = 0.f;
  bool alibi = false;
  bool sinks = false;
  bool ssmax = false;                  // per-head SSMax scales in [0.2, 0.6]
  std::int64_t length_scale_base = 0;  // entropy-invariant scaling
  float length_scale_floor = 1.f;
  std::int64_t key_bias_len = 0;  // per-head per-key biases in [-3, 3] on keys < len
  bool sigmoid = false;           // sigmoid attention with per-head biases in [-2, 0]
  bool want_lse = true;
  bool want_entropy = true;
  std::int64_t row_head_stride = 0;
  float q_amp = 4.f;  // |q| <= q_amp; logits have a standard deviation of about q_amp / 3
  std::uint32_t seed = 1;
};

// gtest prints a case by its name.
inline void PrintTo(const dense_case& c, std::ostream* os) { *os << c.name; }

// A rank-3 tensor in a byte buffer with explicit strides; unused (padding) elements are poisoned.
// Quantized types (q8, q4; `group` values per scale, 0 for the default) count strides in bytes and
// are written a row at a time (store_row).
struct strided_tensor {
  heed::dtype type = heed::dtype::f32;
  std::int64_t seq = 0, heads = 0, dim = 0, seq_stride = 0, head_stride = 0;
  int group = 0;
  std::vector<unsigned char> bytes;

  int quant_group() const { return group ? group : heed::quant::default_group; }

  std::size_t elem_size() const { return heed::dtype_size(type); }
  // Stride units of one row.
  std::int64_t row_extent() const {
    return heed::is_quantized(type) ? std::int64_t(heed::quant::row_bytes(type, dim, quant_group()))
                                    : dim;
  }
  // Quantizes x[0 .. dim) into row (s, h) and writes the values it now holds to stored.
  void store_row(std::int64_t s, std::int64_t h, const float* x, double* stored) {
    unsigned char* at = bytes.data() + index(s, h, 0);
    const int g = quant_group();
    if (heed::quant::quantize_row(type, x, dim, g, at) != heed::status::ok) std::abort();
    for (std::int64_t c = 0; c < dim; ++c)
      stored[c] = heed::quant::dequantize_value(type, at, dim, g, c);
  }
  std::size_t index(std::int64_t s, std::int64_t h, std::int64_t c) const {
    return static_cast<std::size_t>(s * seq_stride + h * head_stride + c);
  }
  void* data() { return bytes.data(); }

  // Stores x (rounded to the storage type) and returns the value actually stored.
  double store(std::int64_t s, std::int64_t h, std::int64_t c, float x) {
    unsigned char* at = bytes.data() + index(s, h, c) * elem_size();
    switch (type) {
      case heed::dtype::f16: {
        const heed::f16 y = heed::to_f16(x);
        std::memcpy(at, &y.bits, 2);
        return heed::to_float(y);
      }
      case heed::dtype::bf16: {
        const heed::bf16 y = heed::to_bf16(x);
        std::memcpy(at, &y.bits, 2);
        return heed::to_float(y);
      }
      default:
        std::memcpy(at, &x, 4);
        return x;
    }
  }
  float load_f32(std::int64_t s, std::int64_t h, std::int64_t c) const {
    float x;
    std::memcpy(&x, bytes.data() + index(s, h, c) * 4, 4);
    return x;
  }
  heed::tensor_view view() const {
    heed::tensor_view v;
    v.data = bytes.data();
    v.type = type;
    v.seq = seq;
    v.heads = heads;
    v.dim = dim;
    v.seq_stride = seq_stride;
    v.head_stride = head_stride;
    v.group = group;
    return v;
  }
  heed::mutable_tensor_view mutable_view() {
    heed::mutable_tensor_view v;
    v.data = bytes.data();
    v.type = type;
    v.seq = seq;
    v.heads = heads;
    v.dim = dim;
    v.seq_stride = seq_stride;
    v.head_stride = head_stride;
    return v;
  }
};

// Poison for unused elements: a quiet NaN in the storage type, so a kernel that reads padding
// produces NaN (quantized rows: bytes 0x7e, a NaN as an f16 scale and 126 as an int8 value); the
// output tensor's padding uses a finite sentinel that must survive.
inline void fill_poison(strided_tensor& t) {
  if (heed::is_quantized(t.type)) {
    std::fill(t.bytes.begin(), t.bytes.end(), static_cast<unsigned char>(0x7e));
    return;
  }
  const std::size_t n = t.bytes.size() / t.elem_size();
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char* at = t.bytes.data() + i * t.elem_size();
    if (t.type == heed::dtype::f32) {
      const float x = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(at, &x, 4);
    } else {
      const std::uint16_t b = t.type == heed::dtype::f16 ? 0x7e00 : 0x7fc0;
      std::memcpy(at, &b, 2);
    }
  }
}

constexpr float kOutSentinel = -777.25f;

inline strided_tensor make_tensor(heed::dtype type, std::int64_t seq, std::int64_t heads,
                                  std::int64_t dim, heed::layout l, std::int64_t pad,
                                  int group = 0) {
  strided_tensor t;
  t.type = type;
  t.group = group;
  t.seq = seq;
  t.heads = heads;
  t.dim = dim;
  const std::int64_t e = t.row_extent();
  if (l == heed::layout::seq_head_dim) {
    t.head_stride = e + pad;
    t.seq_stride = heads * t.head_stride + pad;
  } else {
    t.seq_stride = e + pad;
    t.head_stride = seq * t.seq_stride + pad;
  }
  const std::int64_t last = (seq - 1) * t.seq_stride + (heads - 1) * t.head_stride + e;
  t.bytes.resize(static_cast<std::size_t>(last + pad) * t.elem_size());
  fill_poison(t);
  return t;
}

// Everything one kernel call needs, plus the reference problem built from the same values.
struct dense_setup {
  dense_case c;
  strided_tensor q, k, v, o;
  std::vector<float> lse, entropy;  // [hq * row_stride], sentinel-filled
  std::vector<float> slopes, sinks, ssmax, key_bias, sigmoid_bias;
  heed::dense_params params;
  heed_ref::attention_problem ref;

  std::int64_t row_stride() const { return c.row_head_stride > 0 ? c.row_head_stride : c.lq; }

  explicit dense_setup(const dense_case& cs) : c(cs) {
    std::mt19937 rng(c.seed);
    std::uniform_real_distribution<float> unit(-1.f, 1.f);
    q = make_tensor(heed::dtype::f32, c.lq, c.hq, c.d, c.q_layout, c.pad);
    k = make_tensor(c.kv, c.lk, c.hkv, c.d, c.kv_layout, c.pad, c.group);
    v = make_tensor(c.kv, c.lk, c.hkv, c.d, c.kv_layout, c.pad, c.group);
    o = make_tensor(heed::dtype::f32, c.lq, c.hq, c.d, c.o_layout, c.pad);
    {
      float* of = reinterpret_cast<float*>(o.bytes.data());
      std::fill(of, of + o.bytes.size() / 4, kOutSentinel);
    }
    ref.lq = c.lq;
    ref.lk = c.lk;
    ref.hq = c.hq;
    ref.hkv = c.hkv;
    ref.d = c.d;
    ref.resize();
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t x = 0; x < c.d; ++x)
          ref.q_at(i, h, x) = q.store(i, h, x, c.q_amp * unit(rng));
    if (c.kv == heed::dtype::q8 && c.lq == 1) quantize_reference_query();
    std::vector<float> krow(static_cast<std::size_t>(c.d)), vrow(krow.size());
    std::vector<double> kq(krow.size()), vq(krow.size());
    for (std::int64_t j = 0; j < c.lk; ++j)
      for (std::int64_t h = 0; h < c.hkv; ++h) {
        if (!heed::is_quantized(c.kv)) {
          for (std::int64_t x = 0; x < c.d; ++x) {
            ref.k_at(j, h, x) = k.store(j, h, x, unit(rng));
            ref.v_at(j, h, x) = v.store(j, h, x, unit(rng));
          }
          continue;
        }
        for (std::size_t x = 0; x < krow.size(); ++x) {
          krow[x] = unit(rng);
          vrow[x] = unit(rng);
        }
        k.store_row(j, h, krow.data(), kq.data());
        v.store_row(j, h, vrow.data(), vq.data());
        for (std::int64_t x = 0; x < c.d; ++x) {
          ref.k_at(j, h, x) = kq[static_cast<std::size_t>(x)];
          ref.v_at(j, h, x) = vq[static_cast<std::size_t>(x)];
        }
      }

    params.q = q.view();
    params.k = k.view();
    params.v = v.view();
    params.o = o.mutable_view();
    params.scale = c.scale;
    params.causal = c.causal;
    params.q_offset = c.q_offset;
    params.window_left = c.window_left;
    params.softcap = c.softcap;
    params.row_head_stride = c.row_head_stride;
    if (c.want_lse) {
      lse.assign(static_cast<std::size_t>(c.hq * row_stride()), kOutSentinel);
      params.lse = lse.data();
    }
    if (c.want_entropy) {
      entropy.assign(static_cast<std::size_t>(c.hq * row_stride()), kOutSentinel);
      params.entropy = entropy.data();
    }
    if (c.alibi) {
      slopes.resize(static_cast<std::size_t>(c.hq));
      // Standard ALiBi slopes 2^(-8 (h + 1) / hq), written out here independently of the library.
      for (std::int64_t h = 0; h < c.hq; ++h)
        slopes[static_cast<std::size_t>(h)] =
            static_cast<float>(std::pow(2.0, -8.0 * double(h + 1) / double(c.hq)));
      params.alibi_slopes = slopes.data();
      ref.alibi_slopes.assign(slopes.begin(), slopes.end());
    }
    if (c.sinks) {
      std::uniform_real_distribution<float> sink_dist(-2.f, 3.f);
      for (std::int64_t h = 0; h < c.hq; ++h) sinks.push_back(sink_dist(rng));
      params.sink_logits = sinks.data();
      ref.sink_logits.assign(sinks.begin(), sinks.end());
    }
    if (c.ssmax) {
      std::uniform_real_distribution<float> a(0.2f, 0.6f);
      for (std::int64_t h = 0; h < c.hq; ++h) ssmax.push_back(a(rng));
      params.ssmax = ssmax.data();
      ref.ssmax.assign(ssmax.begin(), ssmax.end());
    }
    params.length_scale_base = c.length_scale_base;
    params.length_scale_floor = c.length_scale_floor;
    ref.length_scale_base = c.length_scale_base;
    ref.length_scale_floor = static_cast<double>(c.length_scale_floor);
    if (c.key_bias_len > 0) {
      std::uniform_real_distribution<float> b(-3.f, 3.f);
      for (std::int64_t x = 0; x < c.hq * c.key_bias_len; ++x) key_bias.push_back(b(rng));
      params.key_bias = key_bias.data();
      params.key_bias_len = c.key_bias_len;
      ref.key_bias.assign(key_bias.begin(), key_bias.end());
      ref.key_bias_len = c.key_bias_len;
    }
    if (c.sigmoid) {
      std::uniform_real_distribution<float> b(-2.f, 0.f);
      for (std::int64_t h = 0; h < c.hq; ++h) sigmoid_bias.push_back(b(rng));
      params.sigmoid = true;
      params.sigmoid_bias = sigmoid_bias.data();
      ref.sigmoid = true;
      ref.sigmoid_bias.assign(sigmoid_bias.begin(), sigmoid_bias.end());
    }
    // An explicit scale is a float both sides see; the default (0) the reference computes
    // itself as 1 / sqrt(d) in double, independently of dense_params::logit_scale().
    ref.scale = static_cast<double>(c.scale);
    ref.causal = c.causal;
    ref.q_offset = c.q_offset;
    ref.window_left = c.window_left;
    ref.softcap = static_cast<double>(c.softcap);
  }

  // Decode over q8 keys reads the query quantized to q8 in the keys' group (decode_qk_int.hpp):
  // the reference query is that row's dequantized values.
  void quantize_reference_query() {
    const int g = c.group ? c.group : heed::quant::default_group;
    std::vector<float> row(static_cast<std::size_t>(c.d));
    std::vector<unsigned char> qrow(heed::quant::row_bytes(heed::dtype::q8, c.d, g));
    for (std::int64_t h = 0; h < c.hq; ++h) {
      for (std::int64_t x = 0; x < c.d; ++x) row[std::size_t(x)] = float(ref.q_at(0, h, x));
      if (heed::quant::quantize_row(heed::dtype::q8, row.data(), c.d, g, qrow.data()) !=
              heed::status::ok ||
          heed::quant::dequantize_row(heed::dtype::q8, qrow.data(), c.d, g, row.data()) !=
              heed::status::ok)
        std::abort();
      for (std::int64_t x = 0; x < c.d; ++x) ref.q_at(0, h, x) = row[std::size_t(x)];
    }
  }

  // Outputs back to logical [lq][hq][d] order.
  std::vector<float> output() const {
    std::vector<float> out(static_cast<std::size_t>(c.lq * c.hq * c.d));
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t x = 0; x < c.d; ++x)
          out[static_cast<std::size_t>((i * c.hq + h) * c.d + x)] = o.load_f32(i, h, x);
    return out;
  }

  // The bytes the kernel wrote (output, LSE, entropy) for bitwise comparisons.
  std::vector<unsigned char> result_bytes() const {
    std::vector<unsigned char> b = o.bytes;
    const auto* l = reinterpret_cast<const unsigned char*>(lse.data());
    const auto* e = reinterpret_cast<const unsigned char*>(entropy.data());
    b.insert(b.end(), l, l + lse.size() * 4);
    b.insert(b.end(), e, e + entropy.size() * 4);
    return b;
  }

  void reset_outputs() {
    float* of = reinterpret_cast<float*>(o.bytes.data());
    std::fill(of, of + o.bytes.size() / 4, kOutSentinel);
    std::fill(lse.begin(), lse.end(), kOutSentinel);
    std::fill(entropy.begin(), entropy.end(), kOutSentinel);
  }
};

// A workspace of exactly the size asked for, at a deliberately misaligned address, filled with
// 0xff bytes (NaN floats) so reads of uninitialized scratch show up in the results.
struct exact_workspace {
  std::vector<unsigned char> buf;
  heed::workspace ws;
  exact_workspace(std::size_t size, std::size_t misalign) {
    buf.assign(size + misalign, 0xff);
    ws.data = size ? buf.data() + misalign : nullptr;
    ws.size = size;
  }
};

inline heed::status run_dense(dense_setup& s, heed::isa i, heed::executor& ex) {
  const std::size_t need = heed::dense_workspace_size(s.params, ex.concurrency(), i);
  if (need == 0) return heed::status::invalid_argument;
  exact_workspace w(need, static_cast<std::size_t>(s.c.seed % 61));
  return heed::dense_attention(s.params, w.ws, ex, i);
}

// Checks O (and the padding of O), LSE and entropy against the reference.
inline void expect_matches_reference(const dense_setup& s, const heed_ref::attention_result& r,
                                     double atol = kOutAtol, double rtol = kOutRtol) {
  const dense_case& c = s.c;
  double worst = 0.0;
  std::int64_t bad = 0;
  std::ostringstream first;
  for (std::int64_t i = 0; i < c.lq; ++i)
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t x = 0; x < c.d; ++x) {
        const double got = s.o.load_f32(i, h, x);
        const double want = r.o_at(i, h, x);
        const double err = std::fabs(got - want);
        const double widen = std::max(1.0, r.max_abs_logit_at(h, i) / 10.0);
        const double excess = err / ((atol + rtol * std::fabs(want)) * widen);
        if (!(excess <= 1.0)) {  // also catches NaN
          if (bad == 0)
            first << "first bad O at (row " << i << ", head " << h << ", col " << x << "): got "
                  << got << " want " << want;
          ++bad;
        }
        if (std::isnan(got))
          worst = std::numeric_limits<double>::infinity();
        else
          worst = std::max(worst, excess);
      }
  EXPECT_EQ(bad, 0) << first.str() << " (worst error / tolerance " << worst << ")";

  // Padding of O is untouched.
  {
    std::vector<char> logical(s.o.bytes.size() / 4, 0);
    for (std::int64_t i = 0; i < c.lq; ++i)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t x = 0; x < c.d; ++x) logical[s.o.index(i, h, x)] = 1;
    std::int64_t clobbered = 0;
    const float* of = reinterpret_cast<const float*>(s.o.bytes.data());
    for (std::size_t e = 0; e < logical.size(); ++e)
      if (!logical[e] && of[e] != kOutSentinel) ++clobbered;
    EXPECT_EQ(clobbered, 0) << "the kernel wrote into the padding of O";
  }

  const std::int64_t rs = s.row_stride();
  for (int which = 0; which < 2; ++which) {
    const std::vector<float>& buf = which == 0 ? s.lse : s.entropy;
    if (buf.empty()) continue;
    std::int64_t bad_rows = 0, clobbered = 0;
    std::ostringstream msg;
    for (std::int64_t h = 0; h < c.hq; ++h) {
      for (std::int64_t i = 0; i < rs; ++i) {
        const float got = buf[static_cast<std::size_t>(h * rs + i)];
        if (i >= c.lq) {
          if (got != kOutSentinel) ++clobbered;
          continue;
        }
        const double lse = r.lse_at(h, i);
        bool ok;
        double want;
        if (which == 0) {
          want = lse;
          ok = std::isinf(lse) ? (std::isinf(got) && got < 0)
                               : std::fabs(got - lse) <= kLseTol * (1.0 + std::fabs(lse));
        } else {
          want = r.entropy_at(h, i);
          const double tol = kEntropyTol * (1.0 + (std::isinf(lse) ? 0.0 : std::fabs(lse)));
          ok = std::fabs(got - want) <= tol;
        }
        if (!ok) {
          if (bad_rows == 0)
            msg << (which == 0 ? "LSE" : "entropy") << " of (head " << h << ", row " << i
                << "): got " << got << " want " << want;
          ++bad_rows;
        }
      }
    }
    EXPECT_EQ(bad_rows, 0) << msg.str();
    EXPECT_EQ(clobbered, 0) << (which == 0 ? "LSE" : "entropy")
                            << " written beyond Lq within a head's stride";
  }
}

// Records the decode probability tap: every (head, key) it reports, how often, and bad calls.
struct prob_recorder {
  std::int64_t hq = 0, lk = 0;
  std::mutex mu;
  std::vector<float> p;    // [hq][lk], NaN until reported
  std::vector<int> count;  // [hq][lk]
  std::int64_t calls = 0, bad_calls = 0;

  prob_recorder(std::int64_t heads, std::int64_t keys) : hq(heads), lk(keys) {
    p.assign(static_cast<std::size_t>(hq * lk), std::numeric_limits<float>::quiet_NaN());
    count.assign(static_cast<std::size_t>(hq * lk), 0);
  }
  static void tap(void* user, int h, std::int64_t k0, const float* probs, std::int64_t n) {
    auto* self = static_cast<prob_recorder*>(user);
    std::lock_guard<std::mutex> lock(self->mu);
    ++self->calls;
    if (h < 0 || h >= self->hq || k0 < 0 || n < 0 || k0 + n > self->lk || probs == nullptr) {
      ++self->bad_calls;
      return;
    }
    for (std::int64_t j = 0; j < n; ++j) {
      const std::size_t at = static_cast<std::size_t>(h * self->lk + k0 + j);
      self->p[at] = probs[j];
      ++self->count[at];
    }
  }
  void attach(heed::dense_params& params) {
    params.prob_tap = &prob_recorder::tap;
    params.prob_tap_user = this;
  }
};

// Decode (Lq == 1) tap checks: no key reported twice; every key the query can see reported;
// every reported probability matches the reference; unreported keys have probability 0.
inline void expect_probs_match(const prob_recorder& rec, const heed_ref::attention_result& r,
                               std::int64_t q_pos, bool causal) {
  EXPECT_EQ(rec.bad_calls, 0);
  EXPECT_GT(rec.calls, 0);
  std::int64_t twice = 0, missing = 0, bad = 0;
  std::ostringstream msg;
  for (std::int64_t h = 0; h < rec.hq; ++h) {
    for (std::int64_t j = 0; j < rec.lk; ++j) {
      const std::size_t at = static_cast<std::size_t>(h * rec.lk + j);
      const double want = r.prob_at(h, 0, j);
      const bool must_report = !causal || j <= q_pos;
      if (rec.count[at] > 1) ++twice;
      if (rec.count[at] == 0) {
        if (must_report || want != 0.0) ++missing;
        continue;
      }
      const double got = rec.p[at];
      if (!(std::fabs(got - want) <= kProbAtol + kProbRtol * want)) {
        if (bad == 0)
          msg << "p(head " << h << ", key " << j << "): got " << got << " want " << want;
        ++bad;
      }
    }
  }
  EXPECT_EQ(twice, 0) << "keys reported more than once";
  EXPECT_EQ(missing, 0) << "visible keys never reported";
  EXPECT_EQ(bad, 0) << msg.str();
}

}  // namespace heed_test
