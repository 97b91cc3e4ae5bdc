// Expected Attention (kvpress ExpectedAttentionPress): the attention a future query would pay to
// each key, with future queries modelled as q ~ N(mu, Sigma) estimated from n recent queries.
//
// Per query head h, over the n recent queries q_i (rows of q, f32):
//   mu    = (1/n) sum_i q_i
//   Sigma = (1/n) sum_i (q_i - mu)(q_i - mu)^T            (population covariance)
//   z_j   = scale * mu.k_j + scale^2 / 2 * k_j^T Sigma k_j (E[exp(scale q.k)] of a Gaussian q)
//   a_hj  = softmax_j(z_j)                                 (over the Lk keys of the KV head)
// With use_covariance = false the quadratic term is dropped (mean only). scale 0 means
// 1 / sqrt(d), giving mu.k / sqrt(d) + k^T Sigma k / (2d). Then, per KV head (query head h
// belongs to KV head h / (Hq / Hkv)), the group's rows are reduced (mean or max) and, with
// weight_by_value_norm (default), multiplied by ||v_j||_2.
//
// Not included (the policy's job): protecting the first sinks and the recent window, and the
// RoPE averaging over future positions kvpress applies to mu and Sigma.
//
// Cost per query head: with n >= d, O(n * d^2) for Sigma and O(Lk * d^2) for k^T Sigma k (a
// d x d matrix-vector product per key, vectorized); with n < d, k^T Sigma k is computed as
// (1/n) sum_i ((q_i - mu).k)^2 in O(Lk * n * d) (same value, Sigma never formed). Scratch from the
// caller: expected_attention_workspace_size().
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/scoring/score_common.hpp"

namespace heed {

struct expected_attention_options {
  float scale = 0.f;                       // logit scale; 0 means 1 / sqrt(d)
  bool use_covariance = true;              // false: z_j = scale * mu.k_j only
  bool weight_by_value_norm = true;        // multiply by ||v_j||_2 (v required then)
  head_reduce reduce = head_reduce::mean;  // query heads -> KV heads
};

namespace detail {
// With fewer recent queries than dimensions, k^T Sigma k = (1/n) sum_i ((q_i - mu).k)^2 costs
// n * d per key instead of d^2: the centered queries replace Sigma.
constexpr bool ea_use_centered(std::int64_t n, std::int64_t d) noexcept { return n < d; }

struct expected_attention_scratch {
  float* mu;     // [d]
  float* sigma;  // [d][d] Sigma, or [n][d] centered queries / sqrt(n); only with use_covariance
  float* kf;     // [d] one key (or one centered query) in f32
  float* row;    // [Lk] logits then probabilities of one query head
};
inline expected_attention_scratch carve_expected_attention(void* base, std::int64_t n,
                                                           std::int64_t lk, std::int64_t d,
                                                           bool cov, std::size_t* bytes) noexcept {
  workspace_carver c(base ? workspace_carver::align_base(base) : nullptr);
  expected_attention_scratch s;
  s.mu = c.take<float>(std::size_t(d));
  const std::int64_t rows = ea_use_centered(n, d) ? n : d;
  s.sigma = cov ? c.take<float>(std::size_t(rows * d)) : nullptr;
  s.kf = c.take<float>(std::size_t(d));
  s.row = c.take<float>(std::size_t(lk));
  if (bytes) *bytes = c.bytes_needed();
  return s;
}

// k^T S k for a symmetric d x d S (row-major), vectorized over column blocks of S: the block of
// S k accumulates in registers, then meets the same block of k.
template <class A>
HEED_FORCE_INLINE float quad_form(const float* HEED_RESTRICT sig, const float* HEED_RESTRICT k,
                                  std::int64_t d) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  B tot(0.f);
  std::int64_t c = 0;
  for (; c + 2 * L <= d; c += 2 * L) {
    B y0(0.f), y1(0.f);
    for (std::int64_t r = 0; r < d; ++r) {
      const B kr(k[r]);
      y0 = xsimd::fma(kr, B::load_unaligned(sig + r * d + c), y0);
      y1 = xsimd::fma(kr, B::load_unaligned(sig + r * d + c + L), y1);
    }
    tot = xsimd::fma(y0, B::load_unaligned(k + c), tot);
    tot = xsimd::fma(y1, B::load_unaligned(k + c + L), tot);
  }
  for (; c + L <= d; c += L) {
    B y0(0.f);
    for (std::int64_t r = 0; r < d; ++r)
      y0 = xsimd::fma(B(k[r]), B::load_unaligned(sig + r * d + c), y0);
    tot = xsimd::fma(y0, B::load_unaligned(k + c), tot);
  }
  float q = simd::hsum<A>(tot);
  for (; c < d; ++c) {
    float y = 0.f;
    for (std::int64_t r = 0; r < d; ++r) y += k[r] * sig[r * d + c];
    q += y * k[c];
  }
  return q;
}
}  // namespace detail

// Bytes of scratch expected_attention_scores() needs for kv_len keys of dimension head_dim and any
// number of recent queries (an upper bound of the four-argument form).
inline std::size_t expected_attention_workspace_size(
    std::int64_t kv_len, std::int64_t head_dim,
    const expected_attention_options& opt = {}) noexcept {
  if (kv_len < 0 || head_dim < 0) return 0;
  std::size_t bytes = 0;
  detail::carve_expected_attention(nullptr, head_dim, kv_len, head_dim, opt.use_covariance, &bytes);
  return bytes;
}

// Bytes of scratch expected_attention_scores() needs for n_queries recent queries and kv_len keys
// of dimension head_dim.
inline std::size_t expected_attention_workspace_size(
    std::int64_t n_queries, std::int64_t kv_len, std::int64_t head_dim,
    const expected_attention_options& opt = {}) noexcept {
  if (n_queries < 0 || kv_len < 0 || head_dim < 0) return 0;
  std::size_t bytes = 0;
  detail::carve_expected_attention(nullptr, n_queries, kv_len, head_dim, opt.use_covariance,
                                   &bytes);
  return bytes;
}

// q: [n, Hq, d] f32 (the n recent queries); k: [Lk, Hkv, d]; v: [Lk, Hkv, dv] (only read with
// weight_by_value_norm; may be an empty view otherwise). out[h * out_head_stride + j] for KV head
// h, key j < Lk.
template <class Arch = xsimd::default_arch>
status expected_attention_scores(const tensor_view& q, const tensor_view& k, const tensor_view& v,
                                 const expected_attention_options& opt, float* out,
                                 std::int64_t out_head_stride, workspace ws) noexcept {
  using B = xsimd::batch<float, Arch>;
  constexpr std::int64_t L = B::size;
  HEED_RETURN_IF_ERROR(validate_view(q));
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  if (q.type != dtype::f32) return status::unsupported_dtype;
  if (opt.weight_by_value_norm) {
    HEED_RETURN_IF_ERROR(validate_view(v, /*quantized_ok=*/true));
    HEED_RETURN_IF_ERROR(detail::same_rows(k, v));
  }
  if (out == nullptr) return status::null_pointer;
  if (q.dim != k.dim || q.heads % k.heads != 0) return status::shape_mismatch;
  if (k.seq > detail::max_score_len || q.seq > detail::max_score_len || k.dim > 65536)
    return status::invalid_argument;
  if (!std::isfinite(opt.scale) || opt.scale < 0.f || !valid_head_reduce(opt.reduce))
    return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, k.seq));
  const std::int64_t n = q.seq, lk = k.seq, d = k.dim, group = q.heads / k.heads;
  const bool cov = opt.use_covariance;
  if (ws.size < expected_attention_workspace_size(n, lk, d, opt))
    return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  const auto s = detail::carve_expected_attention(ws.data, n, lk, d, cov, nullptr);
  const bool centered = detail::ea_use_centered(n, d);
  const float scale = opt.scale != 0.f ? opt.scale : 1.f / std::sqrt(float(d));
  const float half_s2 = 0.5f * scale * scale;
  const float inv_n = 1.f / float(n);
  const float w = 1.f / float(group);
  const float* qbase = static_cast<const float*>(q.data);

  for (std::int64_t h = 0; h < q.heads; ++h) {
    const std::int64_t kvh = h / group;
    // Mean and covariance of the recent queries of this head.
    for (std::int64_t c = 0; c < d; ++c) s.mu[c] = 0.f;
    for (std::int64_t i = 0; i < n; ++i) {
      const float* qi = qbase + q.offset(i, h);
      for (std::int64_t c = 0; c < d; ++c) s.mu[c] += qi[c];
    }
    for (std::int64_t c = 0; c < d; ++c) s.mu[c] *= inv_n;
    if (cov && centered) {
      const float rn = 1.f / std::sqrt(float(n));
      for (std::int64_t i = 0; i < n; ++i) {
        const float* qi = qbase + q.offset(i, h);
        for (std::int64_t c = 0; c < d; ++c) s.sigma[i * d + c] = (qi[c] - s.mu[c]) * rn;
      }
    } else if (cov) {
      for (std::int64_t c = 0; c < d * d; ++c) s.sigma[c] = 0.f;
      for (std::int64_t i = 0; i < n; ++i) {
        const float* qi = qbase + q.offset(i, h);
        for (std::int64_t c = 0; c < d; ++c) s.kf[c] = qi[c] - s.mu[c];
        for (std::int64_t r = 0; r < d; ++r) {
          float* sr = s.sigma + r * d;
          const B cr(s.kf[r] * inv_n);
          std::int64_t c = 0;
          for (; c + L <= d; c += L)
            xsimd::fma(cr, B::load_unaligned(s.kf + c), B::load_unaligned(sr + c))
                .store_unaligned(sr + c);
          for (; c < d; ++c) sr[c] += s.kf[r] * inv_n * s.kf[c];
        }
      }
    }
    // Logits of every key, then the softmax over the keys.
    detail::with_typed(k, [&](auto kb) {
      for (std::int64_t j = 0; j < lk; ++j) {
        const auto kj = kb + k.offset(j, kvh);
        float z = scale * detail::dot_row<Arch>(s.mu, kj, d);
        if (cov) {
          simd::row_to_float<Arch>(kj, s.kf, d);
          float quad = 0.f;
          if (centered) {  // (1/n) sum_i (c_i.k)^2 with c_i pre-scaled by 1 / sqrt(n)
            for (std::int64_t i = 0; i < n; ++i) {
              const float t = detail::dot_row<Arch>(s.sigma + i * d, s.kf, d);
              quad += t * t;
            }
          } else {
            quad = detail::quad_form<Arch>(s.sigma, s.kf, d);
          }
          z += half_s2 * quad;
        }
        s.row[j] = z;
      }
    });
    detail::softmax_inplace<Arch>(s.row, lk);
    detail::fold_head<Arch>(out + kvh * out_head_stride, s.row, lk, opt.reduce, h % group == 0, w);
  }
  if (opt.weight_by_value_norm) {
    detail::with_typed(v, [&](auto vb) {
      for (std::int64_t h = 0; h < k.heads; ++h)
        for (std::int64_t j = 0; j < lk; ++j)
          out[h * out_head_stride + j] *=
              std::sqrt(detail::sqnorm_row<Arch>(vb + v.offset(j, h), v.dim));
    });
  }
  return status::ok;
}

}  // namespace heed
