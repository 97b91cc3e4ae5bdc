// Slow analysis path of linear attention: the entropy (nats) of the attention a row implicitly
// puts on the keys, p_ij = c_ij / sum_j c_ij with c_ij the coefficient of v_j in o_i
// (g^(i-j) phi(q_i).phi(k_j), or MALA's beta * that - gamma * g^(i-j)). O(L * F * d) per row:
// for selected heads and rows, not for every row of a long prefill. A row whose implied weights
// are not all non-negative (identity map, MALA) has no entropy: NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "heed/core/detail/no_throw.hpp"
#include "heed/core/dtype.hpp"
#include "heed/linear/feature_maps.hpp"
#include "heed/linear/linear_params.hpp"

namespace heed {

// out[hi * n_rows + ri] = entropy of row rows[ri] of query head heads[hi]. Rows are positions in
// p's sequence; a state (p.state_in) is not included (only the tokens of p). Allocates its
// scratch (out_of_memory on failure).
template <class Arch = xsimd::default_arch, class Map>
status linear_attention_entropy_t(const linear_params& p, const Map& map, const int* heads,
                                  int n_heads, const std::int64_t* rows, int n_rows,
                                  float* out) noexcept {
  HEED_RETURN_IF_ERROR(validate(p));
  HEED_RETURN_IF_ERROR(map.check(p.head_dim()));
  if (n_heads < 0 || n_rows < 0) return status::invalid_argument;
  if ((n_heads > 0 && heads == nullptr) || (n_rows > 0 && rows == nullptr))
    return status::null_pointer;
  if (n_heads > 0 && n_rows > 0 && out == nullptr) return status::null_pointer;
  for (int i = 0; i < n_heads; ++i)
    if (heads[i] < 0 || heads[i] >= p.q_heads()) return status::invalid_argument;
  for (int i = 0; i < n_rows; ++i)
    if (rows[i] < 0 || rows[i] >= p.len()) return status::invalid_argument;
  const std::int64_t d = p.head_dim(), f = map.feature_dim(d), L = p.len();
  if (f < 1 || f > (1 << 16)) return status::invalid_argument;
  return detail::no_throw([&]() -> status {
    std::vector<float> krow(static_cast<std::size_t>(d)), fq(static_cast<std::size_t>(f));
    std::vector<float> fk(static_cast<std::size_t>(L * f));
    std::vector<double> c(static_cast<std::size_t>(L)), decay(static_cast<std::size_t>(L));
    const std::int64_t group = p.q_heads() / p.kv_heads();
    int cached_kvh = -1;
    for (int hi = 0; hi < n_heads; ++hi) {
      const int h = heads[hi], kvh = static_cast<int>(h / group);
      if (kvh != cached_kvh) {  // phi(K) of this KV head
        for (std::int64_t j = 0; j < L; ++j) {
          for (std::int64_t x = 0; x < d; ++x) {
            const std::int64_t off = p.k.offset(j, kvh) + x;
            switch (p.k.type) {
              case dtype::f16:
                krow[x] = to_float(static_cast<const f16*>(p.k.data)[off]);
                break;
              case dtype::bf16:
                krow[x] = to_float(static_cast<const bf16*>(p.k.data)[off]);
                break;
              default:
                krow[x] = static_cast<const float*>(p.k.data)[off];
            }
          }
          map.template map_rows<Arch>(feature_role::key, kvh, krow.data(), d, 1, d,
                                      fk.data() + j * f, f);
        }
        cached_kvh = kvh;
      }
      const double g = p.gates ? p.gates[kvh] : 1.0;
      for (int ri = 0; ri < n_rows; ++ri) {
        const std::int64_t i = rows[ri];
        const float* q = static_cast<const float*>(p.q.data) + p.q.offset(i, h);
        map.template map_rows<Arch>(feature_role::query, h, q, d, 1, d, fq.data(), f);
        const std::int64_t jend = p.causal ? i + 1 : L;
        double den = 0.0, n = 0.0;
        for (std::int64_t j = 0; j < jend; ++j) {
          double a = 0.0;
          for (std::int64_t x = 0; x < f; ++x) a += double(fq[x]) * fk[j * f + x];
          decay[j] = p.causal ? std::pow(g, double(i - j)) : 1.0;
          c[j] = decay[j] * a;
          den += c[j];
          n += decay[j];
        }
        if (p.norm == linear_norm::mala) {
          const double beta = 1.0 + 1.0 / (den + p.eps), gamma = n > 0 ? den / n : 0.0;
          for (std::int64_t j = 0; j < jend; ++j) c[j] = beta * c[j] - gamma * decay[j];
        }
        double total = 0.0;
        bool negative = false;
        for (std::int64_t j = 0; j < jend; ++j) {
          total += c[j];
          negative = negative || c[j] < 0.0;
        }
        double ent = 0.0;
        if (negative || !(total > 0.0)) {
          ent = std::numeric_limits<double>::quiet_NaN();
        } else {
          for (std::int64_t j = 0; j < jend; ++j)
            if (c[j] > 0.0) ent -= c[j] / total * std::log(c[j] / total);
        }
        out[std::int64_t(hi) * n_rows + ri] = static_cast<float>(ent);
      }
    }
    return status::ok;
  });
}

}  // namespace heed
