// The chunked linear-attention kernel. Private header: include heed/linear/linear.hpp.
//
// One task per KV head, chunks of C rows in order. Per chunk: phi(K) (and its transpose), then for
// every query head of the group
//   A   = phi(Q) phi(K)^T, masked to b <= a and decayed by g^(a-b)   (the exact intra-chunk part)
//   O   = (g^(a+1) phi(Q)) S + A V,  den = (g^(a+1) phi(Q)) . z + rowsum(A)
// and finally the state moves past the chunk: S = g^n S + (g^(n-1-b) phi(K))^T V, z likewise,
// plus the decayed value sum and count (MALA). Non-causal: one pass builds S and z over every
// key, a second multiplies. All products go through small_gemm (register-blocked xsimd).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/linear/detail/small_gemm.hpp"
#include "heed/linear/feature_maps.hpp"
#include "heed/linear/linear_params.hpp"
#include "heed/simd/convert.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

struct linear_dims {
  std::int64_t d, dv, f, c;  // head dim, value dim, feature dim, chunk rows
  std::int64_t state;        // floats of state per KV head
};

HEED_FORCE_INLINE linear_dims linear_dims_of(const linear_params& p, std::int64_t f) noexcept {
  const std::int64_t c = p.chunk;
  return {p.head_dim(), p.value_dim(), f, c, linear_state_floats(f, p.value_dim())};
}

// Per-thread scratch floats: K, V (converted), phi(K), phi(K)^T, phi(Q), A, O, the value prefix
// (MALA) and small row vectors.
HEED_FORCE_INLINE std::size_t linear_thread_floats(const linear_dims& m) noexcept {
  const std::int64_t pad = 16;
  return static_cast<std::size_t>(m.c * (m.d + pad) + m.c * (m.dv + pad) + 3 * m.c * (m.f + pad) +
                                  m.c * (m.c + pad) + 2 * m.c * (m.dv + pad) + 8 * m.c + 4 * pad);
}

// Distance between two threads' scratch, in floats (a multiple of 16: 64-byte aligned).
HEED_FORCE_INLINE std::size_t linear_thread_stride(const linear_dims& m) noexcept {
  return (linear_thread_floats(m) + 15) / 16 * 16;
}

HEED_FORCE_INLINE std::size_t linear_workspace_bytes(const linear_params& p, std::int64_t f,
                                                     int threads) noexcept {
  const linear_dims m = linear_dims_of(p, f);
  std::size_t floats = linear_thread_stride(m) * std::size_t(threads);
  if (p.state == nullptr) floats += static_cast<std::size_t>(m.state * p.kv_heads());
  return floats * 4 + workspace_alignment;
}

template <class A, class KV, class Map>
struct linear_kernel {
  const linear_params& p;
  const Map& map;
  linear_dims m;
  float* thread_base;
  std::size_t per_thread;
  float* state_base;
  std::int64_t group;

  struct scratch {
    float *kc, *vc, *phik, *phikt, *phiq, *a, *oc, *vs, *den, *dint, *ns, *gp;
  };

  scratch carve(int thread) const noexcept {
    float* b = thread_base + per_thread * std::size_t(thread);
    scratch s;
    auto take = [&](std::int64_t n) {
      float* r = b;
      b += (n + 15) / 16 * 16;
      return r;
    };
    s.kc = take(m.c * m.d);
    s.vc = take(m.c * m.dv);
    s.phik = take(m.c * m.f);
    s.phikt = take(m.f * m.c);
    s.phiq = take(m.c * m.f);
    s.a = take(m.c * m.c);
    s.oc = take(m.c * m.dv);
    s.vs = take(m.c * m.dv);
    s.den = take(m.c);
    s.dint = take(m.c);
    s.ns = take(m.c);
    s.gp = take(m.c + 1);
    return s;
  }

  // Rows [r0, r0 + n) of K or V (KV head kvh) as f32 rows with stride `ld` in dst.
  void load_rows(const tensor_view& t, int kvh, std::int64_t r0, std::int64_t n, std::int64_t dim,
                 float* dst) const noexcept {
    const KV* base = static_cast<const KV*>(t.data);
    for (std::int64_t j = 0; j < n; ++j) {
      if constexpr (std::is_same<KV, float>::value) {
        std::memcpy(dst + j * dim, base + t.offset(r0 + j, kvh), std::size_t(dim) * 4);
      } else {
        simd::convert_row<A>(base + t.offset(r0 + j, kvh), dst + j * dim, dim);
      }
    }
  }

  void run(int kvh, int thread) const noexcept {
    scratch s = carve(thread);
    float* st = state_base + m.state * kvh;
    float* S = st;
    float* z = S + m.f * m.dv;
    float* vsum = z + m.f;
    float* cnt = vsum + m.dv;
    if (!p.state_in) std::fill(st, st + m.state, 0.f);
    const float g = p.gates ? p.gates[kvh] : 1.f;
    const std::int64_t L = p.len();
    if (p.causal) {
      for (std::int64_t c0 = 0; c0 < L; c0 += m.c) {
        const std::int64_t n = std::min(m.c, L - c0);
        prepare_keys(s, kvh, c0, n, g, vsum, cnt);
        for (std::int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
          causal_queries(s, static_cast<int>(h), c0, n, g, S, z);
        advance_state(s, n, g, S, z, vsum, cnt);
      }
    } else {
      for (std::int64_t c0 = 0; c0 < L; c0 += m.c) {
        const std::int64_t n = std::min(m.c, L - c0);
        prepare_keys(s, kvh, c0, n, 1.f, vsum, cnt);
        advance_state(s, n, 1.f, S, z, vsum, cnt);
      }
      for (std::int64_t c0 = 0; c0 < L; c0 += m.c) {
        const std::int64_t n = std::min(m.c, L - c0);
        for (std::int64_t r = 0; r < n; ++r) {
          std::copy(vsum, vsum + m.dv, s.vs + r * m.dv);
          s.ns[r] = *cnt;
        }
        for (std::int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
          global_queries(s, static_cast<int>(h), c0, n, S, z);
      }
    }
  }

  // K, V of the chunk, phi(K) and its transpose, g powers, and (causal) the decayed value
  // prefix vs[a] = g vs[a-1] + v_a from the state's value sum, with the count ns.
  void prepare_keys(const scratch& s, int kvh, std::int64_t c0, std::int64_t n, float g,
                    const float* vsum, const float* cnt) const noexcept {
    load_rows(p.k, kvh, c0, n, m.d, s.kc);
    load_rows(p.v, kvh, c0, n, m.dv, s.vc);
    map.template map_rows<A>(feature_role::key, kvh, s.kc, m.d, n, m.d, s.phik, m.f);
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t f = 0; f < m.f; ++f) s.phikt[f * m.c + b] = s.phik[b * m.f + f];
    s.gp[0] = 1.f;
    for (std::int64_t t = 1; t <= n; ++t) s.gp[t] = s.gp[t - 1] * g;
    if (p.causal) {
      const float* prev = vsum;
      float prev_n = *cnt;
      for (std::int64_t a = 0; a < n; ++a) {
        float* row = s.vs + a * m.dv;
        const float* v = s.vc + a * m.dv;
        for (std::int64_t c = 0; c < m.dv; ++c) row[c] = g * prev[c] + v[c];
        prev = row;
        prev_n = g * prev_n + 1.f;
        s.ns[a] = prev_n;
      }
    }
  }

  void causal_queries(const scratch& s, int h, std::int64_t c0, std::int64_t n, float g,
                      const float* S, const float* z) const noexcept {
    const float* q = static_cast<const float*>(p.q.data) + p.q.offset(c0, h);
    map.template map_rows<A>(feature_role::query, h, q, p.q.seq_stride, n, m.d, s.phiq, m.f);
    // A = phi(Q) phi(K)^T, causal and decayed; its row sums are the intra-chunk denominators.
    small_gemm<A>(n, n, m.f, s.phiq, m.f, s.phikt, m.c, s.a, m.c, false);
    for (std::int64_t a = 0; a < n; ++a) {
      float* row = s.a + a * m.c;
      float sum = 0.f;
      for (std::int64_t b = 0; b <= a; ++b) {
        row[b] *= s.gp[a - b];
        sum += row[b];
      }
      for (std::int64_t b = a + 1; b < n; ++b) row[b] = 0.f;
      s.dint[a] = sum;
    }
    if (g != 1.f)
      for (std::int64_t a = 0; a < n; ++a) {
        float* row = s.phiq + a * m.f;
        for (std::int64_t f = 0; f < m.f; ++f) row[f] *= s.gp[a + 1];
      }
    small_gemm<A>(n, m.dv, m.f, s.phiq, m.f, S, m.dv, s.oc, m.dv, false);
    small_gemm<A>(n, m.dv, n, s.a, m.c, s.vc, m.dv, s.oc, m.dv, true);
    for (std::int64_t a = 0; a < n; ++a) {
      const float* row = s.phiq + a * m.f;
      float dz = 0.f;
      for (std::int64_t f = 0; f < m.f; ++f) dz += row[f] * z[f];
      s.den[a] = dz + s.dint[a];
    }
    write_rows(s, h, c0, n);
  }

  void global_queries(const scratch& s, int h, std::int64_t c0, std::int64_t n, const float* S,
                      const float* z) const noexcept {
    const float* q = static_cast<const float*>(p.q.data) + p.q.offset(c0, h);
    map.template map_rows<A>(feature_role::query, h, q, p.q.seq_stride, n, m.d, s.phiq, m.f);
    small_gemm<A>(n, m.dv, m.f, s.phiq, m.f, S, m.dv, s.oc, m.dv, false);
    for (std::int64_t a = 0; a < n; ++a) {
      const float* row = s.phiq + a * m.f;
      float dz = 0.f;
      for (std::int64_t f = 0; f < m.f; ++f) dz += row[f] * z[f];
      s.den[a] = dz;
    }
    write_rows(s, h, c0, n);
  }

  // Normalizes the chunk's rows and writes them to O.
  void write_rows(const scratch& s, int h, std::int64_t c0, std::int64_t n) const noexcept {
    float* obase = static_cast<float*>(p.o.data);
    for (std::int64_t a = 0; a < n; ++a) {
      float* orow = obase + p.o.offset(c0 + a, h);
      const float* acc = s.oc + a * m.dv;
      const float den = s.den[a] + p.eps;
      if (p.norm == linear_norm::none) {
        std::copy(acc, acc + m.dv, orow);
      } else if (p.norm == linear_norm::sum) {
        const float inv = den != 0.f ? 1.f / den : 0.f;
        for (std::int64_t c = 0; c < m.dv; ++c) orow[c] = acc[c] * inv;
      } else {
        const float beta = 1.f + (den != 0.f ? 1.f / den : 0.f);
        const float gamma = s.ns[a] > 0.f ? s.den[a] / s.ns[a] : 0.f;
        const float* vs = s.vs + a * m.dv;
        for (std::int64_t c = 0; c < m.dv; ++c) orow[c] = beta * acc[c] - gamma * vs[c];
      }
    }
  }

  // S = g^n S + (g^(n-1-b) phi(k_b))^T V, z likewise; value sum and count from the prefix.
  void advance_state(const scratch& s, std::int64_t n, float g, float* S, float* z, float* vsum,
                     float* cnt) const noexcept {
    if (g != 1.f) {
      const float gn = s.gp[n];
      for (std::int64_t i = 0; i < m.f * m.dv; ++i) S[i] *= gn;
      for (std::int64_t f = 0; f < m.f; ++f) z[f] *= gn;
      for (std::int64_t f = 0; f < m.f; ++f)
        for (std::int64_t b = 0; b < n; ++b) s.phikt[f * m.c + b] *= s.gp[n - 1 - b];
    }
    small_gemm<A>(m.f, m.dv, n, s.phikt, m.c, s.vc, m.dv, S, m.dv, true);
    for (std::int64_t f = 0; f < m.f; ++f) {
      float sum = 0.f;
      for (std::int64_t b = 0; b < n; ++b) sum += s.phikt[f * m.c + b];
      z[f] += sum;
    }
    if (p.causal) {
      std::copy(s.vs + (n - 1) * m.dv, s.vs + n * m.dv, vsum);
      *cnt = s.ns[n - 1];
    } else {
      for (std::int64_t b = 0; b < n; ++b)
        for (std::int64_t c = 0; c < m.dv; ++c) vsum[c] += s.vc[b * m.dv + c];
      *cnt += float(n);
    }
  }
};

}  // namespace detail
HEED_ISA_END
}  // namespace heed
