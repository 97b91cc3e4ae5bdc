// Attention redistribution (ACT, VAR) applied exactly to the output of the dense kernel.
//
// Per enabled query head, on every row, with p the row's attention probabilities:
//
//   p'_j = beta p_j                          j in S (e.g. detected sink tokens)
//   p'_j = p_j (1 + (1 - beta) P_S / P_T)    j in T \ S
//   p'_j = p_j                               otherwise (and the kernel's learned sink, if any)
//
// with P_X the mass of the keys of X the row can see. The mass S gives up goes to T in proportion
// to p, so the row still sums to 1. Targets:
//   complement: T = every other key the row sees (ACT: sinks scaled by beta = 0.4, the rest
//               rescaled);
//   key_range:  T = keys [t_lo, t_hi) (VAR: the image tokens, beta = 1 - p with p = 0.6).
// A key of S inside the range stays in S (it never receives mass). Keys a row cannot see (the
// causal limit, the window) are in neither set. A row whose T has no visible key or zero mass,
// a row without visible S keys and an empty row (LSE -inf) are left unchanged.
//
// Computation, from the kernel's output o and row LSE (so no second softmax pass):
//   o_S = sum_{j in S} exp(s_j - lse) v_j,  P_S likewise   (|S| logits recomputed from q, k)
//   complement: P_T = 1 - P_S - P_sink, o_T = o - o_S       (P_sink: the learned sink's mass)
//   key_range:  o_T, P_T by one pass over the visible keys of T \ S
//   o' = o + (beta - 1) o_S + ((1 - beta) P_S / P_T) o_T
// The complement shortcut loses accuracy as P_T shrinks (the error of the fp32 LSE is amplified
// by P_S / P_T), so rows with P_T < direct_below recompute o_T and P_T by one pass over the
// row's visible keys instead (default 0.05: the shortcut error stays below ~20x the LSE error).
//
// Logits are recomputed as the kernel makes them: scale * q.k, ALiBi, soft-capping, the causal
// limit and the window. Parameters with other logit variants (SSMax, length scaling, key bias,
// sigmoid attention) are rejected. p.lse and p.entropy are left as they were (they describe the
// unmodified row). Run it before merge_sink_slot (sink_slot.hpp) when combining the two: the slot
// is then, like the kernel's learned sinks, in neither S nor T.
//
// Cost per (row, enabled head): (1 + ceil(d / 256)) |S| + ceil(d / 256) |T| dot products of
// length d and as many axpys (key_range, or complement rows below direct_below with T = all
// visible keys); complement rows above it need only the |S| terms. Plain loops (four keys at a
// time), so a pass over T runs a few times slower per key than the dense kernel (measurements in
// docs/modifiers.md). Rows run in parallel on the executor; results do not depend on the number
// of threads. No allocation (two 256-float stack buffers per row), noexcept.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "heed/attention/modifiers/detail/modifier_common.hpp"
#include "heed/attention/params.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"

namespace heed {

enum class redistribution_target : int {
  complement = 0,  // every visible key not in S (ACT)
  key_range = 1,   // visible keys in [t_lo, t_hi), not in S (VAR)
};

struct redistribution {
  float beta = 0.4f;  // in [0, 1]: the fraction of its mass S keeps
  // S: key positions, strictly ascending, in [0, Lk). Either one list for every head
  // (s_head_counts null): s_keys[0 .. s_count); or one list per group of heads, laid out as
  // detect_sinks_per_head (heed/sinks/sink_detection.hpp) writes them: query head h uses list
  // g = h / (Hq / s_heads), s_keys[g * s_head_stride .. + s_head_counts[g]], with s_heads a
  // divisor of Hq (Hkv for sinks detected per KV head, Hq per query head) and every count
  // <= s_head_stride.
  const std::int64_t* s_keys = nullptr;
  std::int64_t s_count = 0;
  const std::int64_t* s_head_counts = nullptr;  // [s_heads]
  std::int64_t s_heads = 0;
  std::int64_t s_head_stride = 0;
  redistribution_target target = redistribution_target::complement;
  std::int64_t t_lo = 0, t_hi = 0;             // key_range: 0 <= t_lo <= t_hi <= Lk
  const std::uint8_t* head_enabled = nullptr;  // [Hq], nonzero = modify; null = every head
  const float* head_beta = nullptr;            // [Hq] optional, replaces beta per head
  float direct_below = 0.05f;  // complement: P_T below this -> direct pass (0 never, 1 always)
};

// ACT: scale the sinks' probabilities by beta, the rest of the row takes the removed mass.
inline redistribution act_redistribution(const std::int64_t* sinks, std::int64_t n,
                                         float beta = 0.4f) noexcept {
  redistribution r;
  r.beta = beta;
  r.s_keys = sinks;
  r.s_count = n;
  r.target = redistribution_target::complement;
  return r;
}

// VAR: move a fraction (1 - beta) of the sinks' mass to the image tokens [image_lo, image_hi).
inline redistribution var_redistribution(const std::int64_t* sinks, std::int64_t n,
                                         std::int64_t image_lo, std::int64_t image_hi,
                                         float beta = 0.4f) noexcept {
  redistribution r = act_redistribution(sinks, n, beta);
  r.target = redistribution_target::key_range;
  r.t_lo = image_lo;
  r.t_hi = image_hi;
  return r;
}

namespace detail {
namespace mod {

inline bool valid_fraction(float x) noexcept { return x >= 0.f && x <= 1.f; }  // false for NaN

// Strictly ascending, in [0, lk).
inline bool valid_key_list(const std::int64_t* k, std::int64_t n, std::int64_t lk) noexcept {
  for (std::int64_t e = 0; e < n; ++e) {
    if (k[e] < 0 || k[e] >= lk) return false;
    if (e > 0 && k[e] <= k[e - 1]) return false;
  }
  return true;
}

constexpr std::int64_t kRedistChunk = 256;  // columns of o per pass (stack buffers)
constexpr std::int64_t kRedistRows = 16;    // rows per executor task

template <class T>
void redistribute_row(const dense_params& p, const redistribution& r, std::int64_t h,
                      std::int64_t i) noexcept {
  const float lse = p.lse[h * p.row_stride() + i];
  if (!(lse > neg_inf())) return;  // empty row
  const float beta = r.head_beta != nullptr ? r.head_beta[h] : r.beta;
  if (beta == 1.f) return;
  std::int64_t g = 0, ns = r.s_count;
  if (r.s_head_counts != nullptr) {
    g = h / (p.q_heads() / r.s_heads);
    ns = r.s_head_counts[g];
  }
  if (ns == 0) return;
  const std::int64_t* s_all = r.s_keys + g * r.s_head_stride;
  const std::int64_t q_pos = p.offset() + i;
  const key_span vis = visible_keys(p, q_pos);
  const std::int64_t* sb = std::lower_bound(s_all, s_all + ns, vis.lo);
  const std::int64_t* se = std::lower_bound(sb, s_all + ns, vis.hi);
  if (sb == se) return;  // no visible key of S

  const std::int64_t d = p.head_dim(), kvh = h / (p.q_heads() / p.kv_heads());
  const float scale = p.logit_scale();
  const float* q = static_cast<const float*>(p.q.data) + p.q.offset(i, h);
  auto prob = [&](std::int64_t j) {
    return std::exp(key_logit(p, scale, h, q_pos, j, q, row_ptr<T>(p.k, j, kvh)) - lse);
  };

  double ps = 0.0;
  for (const std::int64_t* it = sb; it != se; ++it) ps += prob(*it);
  if (ps == 0.0) return;

  // T as a key span; the keys of S inside it are skipped.
  key_span t = vis;
  bool shortcut = false;
  double pt = 0.0;
  if (r.target == redistribution_target::complement) {
    if (vis.hi - vis.lo == se - sb) return;  // the row sees only S
    const double sink = p.sink_logits != nullptr
                            ? std::exp(static_cast<double>(p.sink_logits[h]) - double(lse))
                            : 0.0;
    pt = 1.0 - ps - sink;
    shortcut = pt > 0.0 && pt >= static_cast<double>(r.direct_below);
  } else {
    t.lo = std::max(vis.lo, r.t_lo);
    t.hi = std::min(vis.hi, r.t_hi);
    if (t.hi <= t.lo) return;
  }
  const std::int64_t* tb = std::lower_bound(sb, se, t.lo);
  const std::int64_t* te = std::lower_bound(tb, se, t.hi);

  float* o = static_cast<float*>(p.o.data) + p.o.offset(i, h);
  for (std::int64_t c0 = 0; c0 < d; c0 += kRedistChunk) {
    const std::int64_t n = std::min(kRedistChunk, d - c0);
    float os[kRedistChunk];
    std::fill(os, os + n, 0.f);
    for (const std::int64_t* it = sb; it != se; ++it)
      axpy(prob(*it), row_ptr<T>(p.v, *it, kvh) + c0, os, n);
    if (shortcut) {
      // o' = o + (beta - 1) o_S + f (o - o_S)
      const double f = (1.0 - double(beta)) * ps / pt;
      const float a = static_cast<float>(1.0 + f), b = static_cast<float>(double(beta) - 1.0 - f);
      for (std::int64_t c = 0; c < n; ++c) o[c0 + c] = a * o[c0 + c] + b * os[c];
      continue;
    }
    float ot[kRedistChunk];
    std::fill(ot, ot + n, 0.f);
    pt = 0.0;
    std::int64_t j = t.lo;
    for (const std::int64_t* it = tb;; ++it) {
      const std::int64_t stop = it != te ? *it : t.hi;
      for (; j + 4 <= stop; j += 4) {  // four keys at a time: independent dot chains
        float w[4];
        dot4(q, row_ptr<T>(p.k, j, kvh), row_ptr<T>(p.k, j + 1, kvh), row_ptr<T>(p.k, j + 2, kvh),
             row_ptr<T>(p.k, j + 3, kvh), d, w);
        for (int l = 0; l < 4; ++l) {
          w[l] = std::exp(finish_logit(p, scale, h, q_pos, j + l, w[l]) - lse);
          pt += w[l];
        }
        axpy4(w, row_ptr<T>(p.v, j, kvh) + c0, row_ptr<T>(p.v, j + 1, kvh) + c0,
              row_ptr<T>(p.v, j + 2, kvh) + c0, row_ptr<T>(p.v, j + 3, kvh) + c0, ot, n);
      }
      for (; j < stop; ++j) {
        const float pj = prob(j);
        pt += pj;
        axpy(pj, row_ptr<T>(p.v, j, kvh) + c0, ot, n);
      }
      if (it == te) break;
      j = stop + 1;  // skip the key of S
    }
    if (!(pt > 0.0)) return;  // T has no mass: unchanged (same for every chunk)
    const double f = (1.0 - double(beta)) * ps / pt;
    const float a = static_cast<float>(double(beta) - 1.0), b = static_cast<float>(f);
    for (std::int64_t c = 0; c < n; ++c) o[c0 + c] += a * os[c] + b * ot[c];
  }
}

}  // namespace mod
}  // namespace detail

// Checks p (as for the kernel: same views, the LSE output set) and r.
inline status redistribution_can_implement(const dense_params& p,
                                           const redistribution& r) noexcept {
  HEED_RETURN_IF_ERROR(validate(p));
  if (p.lse == nullptr) return status::null_pointer;
  if (detail::mod::has_unreproduced_logit_variant(p)) return status::invalid_argument;
  const std::int64_t hq = p.q_heads(), lk = p.kv_len();
  if (!detail::mod::valid_fraction(r.beta) || !detail::mod::valid_fraction(r.direct_below))
    return status::invalid_argument;
  if (r.head_beta != nullptr)
    for (std::int64_t h = 0; h < hq; ++h)
      if (!detail::mod::valid_fraction(r.head_beta[h])) return status::invalid_argument;
  if (r.s_head_counts != nullptr) {
    if (r.s_heads < 1 || hq % r.s_heads != 0) return status::shape_mismatch;
    if (r.s_head_stride < 0) return status::invalid_argument;
    for (std::int64_t g = 0; g < r.s_heads; ++g) {
      const std::int64_t n = r.s_head_counts[g];
      if (n < 0 || n > r.s_head_stride) return status::invalid_argument;
      if (n == 0) continue;
      if (r.s_keys == nullptr) return status::null_pointer;
      if (!detail::mod::valid_key_list(r.s_keys + g * r.s_head_stride, n, lk))
        return status::invalid_argument;
    }
  } else {
    if (r.s_count < 0) return status::invalid_argument;
    if (r.s_count > 0 && r.s_keys == nullptr) return status::null_pointer;
    if (!detail::mod::valid_key_list(r.s_keys, r.s_count, lk)) return status::invalid_argument;
  }
  if (r.target == redistribution_target::key_range) {
    if (r.t_lo < 0 || r.t_lo > r.t_hi || r.t_hi > lk) return status::invalid_argument;
  } else if (r.target != redistribution_target::complement) {
    return status::invalid_argument;
  }
  return status::ok;
}

// Applies r to p.o in place, after the dense kernel ran with p. Rows of enabled heads run as
// tasks on `ex`.
inline status redistribute_attention(const dense_params& p, const redistribution& r,
                                     executor& ex = default_executor()) noexcept {
  HEED_RETURN_IF_ERROR(redistribution_can_implement(p, r));
  const std::int64_t hq = p.q_heads(), lq = p.q_len();
  const std::int64_t blocks = (lq + detail::mod::kRedistRows - 1) / detail::mod::kRedistRows;
  detail::with_kv_type(p.k.type, [&](auto kv) {
    using T = decltype(kv);
    ex.parallel_for(hq * blocks, [&](std::int64_t task, int) {
      const std::int64_t h = task / blocks, b = task % blocks;
      if (r.head_enabled != nullptr && r.head_enabled[h] == 0) return;
      const std::int64_t i_end = std::min(lq, (b + 1) * detail::mod::kRedistRows);
      for (std::int64_t i = b * detail::mod::kRedistRows; i < i_end; ++i)
        detail::mod::redistribute_row<T>(p, r, h, i);
    });
  });
  return status::ok;
}

}  // namespace heed
