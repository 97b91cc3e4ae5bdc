// Parameters of the linear-attention kernel and their validation.
//
//   o_i = phi(q_i) S_i / (phi(q_i) . z_i + eps),  S_i = sum_{j <= i} g^(i-j) phi(k_j) v_j^T,
//                                                   z_i = sum_{j <= i} g^(i-j) phi(k_j)
// with g the per-KV-head decay (retention) gate, 1 by default. Non-causal: every query sees every
// key (S and z over the whole sequence, no gate). The queries are the L new tokens and the keys
// are the same L tokens; earlier tokens enter through the running state.
#pragma once

#include <cmath>
#include <cstdint>

#include "heed/config.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {

enum class linear_norm : int {
  none = 0,  // o_i = phi(q_i) S_i (retention style: no denominator)
  sum = 1,   // o_i = phi(q_i) S_i / (phi(q_i) . z_i + eps)
  // MALA (magnitude-aware linear attention): weights beta * a_ij - gamma with
  // a_ij = g^(i-j) phi(q_i).phi(k_j), beta = 1 + 1 / (den_i + eps), gamma = den_i / n_i,
  // den_i = phi(q_i).z_i and n_i = sum_j g^(i-j); the weights sum to 1 but keep the query's
  // magnitude: o_i = beta * phi(q_i) S_i - gamma * sum_j g^(i-j) v_j.
  mala = 2,
};

struct linear_params {
  tensor_view q;          // [L, Hq, d], f32
  tensor_view k;          // [L, Hkv, d], f32 / f16 / bf16
  tensor_view v;          // [L, Hkv, dv], same dtype as k
  mutable_tensor_view o;  // [L, Hq, dv], f32
  bool causal = true;
  linear_norm norm = linear_norm::sum;
  float eps = 1e-6f;
  const float* gates = nullptr;  // [Hkv] decay g in [0, 1] (causal only); null = no decay
  std::int32_t chunk = 64;       // rows per chunk of the causal form, 8 .. 256

  // Optional running state, [Hkv][linear_state_floats(F, dv)] (S [F][dv], z [F], the decayed
  // value sum [dv] and the decayed count n). When state_in, the pass starts from it (continuing
  // a sequence); otherwise from zeros. When non-null it holds the state after the last token.
  float* state = nullptr;
  bool state_in = false;

  HEED_FORCE_INLINE std::int64_t len() const noexcept { return q.seq; }
  HEED_FORCE_INLINE std::int64_t q_heads() const noexcept { return q.heads; }
  HEED_FORCE_INLINE std::int64_t kv_heads() const noexcept { return k.heads; }
  HEED_FORCE_INLINE std::int64_t head_dim() const noexcept { return q.dim; }
  HEED_FORCE_INLINE std::int64_t value_dim() const noexcept { return v.dim; }
};

HEED_ISA_BEGIN
// Floats of state per KV head for feature dim F and value dim dv.
HEED_FORCE_INLINE constexpr std::int64_t linear_state_floats(std::int64_t f,
                                                             std::int64_t dv) noexcept {
  return f * dv + f + dv + 1;
}

HEED_FORCE_INLINE status validate(const linear_params& p) noexcept {
  if (p.q.data == nullptr || p.k.data == nullptr || p.v.data == nullptr || p.o.data == nullptr)
    return status::null_pointer;
  HEED_RETURN_IF_ERROR(validate_view(p.q));
  HEED_RETURN_IF_ERROR(validate_view(p.k));
  HEED_RETURN_IF_ERROR(validate_view(p.v));
  HEED_RETURN_IF_ERROR(validate_view(p.o));
  if (p.q.type != dtype::f32 || p.o.type != dtype::f32) return status::unsupported_dtype;
  if (p.k.type != p.v.type) return status::unsupported_dtype;
  if (p.k.dim != p.q.dim || p.o.dim != p.v.dim) return status::shape_mismatch;
  if (p.k.seq != p.q.seq || p.v.seq != p.q.seq || p.o.seq != p.q.seq) return status::shape_mismatch;
  if (p.o.heads != p.q.heads || p.v.heads != p.k.heads || p.q.heads % p.k.heads != 0)
    return status::shape_mismatch;
  if (p.q.dim > (1 << 12) || p.v.dim > (1 << 12) || p.q.seq > (std::int64_t(1) << 30))
    return status::invalid_argument;
  if (p.norm != linear_norm::none && p.norm != linear_norm::sum && p.norm != linear_norm::mala)
    return status::invalid_argument;
  if (!std::isfinite(p.eps) || p.eps < 0.f) return status::invalid_argument;
  if (p.chunk < 8 || p.chunk > 256) return status::invalid_argument;
  if (p.gates != nullptr) {
    if (!p.causal) return status::invalid_argument;
    for (std::int64_t h = 0; h < p.k.heads; ++h)
      if (!(p.gates[h] >= 0.f && p.gates[h] <= 1.f)) return status::invalid_argument;
  }
  if (p.state_in && p.state == nullptr) return status::null_pointer;
  return status::ok;
}
HEED_ISA_END

}  // namespace heed
