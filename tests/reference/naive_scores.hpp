// Float64 naive scores: the reference of include/heed/scoring/{key_norm, expected_attention,
// lagkv, caote, observation_window, entropy_stats}.hpp.
//
// Written for clarity, not speed. Tensors are plain row-major double arrays:
//   q [n][hq][d], k / v [lk][hkv][d], per-head scores [heads][lk].
// The window reference materializes the whole attention matrix of the window rows with a full
// softmax per row (no LSE shortcut), so comparing with the kernel also checks its use of the LSE.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "heed/core/dtype.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/quant/quantize.hpp"

namespace heed_ref {

using vec = std::vector<double>;

struct kv_tensor {
  std::int64_t len = 0, heads = 0, d = 0;
  vec x;  // [len][heads][d]
  double at(std::int64_t j, std::int64_t h, std::int64_t c) const {
    return x[static_cast<std::size_t>((j * heads + h) * d + c)];
  }
};

// Test input: random K or V stored as f32 / f16 / bf16, or quantized to q8 / q4 rows (group: the
// largest of 32, 16, 8 dividing d), with the double copy of the stored (rounded or dequantized)
// values the reference reads. layout head_seq_dim and a row padding (elements, or bytes for
// quantized rows) exercise strides.
struct stored_kv {
  kv_tensor ref;
  heed::dtype type = heed::dtype::f32;
  std::vector<float> f32;
  std::vector<heed::f16> f16;
  std::vector<heed::bf16> bf16;
  std::vector<unsigned char> quant;
  heed::tensor_view view;

  static int quant_group(std::int64_t d) {
    for (int g = 32; g > 8; g /= 2)
      if (d % g == 0) return g;
    return 8;
  }

  stored_kv() = default;
  stored_kv(std::int64_t len, std::int64_t heads, std::int64_t d, heed::dtype t, unsigned seed,
            bool head_major = false, std::int64_t pad = 0, double mean = 0.0, double stddev = 1.0)
      : type(t) {
    ref.len = len;
    ref.heads = heads;
    ref.d = d;
    ref.x.resize(static_cast<std::size_t>(len * heads * d));
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd(mean, stddev);
    const bool q = heed::is_quantized(t);
    const int g = quant_group(d);
    // Stride units between consecutive rows of the storage.
    const std::int64_t row = (q ? std::int64_t(heed::quant::row_bytes(t, d, g)) : d) + pad;
    const std::size_t n = static_cast<std::size_t>(len * heads * row);
    if (t == heed::dtype::f32) f32.assign(n, 0.f);
    if (t == heed::dtype::f16) f16.assign(n, heed::f16{0});
    if (t == heed::dtype::bf16) bf16.assign(n, heed::bf16{0});
    if (q) quant.assign(n, 0);
    std::vector<float> x(static_cast<std::size_t>(d));
    for (std::int64_t j = 0; j < len; ++j)
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t at = (head_major ? h * len + j : j * heads + h) * row;
        double* stored = ref.x.data() + (j * heads + h) * d;
        for (std::int64_t c = 0; c < d; ++c) {
          x[std::size_t(c)] = static_cast<float>(nd(rng));
          stored[c] = x[std::size_t(c)];
          const std::size_t e = std::size_t(at + c);
          if (t == heed::dtype::f32) f32[e] = x[std::size_t(c)];
          if (t == heed::dtype::f16) {
            f16[e] = heed::to_f16(x[std::size_t(c)]);
            stored[c] = heed::to_float(f16[e]);
          }
          if (t == heed::dtype::bf16) {
            bf16[e] = heed::to_bf16(x[std::size_t(c)]);
            stored[c] = heed::to_float(bf16[e]);
          }
        }
        if (q) {
          unsigned char* r = quant.data() + at;
          if (heed::quant::quantize_row(t, x.data(), d, g, r) != heed::status::ok) std::abort();
          for (std::int64_t c = 0; c < d; ++c)
            stored[c] = heed::quant::dequantize_value(t, r, d, g, c);
        }
      }
    const void* data = t == heed::dtype::f32   ? static_cast<const void*>(f32.data())
                       : t == heed::dtype::f16 ? static_cast<const void*>(f16.data())
                       : q                     ? static_cast<const void*>(quant.data())
                                               : static_cast<const void*>(bf16.data());
    view = heed::make_view<const void*>(data, t, len, heads, d);
    view.group = q ? g : 0;
    view.seq_stride = head_major ? row : heads * row;
    view.head_stride = head_major ? len * row : row;
  }
};

// Random f32 rows [n][heads][d] and their double copy.
struct stored_q {
  std::vector<float> f;
  vec ref;
  heed::tensor_view view;
  stored_q(std::int64_t n, std::int64_t heads, std::int64_t d, unsigned seed, double mean = 0.0,
           double stddev = 1.0) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd(mean, stddev);
    f.resize(static_cast<std::size_t>(n * heads * d));
    ref.resize(f.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
      f[i] = static_cast<float>(nd(rng));
      ref[i] = f[i];
    }
    view = heed::make_view(f.data(), n, heads, d);
  }
};

inline double norm_of(const kv_tensor& t, std::int64_t j, std::int64_t h) {
  double s = 0;
  for (std::int64_t c = 0; c < t.d; ++c) s += t.at(j, h, c) * t.at(j, h, c);
  return std::sqrt(s);
}

// Softmax over the finite entries of x; -inf gives 0.
inline vec softmax(const vec& x) {
  double m = -std::numeric_limits<double>::infinity();
  for (double a : x) m = std::max(m, a);
  vec p(x.size(), 0.0);
  if (std::isinf(m)) return p;
  double den = 0;
  for (double a : x) den += std::exp(a - m);
  for (std::size_t j = 0; j < x.size(); ++j) p[j] = std::exp(x[j] - m) / den;
  return p;
}

// rows [hq][lk] -> [hkv][lk] with mean or max over each group.
inline vec reduce_heads(const vec& rows, std::int64_t hq, std::int64_t hkv, std::int64_t lk,
                        bool use_max) {
  const std::int64_t g = hq / hkv;
  vec out(static_cast<std::size_t>(hkv * lk), 0.0);
  for (std::int64_t kh = 0; kh < hkv; ++kh)
    for (std::int64_t j = 0; j < lk; ++j) {
      double acc = use_max ? -std::numeric_limits<double>::infinity() : 0.0;
      for (std::int64_t t = 0; t < g; ++t) {
        const double x = rows[static_cast<std::size_t>((kh * g + t) * lk + j)];
        acc = use_max ? std::max(acc, x) : acc + x / static_cast<double>(g);
      }
      out[static_cast<std::size_t>(kh * lk + j)] = acc;
    }
  return out;
}

// ---- key / value norms -------------------------------------------------------------------------

inline vec key_norm(const kv_tensor& k) {
  vec out(static_cast<std::size_t>(k.heads * k.len));
  for (std::int64_t h = 0; h < k.heads; ++h)
    for (std::int64_t j = 0; j < k.len; ++j)
      out[static_cast<std::size_t>(h * k.len + j)] = -norm_of(k, j, h);
  return out;
}

inline vec value_norm(const kv_tensor& v) {
  vec out = key_norm(v);
  for (double& x : out) x = -x;
  return out;
}

// ---- Expected Attention ------------------------------------------------------------------------

// q [n][hq][d].
inline vec expected_attention(const vec& q, std::int64_t n, std::int64_t hq, const kv_tensor& k,
                              const kv_tensor& v, double scale, bool use_cov, bool weight_v,
                              bool use_max) {
  const std::int64_t d = k.d, lk = k.len, g = hq / k.heads;
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto qat = [&](std::int64_t i, std::int64_t h, std::int64_t c) {
    return q[static_cast<std::size_t>((i * hq + h) * d + c)];
  };
  vec rows(static_cast<std::size_t>(hq * lk));
  for (std::int64_t h = 0; h < hq; ++h) {
    vec mu(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < d; ++c) mu[std::size_t(c)] += qat(i, h, c) / double(n);
    vec sigma(static_cast<std::size_t>(d * d), 0.0);
    for (std::int64_t a = 0; a < d; ++a)
      for (std::int64_t b = 0; b < d; ++b) {
        double s = 0;
        for (std::int64_t i = 0; i < n; ++i)
          s += (qat(i, h, a) - mu[std::size_t(a)]) * (qat(i, h, b) - mu[std::size_t(b)]);
        sigma[std::size_t(a * d + b)] = s / double(n);
      }
    vec z(static_cast<std::size_t>(lk));
    for (std::int64_t j = 0; j < lk; ++j) {
      double lin = 0, quad = 0;
      for (std::int64_t a = 0; a < d; ++a) {
        lin += mu[std::size_t(a)] * k.at(j, h / g, a);
        for (std::int64_t b = 0; b < d; ++b)
          quad += k.at(j, h / g, a) * sigma[std::size_t(a * d + b)] * k.at(j, h / g, b);
      }
      z[std::size_t(j)] = scale * lin + (use_cov ? scale * scale / 2.0 * quad : 0.0);
    }
    const vec p = softmax(z);
    std::copy(p.begin(), p.end(), rows.begin() + h * lk);
  }
  vec out = reduce_heads(rows, hq, k.heads, lk, use_max);
  if (weight_v)
    for (std::int64_t h = 0; h < k.heads; ++h)
      for (std::int64_t j = 0; j < lk; ++j) out[std::size_t(h * lk + j)] *= norm_of(v, j, h);
  return out;
}

// ---- LagKV -------------------------------------------------------------------------------------

// Softmax over partition [b, e) of the population std of each token's channels normalized by the
// min / max of the follower [e, f).
inline vec lagkv_partition(const kv_tensor& x, std::int64_t h, std::int64_t b, std::int64_t e,
                           std::int64_t f, double eps) {
  vec lo(static_cast<std::size_t>(x.d)), hi(lo.size());
  for (std::int64_t c = 0; c < x.d; ++c) {
    lo[std::size_t(c)] = hi[std::size_t(c)] = x.at(e, h, c);
    for (std::int64_t t = e; t < f; ++t) {
      lo[std::size_t(c)] = std::min(lo[std::size_t(c)], x.at(t, h, c));
      hi[std::size_t(c)] = std::max(hi[std::size_t(c)], x.at(t, h, c));
    }
  }
  vec stds;
  for (std::int64_t j = b; j < e; ++j) {
    vec xn(static_cast<std::size_t>(x.d));
    for (std::int64_t c = 0; c < x.d; ++c)
      xn[std::size_t(c)] =
          (x.at(j, h, c) - lo[std::size_t(c)]) / (hi[std::size_t(c)] - lo[std::size_t(c)] + eps);
    double mean = 0;
    for (double a : xn) mean += a / double(x.d);
    double var = 0;
    for (double a : xn) var += (a - mean) * (a - mean) / double(x.d);
    stds.push_back(std::sqrt(var));
  }
  return softmax(stds);
}

inline vec lagkv(const kv_tensor& k, const kv_tensor& v, std::int64_t n_sink, std::int64_t lag,
                 double eps) {
  const std::int64_t lk = k.len;
  vec out(static_cast<std::size_t>(k.heads * lk), std::numeric_limits<double>::infinity());
  for (std::int64_t h = 0; h < k.heads; ++h)
    for (std::int64_t b = n_sink; b + lag < lk; b += lag) {
      const std::int64_t e = b + lag, f = std::min(e + lag, lk);
      const vec sk = lagkv_partition(k, h, b, e, f, eps);
      const vec sv = lagkv_partition(v, h, b, e, f, eps);
      for (std::int64_t j = b; j < e; ++j)
        out[std::size_t(h * lk + j)] = (sk[std::size_t(j - b)] + sv[std::size_t(j - b)]) / 2.0;
    }
  return out;
}

// ---- CAOTE -------------------------------------------------------------------------------------

inline double caote_value(double p, double dist) {
  const double ratio = p >= 1.0 ? 1e30 : p / (1.0 - p);
  return std::min(ratio * dist, double(std::numeric_limits<float>::max()));
}

// p [hq][lk], o [hq][d].
inline vec caote(const vec& p, const vec& o, std::int64_t hq, const kv_tensor& v, bool use_max) {
  const std::int64_t lk = v.len, d = v.d, g = hq / v.heads;
  vec rows(static_cast<std::size_t>(hq * lk));
  for (std::int64_t h = 0; h < hq; ++h)
    for (std::int64_t j = 0; j < lk; ++j) {
      double dist = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        const double e = o[std::size_t(h * d + c)] - v.at(j, h / g, c);
        dist += e * e;
      }
      rows[std::size_t(h * lk + j)] = caote_value(p[std::size_t(h * lk + j)], std::sqrt(dist));
    }
  return reduce_heads(rows, hq, v.heads, lk, use_max);
}

// scores [hkv][lk] -> probabilities (softmax over the finite scores per head) -> CAOTE with the
// group's mean output; +inf and NaN scores pass through.
inline vec caote_rescore(const vec& scores, const vec& o, std::int64_t hq, const kv_tensor& v) {
  const std::int64_t lk = v.len, d = v.d, g = hq / v.heads;
  vec out(static_cast<std::size_t>(v.heads * lk));
  for (std::int64_t h = 0; h < v.heads; ++h) {
    vec z(static_cast<std::size_t>(lk));
    for (std::int64_t j = 0; j < lk; ++j) {
      const double x = scores[std::size_t(h * lk + j)];
      z[std::size_t(j)] = std::isfinite(x) ? x : -std::numeric_limits<double>::infinity();
    }
    const vec p = softmax(z);
    vec om(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t t = 0; t < g; ++t)
      for (std::int64_t c = 0; c < d; ++c)
        om[std::size_t(c)] += o[std::size_t((h * g + t) * d + c)] / double(g);
    for (std::int64_t j = 0; j < lk; ++j) {
      const double x = scores[std::size_t(h * lk + j)];
      if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) {
        out[std::size_t(h * lk + j)] = x;
        continue;
      }
      double dist = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        const double e = om[std::size_t(c)] - v.at(j, h, c);
        dist += e * e;
      }
      out[std::size_t(h * lk + j)] = caote_value(p[std::size_t(j)], std::sqrt(dist));
    }
  }
  return out;
}

// ---- Observation window ------------------------------------------------------------------------

struct window_result {
  vec probs;     // [hq][w][lk], full softmax of each window row
  vec lse;       // [hq][w]
  vec window;    // [hkv][lk] after pooling and reduction
  vec vertical;  // [hq][lk]
  vec slash;     // [hq][lk]
  vec colmean;   // [hkv][lk]
};

// pool: 0 none, 1 max, 2 avg (count_include_pad); odd kernel.
inline vec pool1d(const vec& x, int kind, int kernel) {
  if (kind == 0) return x;
  const std::int64_t n = static_cast<std::int64_t>(x.size()), r = kernel / 2;
  vec out(x.size());
  for (std::int64_t j = 0; j < n; ++j) {
    double m = -std::numeric_limits<double>::infinity(), s = 0;
    for (std::int64_t t = j - r; t <= j + r; ++t) {
      const bool inside = t >= 0 && t < n;
      if (inside) {
        m = std::max(m, x[std::size_t(t)]);
        s += x[std::size_t(t)];
      }
    }
    out[std::size_t(j)] = kind == 1 ? m : s / double(kernel);
  }
  return out;
}

// q [w][hq][d] at positions q_offset + i; plain logits scale * q.k; causal unless told.
inline window_result observation_window(const vec& q, std::int64_t w, std::int64_t hq,
                                        const kv_tensor& k, std::int64_t q_offset, double scale,
                                        int pool, int kernel, bool use_max, bool causal = true) {
  const std::int64_t lk = k.len, d = k.d, g = hq / k.heads;
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(d));
  window_result r;
  r.probs.assign(static_cast<std::size_t>(hq * w * lk), 0.0);
  r.lse.assign(static_cast<std::size_t>(hq * w), -std::numeric_limits<double>::infinity());
  r.vertical.assign(static_cast<std::size_t>(hq * lk), 0.0);
  r.slash.assign(static_cast<std::size_t>(hq * lk), 0.0);
  vec mean_rows(static_cast<std::size_t>(hq * lk), 0.0), colmean_rows(mean_rows.size(), 0.0);
  for (std::int64_t h = 0; h < hq; ++h) {
    vec count(static_cast<std::size_t>(lk), 0.0);
    for (std::int64_t i = 0; i < w; ++i) {
      const std::int64_t pos = q_offset + i;
      vec s(static_cast<std::size_t>(lk), -std::numeric_limits<double>::infinity());
      for (std::int64_t j = 0; j < lk && (!causal || j <= pos); ++j) {
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c)
          dot += q[std::size_t((i * hq + h) * d + c)] * k.at(j, h / g, c);
        s[std::size_t(j)] = scale * dot;
        count[std::size_t(j)] += 1;
      }
      const vec p = softmax(s);
      double m = -std::numeric_limits<double>::infinity(), den = 0;
      for (double a : s) m = std::max(m, a);
      for (double a : s) den += std::isinf(a) ? 0.0 : std::exp(a - m);
      r.lse[std::size_t(h * w + i)] = m + std::log(den);
      for (std::int64_t j = 0; j < lk; ++j) {
        const double pj = p[std::size_t(j)];
        r.probs[std::size_t((h * w + i) * lk + j)] = pj;
        r.vertical[std::size_t(h * lk + j)] += pj;
        mean_rows[std::size_t(h * lk + j)] += pj / double(w);
        const std::int64_t t = pos - j;
        if (t >= 0 && t < lk) r.slash[std::size_t(h * lk + t)] += pj;
      }
    }
    vec row(mean_rows.begin() + h * lk, mean_rows.begin() + (h + 1) * lk);
    const vec pooled = pool1d(row, pool, kernel);
    std::copy(pooled.begin(), pooled.end(), mean_rows.begin() + h * lk);
    for (std::int64_t j = 0; j < lk; ++j)
      colmean_rows[std::size_t(h * lk + j)] =
          count[std::size_t(j)] > 0 ? r.vertical[std::size_t(h * lk + j)] / count[std::size_t(j)]
                                    : 0.0;
  }
  r.window = reduce_heads(mean_rows, hq, k.heads, lk, use_max);
  r.colmean = reduce_heads(colmean_rows, hq, k.heads, lk, use_max);
  return r;
}

// ---- Entropy statistics ------------------------------------------------------------------------

struct entropy_summary {
  double mean, min, max;
};

inline entropy_summary entropy_stats(const std::vector<float>& row) {
  entropy_summary s{0.0, std::numeric_limits<double>::infinity(),
                    -std::numeric_limits<double>::infinity()};
  for (float x : row) {
    s.mean += double(x) / double(row.size());
    s.min = std::min(s.min, double(x));
    s.max = std::max(s.max, double(x));
  }
  return s;
}

}  // namespace heed_ref
