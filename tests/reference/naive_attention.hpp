// Float64 naive attention: the reference every optimized path is compared with.
//
// Written for clarity, not speed: one query row at a time, the whole logit row materialized,
// a plain softmax with the max subtracted. Inputs are double copies of the values the kernel
// actually reads (for f16 / bf16 K/V, the rounded values), so the comparison measures the
// kernel's arithmetic, not the storage rounding.
//
// Semantics (matching heed::dense_params):
//   query row i sits at position q_pos = q_offset + i among the keys (q_offset = -1 means
//   lk - lq); key j sits at position j;
//   logit s = scale * q . k                         (scale 0 means 1 / sqrt(d))
//   ALiBi:   s -= slope[h] * (q_pos - k_pos)
//   softcap: s = cap * tanh(s / cap)
//   user transform (optional), applied last
//   masks:   causal drops k_pos > q_pos; the window drops q_pos - k_pos > window_left;
//            a user keep() (optional) is AND-ed in
//   sinks:   a virtual key with logit sink[h] (not scaled) and a zero value joins the softmax.
// A row with no visible key and no sink gives O = 0, LSE = -inf, entropy 0.
// Entropy is in nats, over the whole distribution (the sink included).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace heed_ref {

struct attention_problem {
  std::int64_t lq = 0, lk = 0, hq = 0, hkv = 0, d = 0;
  std::vector<double> q;  // [lq][hq][d]
  std::vector<double> k;  // [lk][hkv][d]
  std::vector<double> v;  // [lk][hkv][d]

  double scale = 0.0;  // 0 means 1 / sqrt(d)
  bool causal = true;
  std::int64_t q_offset = -1;  // -1 means lk - lq
  std::int64_t window_left = -1;
  double softcap = 0.0;
  std::vector<double> alibi_slopes;  // [hq], empty = off
  std::vector<double> sink_logits;   // [hq], empty = off
  // Row scale by n = keys under the causal limit (q_pos + 1, at most lk; lk when not causal):
  std::vector<double> ssmax;           // [hq]: s *= ssmax[h] * log(n); empty = off
  std::int64_t length_scale_base = 0;  // s *= max(floor, log(n) / log(base)); 0 = off
  double length_scale_floor = 1.0;
  std::vector<double> key_bias;  // [hq][key_bias_len]: s += bias for keys j < key_bias_len
  std::int64_t key_bias_len = 0;
  bool sigmoid = false;              // p = sigmoid(s + sigmoid_bias[h]), unnormalized; LSE and
  std::vector<double> sigmoid_bias;  // entropy 0. [hq], empty = 0

  // Optional user hooks (for compile-time variants written in tests).
  std::function<double(int h, std::int64_t q_pos, std::int64_t k_pos, double s)> transform;
  std::function<bool(int h, std::int64_t q_pos, std::int64_t k_pos)> keep;
  // A per-row sink logit (replaces sink_logits when set).
  std::function<double(int h, std::int64_t q_pos)> row_sink;
  // Keys stored as q8, which decode scores with the query row quantized to q8
  // (attention/detail/decode_qk_int.hpp): for query head h, key j with quantized_key(h, j) true
  // takes its logit from q_quantized ([lq][hq][d]) instead of q. Unset: q for every key.
  std::function<bool(int h, std::int64_t k_pos)> quantized_key;
  std::vector<double> q_quantized;

  void resize() {
    q.assign(static_cast<std::size_t>(lq * hq * d), 0.0);
    k.assign(static_cast<std::size_t>(lk * hkv * d), 0.0);
    v.assign(static_cast<std::size_t>(lk * hkv * d), 0.0);
  }
  double& q_at(std::int64_t i, std::int64_t h, std::int64_t c) {
    return q[static_cast<std::size_t>((i * hq + h) * d + c)];
  }
  double& k_at(std::int64_t j, std::int64_t h, std::int64_t c) {
    return k[static_cast<std::size_t>((j * hkv + h) * d + c)];
  }
  double& v_at(std::int64_t j, std::int64_t h, std::int64_t c) {
    return v[static_cast<std::size_t>((j * hkv + h) * d + c)];
  }
  std::int64_t offset() const { return q_offset >= 0 ? q_offset : lk - lq; }
};

struct attention_result {
  std::int64_t lq = 0, lk = 0, hq = 0, d = 0;
  std::vector<double> o;           // [lq][hq][d]
  std::vector<double> lse;         // [hq][lq], natural log
  std::vector<double> entropy;     // [hq][lq], nats
  std::vector<double> probs;       // [hq][lq][lk], 0 for masked keys
  std::vector<double> sink_probs;  // [hq][lq], 0 without sinks
  // [hq][lq]: the largest |logit| among the keys (and sink) within 30 nats of the row max, i.e.
  // those with any weight; 0 for an empty row. Sizes the error fp32 logits can carry.
  std::vector<double> max_abs_logit;

  double o_at(std::int64_t i, std::int64_t h, std::int64_t c) const {
    return o[static_cast<std::size_t>((i * hq + h) * d + c)];
  }
  double lse_at(std::int64_t h, std::int64_t i) const {
    return lse[static_cast<std::size_t>(h * lq + i)];
  }
  double entropy_at(std::int64_t h, std::int64_t i) const {
    return entropy[static_cast<std::size_t>(h * lq + i)];
  }
  double max_abs_logit_at(std::int64_t h, std::int64_t i) const {
    return max_abs_logit[static_cast<std::size_t>(h * lq + i)];
  }
  double prob_at(std::int64_t h, std::int64_t i, std::int64_t j) const {
    return probs[static_cast<std::size_t>((h * lq + i) * lk + j)];
  }
};

inline attention_result naive_attention(const attention_problem& p) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  attention_result r;
  r.lq = p.lq;
  r.lk = p.lk;
  r.hq = p.hq;
  r.d = p.d;
  r.o.assign(static_cast<std::size_t>(p.lq * p.hq * p.d), 0.0);
  r.lse.assign(static_cast<std::size_t>(p.hq * p.lq), neg_inf);
  r.entropy.assign(static_cast<std::size_t>(p.hq * p.lq), 0.0);
  r.probs.assign(static_cast<std::size_t>(p.hq * p.lq * p.lk), 0.0);
  r.sink_probs.assign(static_cast<std::size_t>(p.hq * p.lq), 0.0);
  r.max_abs_logit.assign(static_cast<std::size_t>(p.hq * p.lq), 0.0);

  const double scale = p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(p.d));
  const std::int64_t group = p.hq / p.hkv;
  const bool has_sinks = !p.sink_logits.empty() || static_cast<bool>(p.row_sink);
  std::vector<double> s(static_cast<std::size_t>(p.lk));
  std::vector<char> visible(static_cast<std::size_t>(p.lk));

  for (std::int64_t h = 0; h < p.hq; ++h) {
    const std::int64_t kvh = h / group;
    for (std::int64_t i = 0; i < p.lq; ++i) {
      const std::int64_t q_pos = p.offset() + i;
      const double* qrow = &p.q[static_cast<std::size_t>((i * p.hq + h) * p.d)];

      double row_scale = 1.0;
      {
        const double n = static_cast<double>(p.causal ? std::min(q_pos + 1, p.lk) : p.lk);
        if (!p.ssmax.empty()) row_scale *= p.ssmax[static_cast<std::size_t>(h)] * std::log(n);
        if (p.length_scale_base > 0)
          row_scale *= std::max(p.length_scale_floor,
                                std::log(n) / std::log(static_cast<double>(p.length_scale_base)));
      }

      // Logits and mask of the whole row.
      double m = neg_inf;
      for (std::int64_t j = 0; j < p.lk; ++j) {
        bool keep = true;
        if (p.causal && j > q_pos) keep = false;
        if (p.window_left >= 0 && q_pos - j > p.window_left) keep = false;
        if (keep && p.keep) keep = p.keep(static_cast<int>(h), q_pos, j);
        visible[static_cast<std::size_t>(j)] = keep;
        if (!keep) continue;
        const double* krow = &p.k[static_cast<std::size_t>((j * p.hkv + kvh) * p.d)];
        const double* qj = p.quantized_key && p.quantized_key(static_cast<int>(h), j)
                               ? &p.q_quantized[static_cast<std::size_t>((i * p.hq + h) * p.d)]
                               : qrow;
        double dot = 0.0;
        for (std::int64_t c = 0; c < p.d; ++c) dot += qj[c] * krow[c];
        double x = scale * dot * row_scale;
        if (!p.alibi_slopes.empty())
          x -= p.alibi_slopes[static_cast<std::size_t>(h)] * static_cast<double>(q_pos - j);
        if (j < p.key_bias_len) x += p.key_bias[static_cast<std::size_t>(h * p.key_bias_len + j)];
        if (p.softcap > 0.0) x = p.softcap * std::tanh(x / p.softcap);
        if (p.transform) x = p.transform(static_cast<int>(h), q_pos, j, x);
        s[static_cast<std::size_t>(j)] = x;
        m = std::max(m, x);
      }
      if (p.sigmoid) {  // unnormalized: o = sum sigmoid(s + b) v
        const std::size_t row = static_cast<std::size_t>(h * p.lq + i);
        const double b = p.sigmoid_bias.empty() ? 0.0 : p.sigmoid_bias[static_cast<std::size_t>(h)];
        r.lse[row] = 0.0;
        double max_abs = 0.0;
        double* orow = &r.o[static_cast<std::size_t>((i * p.hq + h) * p.d)];
        for (std::int64_t j = 0; j < p.lk; ++j) {
          if (!visible[static_cast<std::size_t>(j)]) continue;
          const double x = s[static_cast<std::size_t>(j)] + b;
          const double pj = 1.0 / (1.0 + std::exp(-x));
          max_abs = std::max(max_abs, std::fabs(x));
          r.probs[row * static_cast<std::size_t>(p.lk) + static_cast<std::size_t>(j)] = pj;
          const double* vrow = &p.v[static_cast<std::size_t>((j * p.hkv + kvh) * p.d)];
          for (std::int64_t c = 0; c < p.d; ++c) orow[c] += pj * vrow[c];
        }
        r.max_abs_logit[row] = max_abs;
        continue;
      }
      double sink = neg_inf;
      if (p.row_sink) {
        sink = p.row_sink(static_cast<int>(h), q_pos);
      } else if (has_sinks) {
        sink = p.sink_logits[static_cast<std::size_t>(h)];
      }
      m = std::max(m, sink);
      if (m == neg_inf) continue;  // nothing visible: O = 0, LSE = -inf, entropy 0
      double max_abs = has_sinks && sink >= m - 30.0 ? std::fabs(sink) : 0.0;
      for (std::int64_t j = 0; j < p.lk; ++j)
        if (visible[static_cast<std::size_t>(j)] && s[static_cast<std::size_t>(j)] >= m - 30.0)
          max_abs = std::max(max_abs, std::fabs(s[static_cast<std::size_t>(j)]));

      // Softmax with the max subtracted.
      double z = has_sinks ? std::exp(sink - m) : 0.0;
      for (std::int64_t j = 0; j < p.lk; ++j)
        if (visible[static_cast<std::size_t>(j)]) z += std::exp(s[static_cast<std::size_t>(j)] - m);
      const double lse = m + std::log(z);
      const std::size_t row = static_cast<std::size_t>(h * p.lq + i);
      r.lse[row] = lse;
      r.max_abs_logit[row] = max_abs;

      double entropy = 0.0;
      double* orow = &r.o[static_cast<std::size_t>((i * p.hq + h) * p.d)];
      for (std::int64_t j = 0; j < p.lk; ++j) {
        if (!visible[static_cast<std::size_t>(j)]) continue;
        const double lp = s[static_cast<std::size_t>(j)] - lse;  // log p_j
        const double pj = std::exp(lp);
        r.probs[row * static_cast<std::size_t>(p.lk) + static_cast<std::size_t>(j)] = pj;
        entropy -= pj * lp;
        const double* vrow = &p.v[static_cast<std::size_t>((j * p.hkv + kvh) * p.d)];
        for (std::int64_t c = 0; c < p.d; ++c) orow[c] += pj * vrow[c];
      }
      if (has_sinks) {
        const double ps = std::exp(sink - lse);
        r.sink_probs[row] = ps;
        entropy -= ps * (sink - lse);
      }
      r.entropy[row] = entropy;
    }
  }
  return r;
}

}  // namespace heed_ref
