// LagKV: an attention-free score from how each token's K and V compare with the tokens that
// follow it ("lag" partitions).
//
// Per KV head: the first n_sink keys are sinks. The keys after them are split into partitions of
// `lag` tokens: partition p covers [n_sink + p * lag, n_sink + (p + 1) * lag) clipped to Lk.
// For a partition p followed by a partition p + 1 (full or partial), each channel c of K is
// normalized with the min / max of that channel over partition p + 1:
//   x'_jc = (x_jc - min_c) / (max_c - min_c + eps)          eps = lagkv_options::eps (1e-6)
// and token j's K score is the population standard deviation over the channels of x'_j, then a
// softmax over the tokens of partition p. V gets the same treatment; the score is
// (score_K + score_V) / 2, in (0, 1]. The sinks and the last partition (the one without a
// follower) score +inf: always kept.
//
// eps keeps a constant channel of the follower (max = min, e.g. a follower of one token) finite;
// such a channel then dominates the std (|x - min| / eps), as in the original formula.
//
// O(Lk * d) per KV head, vectorized over d. Scratch: lagkv_workspace_size().
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"

namespace heed {

struct lagkv_options {
  std::int64_t n_sink = 4;  // leading keys always kept (+inf)
  std::int64_t lag = 128;   // partition size
  float eps = 1e-6f;        // added to max - min of each channel
};

namespace detail {
struct lagkv_scratch {
  float* lo;   // [d] per-channel min of the follower
  float* inv;  // [d] 1 / (max - min + eps)
  float* x;    // [d] one token in f32
  float* row;  // [lag] V scores of one partition
};
inline lagkv_scratch carve_lagkv(void* base, std::int64_t d, std::int64_t lag,
                                 std::size_t* bytes) noexcept {
  workspace_carver c(base ? workspace_carver::align_base(base) : nullptr);
  lagkv_scratch s;
  s.lo = c.take<float>(std::size_t(d));
  s.inv = c.take<float>(std::size_t(d));
  s.x = c.take<float>(std::size_t(d));
  s.row = c.take<float>(std::size_t(lag));
  if (bytes) *bytes = c.bytes_needed();
  return s;
}

// Softmax over the partition [b, e) of the per-token std of the min-max normalized rows; the
// follower is [e, f). Writes out[0, e - b).
template <class A, class P>
void lagkv_partition(const tensor_view& x, P base, std::int64_t h, std::int64_t b, std::int64_t e,
                     std::int64_t f, float eps, const lagkv_scratch& s, float* out) noexcept {
  using Bt = xsimd::batch<float, A>;
  constexpr std::int64_t L = Bt::size;
  const std::int64_t d = x.dim;
  // Per-channel min / max over the follower.
  simd::row_to_float<A>(base + x.offset(e, h), s.lo, d);
  simd::row_to_float<A>(base + x.offset(e, h), s.inv, d);  // holds max until inverted
  for (std::int64_t j = e + 1; j < f; ++j) {
    const P r = base + x.offset(j, h);
    std::int64_t c = 0;
    for (; c + L <= d; c += L) {
      const Bt v = simd::load_cols<A>(r, c, d);
      xsimd::min(Bt::load_unaligned(s.lo + c), v).store_unaligned(s.lo + c);
      xsimd::max(Bt::load_unaligned(s.inv + c), v).store_unaligned(s.inv + c);
    }
    for (; c < d; ++c) {
      const float v = simd::load_col(r, c, d);
      s.lo[c] = v < s.lo[c] ? v : s.lo[c];
      s.inv[c] = v > s.inv[c] ? v : s.inv[c];
    }
  }
  for (std::int64_t c = 0; c < d; ++c) s.inv[c] = 1.f / (s.inv[c] - s.lo[c] + eps);
  // Population std over the channels of each normalized token (two passes: mean, then spread).
  const float inv_d = 1.f / float(d);
  for (std::int64_t j = b; j < e; ++j) {
    const P r = base + x.offset(j, h);
    Bt acc(0.f);
    std::int64_t c = 0;
    for (; c + L <= d; c += L) {
      const Bt v = (simd::load_cols<A>(r, c, d) - Bt::load_unaligned(s.lo + c)) *
                   Bt::load_unaligned(s.inv + c);
      v.store_unaligned(s.x + c);
      acc += v;
    }
    float sum = simd::hsum<A>(acc);
    for (; c < d; ++c) {
      s.x[c] = (simd::load_col(r, c, d) - s.lo[c]) * s.inv[c];
      sum += s.x[c];
    }
    const float mean = sum * inv_d;
    Bt acc2(0.f);
    for (c = 0; c + L <= d; c += L) {
      const Bt t = Bt::load_unaligned(s.x + c) - Bt(mean);
      acc2 = xsimd::fma(t, t, acc2);
    }
    float ss = simd::hsum<A>(acc2);
    for (; c < d; ++c) ss += (s.x[c] - mean) * (s.x[c] - mean);
    out[j - b] = std::sqrt(ss * inv_d);
  }
  softmax_inplace<A>(out, e - b);
}
}  // namespace detail

// Bytes of scratch lagkv_scores() needs.
inline std::size_t lagkv_workspace_size(std::int64_t head_dim,
                                        const lagkv_options& opt = {}) noexcept {
  if (head_dim < 0 || opt.lag < 1) return 0;
  std::size_t bytes = 0;
  detail::carve_lagkv(nullptr, head_dim, opt.lag, &bytes);
  return bytes;
}

// k, v: [Lk, Hkv, d] (same positions and heads; their dims and dtypes may differ).
// out[h * out_head_stride + j] for KV head h, key j < Lk.
template <class Arch = xsimd::default_arch>
status lagkv_scores(const tensor_view& k, const tensor_view& v, const lagkv_options& opt,
                    float* out, std::int64_t out_head_stride, workspace ws) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  HEED_RETURN_IF_ERROR(validate_view(v, /*quantized_ok=*/true));
  HEED_RETURN_IF_ERROR(detail::same_rows(k, v));
  if (out == nullptr) return status::null_pointer;
  if (k.seq > detail::max_score_len) return status::invalid_argument;
  if (opt.n_sink < 0 || opt.lag < 1 || opt.lag > detail::max_score_len)
    return status::invalid_argument;
  if (!(opt.eps > 0.f) || !std::isfinite(opt.eps)) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(detail::resolve_stride(out_head_stride, k.seq));
  const std::int64_t dmax = k.dim > v.dim ? k.dim : v.dim;
  if (ws.size < lagkv_workspace_size(dmax, opt)) return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  const auto s = detail::carve_lagkv(ws.data, dmax, opt.lag, nullptr);
  const std::int64_t lk = k.seq, lag = opt.lag;
  const float inf = std::numeric_limits<float>::infinity();
  const std::int64_t sinks = opt.n_sink < lk ? opt.n_sink : lk;

  for (std::int64_t h = 0; h < k.heads; ++h) {
    float* o = out + h * out_head_stride;
    for (std::int64_t j = 0; j < sinks; ++j) o[j] = inf;
    std::int64_t b = sinks;
    for (; b + lag < lk; b += lag) {  // partitions with a follower
      const std::int64_t e = b + lag, f = e + lag < lk ? e + lag : lk;
      detail::with_typed(
          k, [&](auto kb) { detail::lagkv_partition<Arch>(k, kb, h, b, e, f, opt.eps, s, o + b); });
      detail::with_typed(
          v, [&](auto vb) { detail::lagkv_partition<Arch>(v, vb, h, b, e, f, opt.eps, s, s.row); });
      for (std::int64_t j = b; j < e; ++j) o[j] = 0.5f * (o[j] + s.row[j - b]);
    }
    for (std::int64_t j = b; j < lk; ++j) o[j] = inf;  // the last partition
  }
  return status::ok;
}

}  // namespace heed
