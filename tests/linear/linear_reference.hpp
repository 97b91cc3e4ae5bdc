// Float64 quadratic reference of linear attention: the weights w_ij = g^(i-j) phi(q_i).phi(k_j)
// (j <= i when causal) materialized row by row, then normalized per linear_norm, times V. The
// feature maps are written out here independently of the library.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace heed_ref {

enum class lin_map { identity, elu1, relu, favor, hedgehog };
enum class lin_norm { none, sum, mala };

struct linear_problem {
  std::int64_t L = 0, hq = 1, hkv = 1, d = 1, dv = 1;
  std::vector<double> q, k, v;  // [L][hq][d], [L][hkv][d], [L][hkv][dv]
  bool causal = true;
  lin_norm norm = lin_norm::sum;
  double eps = 1e-6;
  std::vector<double> gates;  // [hkv], empty = 1
  lin_map map = lin_map::elu1;
  std::int64_t m = 0;                // favor / hedgehog feature count
  std::vector<double> w, b, wk, bk;  // [d][m], [m] (shared by heads)

  std::int64_t features() const {
    return map == lin_map::favor ? m : map == lin_map::hedgehog ? 2 * m : d;
  }

  std::vector<double> phi(const double* x, bool key) const {
    std::vector<double> out(static_cast<std::size_t>(features()));
    if (map == lin_map::identity || map == lin_map::elu1 || map == lin_map::relu) {
      for (std::int64_t c = 0; c < d; ++c) {
        const double t = x[c];
        out[c] = map == lin_map::identity ? t
                 : map == lin_map::relu   ? std::max(t, 0.0)
                                          : (t > 0 ? t + 1.0 : std::exp(t));
      }
      return out;
    }
    const std::vector<double>& W = (key && !wk.empty()) ? wk : w;
    const std::vector<double>& Bv = (key && !wk.empty()) ? bk : b;
    if (map == lin_map::favor) {
      const double s = 1.0 / std::pow(double(d), 0.25);
      double sq = 0.0;
      for (std::int64_t c = 0; c < d; ++c) sq += x[c] * s * x[c] * s;
      for (std::int64_t r = 0; r < m; ++r) {
        double u = 0.0;
        for (std::int64_t c = 0; c < d; ++c) u += W[c * m + r] * x[c] * s;
        out[r] = std::exp(u - 0.5 * sq) / std::sqrt(double(m));
      }
      return out;
    }
    for (std::int64_t r = 0; r < m; ++r) {  // hedgehog
      double u = Bv.empty() ? 0.0 : Bv[r];
      for (std::int64_t c = 0; c < d; ++c) u += W[c * m + r] * x[c];
      out[r] = std::exp(u);
      out[m + r] = std::exp(-u);
    }
    return out;
  }
};

struct linear_result {
  std::vector<double> o;      // [L][hq][dv]
  std::vector<double> bound;  // [L][hq]: sum_j |coefficient of v_j| * max|v_j|, the output's scale
  std::vector<double> entropy;  // [hq][L]: entropy of the normalized implied weights (nats)
};

inline linear_result linear_attention_ref(const linear_problem& p) {
  linear_result r;
  r.o.assign(static_cast<std::size_t>(p.L * p.hq * p.dv), 0.0);
  r.bound.assign(static_cast<std::size_t>(p.L * p.hq), 0.0);
  r.entropy.assign(static_cast<std::size_t>(p.L * p.hq), 0.0);
  const std::int64_t group = p.hq / p.hkv, F = p.features();
  std::vector<std::vector<double>> phik(static_cast<std::size_t>(p.L * p.hkv));
  for (std::int64_t j = 0; j < p.L; ++j)
    for (std::int64_t g = 0; g < p.hkv; ++g)
      phik[static_cast<std::size_t>(j * p.hkv + g)] = p.phi(&p.k[(j * p.hkv + g) * p.d], true);
  std::vector<double> w(static_cast<std::size_t>(p.L)), decay(static_cast<std::size_t>(p.L));
  for (std::int64_t h = 0; h < p.hq; ++h) {
    const std::int64_t g = h / group;
    const double gate = p.gates.empty() ? 1.0 : p.gates[static_cast<std::size_t>(g)];
    for (std::int64_t i = 0; i < p.L; ++i) {
      const std::vector<double> fq = p.phi(&p.q[(i * p.hq + h) * p.d], false);
      const std::int64_t jend = p.causal ? i + 1 : p.L;
      double den = 0.0, n = 0.0;
      for (std::int64_t j = 0; j < jend; ++j) {
        decay[j] = p.causal ? std::pow(gate, double(i - j)) : 1.0;
        const std::vector<double>& fk = phik[static_cast<std::size_t>(j * p.hkv + g)];
        double a = 0.0;
        for (std::int64_t f = 0; f < F; ++f) a += fq[f] * fk[f];
        w[j] = decay[j] * a;
        den += w[j];
        n += decay[j];
      }
      // Coefficients of v_j.
      double* orow = &r.o[static_cast<std::size_t>((i * p.hq + h) * p.dv)];
      double bound = 0.0, ent = 0.0, total = 0.0;
      for (std::int64_t j = 0; j < jend; ++j) {
        double c = w[j];
        if (p.norm == lin_norm::sum) c = w[j] / (den + p.eps);
        if (p.norm == lin_norm::mala) c = (1.0 + 1.0 / (den + p.eps)) * w[j] - (den / n) * decay[j];
        const double* vj = &p.v[(j * p.hkv + g) * p.dv];
        double vmax = 0.0;
        for (std::int64_t x = 0; x < p.dv; ++x) {
          orow[x] += c * vj[x];
          vmax = std::max(vmax, std::fabs(vj[x]));
        }
        bound += std::fabs(c) * vmax;
        total += c;
      }
      for (std::int64_t j = 0; j < jend; ++j) {  // the same coefficients, normalized
        double c = w[j];
        if (p.norm == lin_norm::sum) c = w[j] / (den + p.eps);
        if (p.norm == lin_norm::mala) c = (1.0 + 1.0 / (den + p.eps)) * w[j] - (den / n) * decay[j];
        const double pj = c / total;
        if (pj > 0) ent -= pj * std::log(pj);
        if (pj < 0) ent = std::nan("");
      }
      r.bound[static_cast<std::size_t>(i * p.hq + h)] = bound;
      r.entropy[static_cast<std::size_t>(h * p.L + i)] = ent;
    }
  }
  return r;
}

}  // namespace heed_ref
