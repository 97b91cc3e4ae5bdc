// Observation-window scores after a prefill (DESIGN.md section 4, point 3).
//
// The main pass knows each row's LSE. Recomputing only the last W query rows against all keys
// gives their probabilities p_ij = exp(s_ij - lse_i), s_ij = scale * q_i.k_j (plus the variant's
// transform), for query i at key position q_offset + i (causal: key j is seen when
// j <= q_offset + i, else p = 0). Cost O(W * Lk * d) per query head, vectorized; the W x Lk
// matrix is never stored (a block of 4 logit rows lives in scratch: 4 x 256 keys with the main
// pass LSE, 4 x Lk without it). Scratch from observation_window_workspace_size(Lk) (any W, heads).
// The variant's has_key_range is not used (its mask must agree with it anyway).
//
// lse[h * lse_head_stride + i] (natural log) comes from the main pass; lse == nullptr computes
// each row's LSE over the given keys first (needed when the keys changed since the main pass,
// e.g. after an eviction). A row whose LSE is -inf (no visible key) contributes nothing.
//
// Outputs (each optional; null = skipped), 0 strides meaning Lk:
//   window   [Hkv][Lk]  SnapKV: per query head the mean over the W rows of p_ij, then a 1-D pooling
//                       over j with an odd kernel k and padding k / 2 (as PyTorch max_pool1d /
//                       avg_pool1d, stride 1: max pads with -inf, avg counts the padding as zeros,
//                       i.e. count_include_pad = True, always dividing by k), then the head_reduce
//                       over the group of query heads.
//   vertical [Hq][Lk]   sum over the W rows of p_ij (no reduction).
//   slash    [Hq][Lk]   slash[h][t] = sum of p_ij over the (i, j) with (q_offset + i) - j = t;
//                       offsets outside [0, Lk) are dropped.
//   colmean  [Hkv][Lk]  sum_i p_ij / (number of the W rows that see key j; 0 when none does),
//                       the ZipCache / ACT normalized column mean, then the head_reduce.
// The policy (not this function) protects the window's own keys, as kvpress does with max + 1.
//
// With the default q_offset (-1 = Lk - W), W > Lk is an invalid_argument. The logits are the
// main pass's: the options' logit settings go through with_builtin_variant, the kernels' own
// mapping (softcap, ALiBi, window, sinks, SSMax, per-key bias, sigmoid); or pass a heed variant of
// your own (attention/variant.hpp; the settings beyond the scale must then be unset). With
// lse == nullptr, the variant's finalize_row (learned sinks) joins the normalizer.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "heed/attention/logit_settings.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variant_traits.hpp"
#include "heed/attention/variants/builtin.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/detail/score_kernels.hpp"
#include "heed/scoring/score_common.hpp"

namespace heed {

enum class pool_kind : int {
  none = 0,  // no pooling
  max = 1,   // max_pool1d, padding -inf
  avg = 2,   // avg_pool1d, count_include_pad = True
};

constexpr bool valid_pool_kind(pool_kind p) noexcept {
  return p == pool_kind::none || p == pool_kind::max || p == pool_kind::avg;
}

struct observation_window_options {
  bool causal = true;          // row i sees keys j <= q_offset + i
  std::int64_t q_offset = -1;  // key position of query row 0; -1 means Lk - W
  pool_kind pool = pool_kind::avg;
  int pool_kernel = 7;  // odd, >= 1
  head_reduce reduce = head_reduce::mean;
  // The logit settings (scale and the built-in variants, [Hq] per-head arrays), as the main pass
  // had them (e.g. opt.logits = params.logits()).
  logit_settings logits;
};

struct observation_window_outputs {
  float* window = nullptr;  // [Hkv][Lk]
  std::int64_t window_head_stride = 0;
  float* vertical = nullptr;  // [Hq][Lk]
  std::int64_t vertical_head_stride = 0;
  float* slash = nullptr;  // [Hq][Lk]
  std::int64_t slash_head_stride = 0;
  float* colmean = nullptr;  // [Hkv][Lk]
  std::int64_t colmean_head_stride = 0;
};

// ACT's sink threshold on the normalized column mean.
constexpr float default_sink_threshold = 0.1f;

namespace detail {
constexpr int window_rows = 4;             // logit rows computed per pass over a key tile
constexpr std::int64_t window_tile = 256;  // keys per tile (a multiple of every batch size)

struct window_scratch {
  std::int64_t row_stride;    // Lk rounded up to the batch size
  std::int64_t logit_stride;  // max(row_stride, window_tile)
  float* logits;              // [window_rows][logit_stride]
  float* colsum;              // [row_stride]
  float* count;               // [row_stride]
  float* tmp;                 // [2][row_stride]
  float* pool;                // [row_stride + kernel]
};

template <class A>
inline window_scratch carve_window(void* base, std::int64_t lk, int kernel,
                                   std::size_t* bytes) noexcept {
  constexpr std::int64_t L = xsimd::batch<float, A>::size;
  workspace_carver c(base ? workspace_carver::align_base(base) : nullptr);
  window_scratch s;
  s.row_stride = (lk + L - 1) / L * L;
  s.logit_stride = s.row_stride > window_tile ? s.row_stride : window_tile;
  s.logits = c.take<float>(std::size_t(window_rows * s.logit_stride));
  s.colsum = c.take<float>(std::size_t(s.row_stride));
  s.count = c.take<float>(std::size_t(s.row_stride));
  s.tmp = c.take<float>(std::size_t(2 * s.row_stride));
  s.pool = c.take<float>(std::size_t(s.row_stride + kernel));
  if (bytes) *bytes = c.bytes_needed();
  return s;
}

// s_r[j] = q_r . k_{j0 + j} for the window_rows rows q_r and j < n. L / 4 keys at a time, so the
// L accumulators (key, row) reduce in one transposing haddp instead of L horizontal sums.
template <class A, class P>
HEED_FORCE_INLINE void window_dots(const float* const* q, const tensor_view& k, P kb,
                                   std::int64_t kvh, std::int64_t j0, std::int64_t n, float* logits,
                                   std::int64_t row_stride) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  constexpr int R = window_rows;
  constexpr int KS = static_cast<int>(L) / R;  // keys per step
  static_assert((KS == 1 || KS == 2 || KS == 4) && KS * R == static_cast<int>(L),
                "batches of 4, 8 or 16 floats");
  const std::int64_t d = k.dim, dv = d / L * L;
  std::int64_t j = 0;
  for (; j + KS <= n; j += KS) {
    // Accumulators a<key><row>, named so they stay in registers (an array indexed in a loop
    // spills); keys beyond KS are compiled out.
    P kj[4] = {kb, kb, kb, kb};
    for (int t = 0; t < 4; ++t) kj[t] = kb + k.offset(j0 + j + (t < KS ? t : 0), kvh);
    B a00(0.f), a01(0.f), a02(0.f), a03(0.f), a10(0.f), a11(0.f), a12(0.f), a13(0.f);
    B a20(0.f), a21(0.f), a22(0.f), a23(0.f), a30(0.f), a31(0.f), a32(0.f), a33(0.f);
    for (std::int64_t c = 0; c < dv; c += L) {
      const B q0 = B::load_unaligned(q[0] + c), q1 = B::load_unaligned(q[1] + c),
              q2 = B::load_unaligned(q[2] + c), q3 = B::load_unaligned(q[3] + c);
      const B k0 = simd::load_cols<A>(kj[0], c, d);
      a00 = xsimd::fma(q0, k0, a00);
      a01 = xsimd::fma(q1, k0, a01);
      a02 = xsimd::fma(q2, k0, a02);
      a03 = xsimd::fma(q3, k0, a03);
      if constexpr (KS > 1) {
        const B k1 = simd::load_cols<A>(kj[1], c, d);
        a10 = xsimd::fma(q0, k1, a10);
        a11 = xsimd::fma(q1, k1, a11);
        a12 = xsimd::fma(q2, k1, a12);
        a13 = xsimd::fma(q3, k1, a13);
      }
      if constexpr (KS > 2) {
        const B k2 = simd::load_cols<A>(kj[2], c, d), k3 = simd::load_cols<A>(kj[3], c, d);
        a20 = xsimd::fma(q0, k2, a20);
        a21 = xsimd::fma(q1, k2, a21);
        a22 = xsimd::fma(q2, k2, a22);
        a23 = xsimd::fma(q3, k2, a23);
        a30 = xsimd::fma(q0, k3, a30);
        a31 = xsimd::fma(q1, k3, a31);
        a32 = xsimd::fma(q2, k3, a32);
        a33 = xsimd::fma(q3, k3, a33);
      }
    }
    const B acc[16] = {a00, a01, a02, a03, a10, a11, a12, a13,
                       a20, a21, a22, a23, a30, a31, a32, a33};
    alignas(64) float res[L];
    simd::haddp<A>(acc).store_aligned(res);
    for (int t = 0; t < KS; ++t)
      for (int r = 0; r < R; ++r) {
        float x = res[t * R + r];
        for (std::int64_t c = dv; c < d; ++c) x += q[r][c] * simd::load_col(kj[t], c, d);
        logits[r * row_stride + j + t] = x;
      }
  }
  for (; j < n; ++j) {  // the last keys, one at a time
    const P kt = kb + k.offset(j0 + j, kvh);
    for (int r = 0; r < R; ++r) logits[r * row_stride + j] = dot_row<A>(q[r], kt, d);
  }
}

// 1-D pooling of src[0, n) into dst with an odd kernel, stride 1, padding kernel / 2.
template <class A>
HEED_FORCE_INLINE void pool_row(const float* src, std::int64_t n, pool_kind kind, int kernel,
                                float* buf, float* dst) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr std::int64_t L = B::size;
  if (kind == pool_kind::none || kernel == 1) {
    for (std::int64_t j = 0; j < n; ++j) dst[j] = src[j];
    return;
  }
  const int r = kernel / 2;
  const float pad = kind == pool_kind::max ? -std::numeric_limits<float>::infinity() : 0.f;
  for (int t = 0; t < r; ++t) buf[t] = pad;
  for (std::int64_t j = 0; j < n; ++j) buf[r + j] = src[j];
  for (int t = 0; t < r; ++t) buf[r + n + t] = pad;
  std::int64_t j = 0;
  if (kind == pool_kind::max) {
    for (; j + L <= n; j += L) {
      B m = B::load_unaligned(buf + j);
      for (int t = 1; t < kernel; ++t) m = xsimd::max(m, B::load_unaligned(buf + j + t));
      m.store_unaligned(dst + j);
    }
    for (; j < n; ++j) {
      float m = buf[j];
      for (int t = 1; t < kernel; ++t) m = buf[j + t] > m ? buf[j + t] : m;
      dst[j] = m;
    }
  } else {
    const float inv = 1.f / float(kernel);
    for (; j + L <= n; j += L) {
      B a = B::load_unaligned(buf + j);
      for (int t = 1; t < kernel; ++t) a += B::load_unaligned(buf + j + t);
      (a * B(inv)).store_unaligned(dst + j);
    }
    for (; j < n; ++j) {
      float a = buf[j];
      for (int t = 1; t < kernel; ++t) a += buf[j + t];
      dst[j] = a * inv;
    }
  }
}
}  // namespace detail

// Bytes of scratch observation_window_scores<Arch>() needs for kv_len keys (any W and heads).
template <class Arch = xsimd::default_arch>
std::size_t observation_window_workspace_size(std::int64_t kv_len,
                                              const observation_window_options& opt = {}) noexcept {
  if (kv_len < 0 || opt.pool_kernel < 1 || opt.pool_kernel > (1 << 20)) return 0;
  std::size_t bytes = 0;
  detail::carve_window<Arch>(nullptr, kv_len, opt.pool_kernel, &bytes);
  return bytes;
}

namespace detail {

// Checks observation_window_scores' arguments and resolves the strides (0: the dense default).
inline status check_window_args(const tensor_view& q, const tensor_view& k, const float* lse,
                                std::int64_t& lse_head_stride,
                                const observation_window_options& opt,
                                observation_window_outputs& out) noexcept {
  HEED_RETURN_IF_ERROR(validate_view(q));
  HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
  if (q.type != dtype::f32) return status::unsupported_dtype;
  if (q.dim != k.dim || q.heads % k.heads != 0) return status::shape_mismatch;
  const std::int64_t w = q.seq, lk = k.seq;
  if (lk > detail::max_score_len || w > detail::max_score_len) return status::invalid_argument;
  if (opt.q_offset < -1 || opt.q_offset > detail::max_score_len) return status::invalid_argument;
  if (opt.q_offset == -1 && w > lk) return status::invalid_argument;
  if ((opt.q_offset > 0 ? opt.q_offset : 0) + w > detail::max_score_len)
    return status::invalid_argument;  // key positions travel in int32 lanes
  HEED_RETURN_IF_ERROR(validate_logits(opt.logits));
  if (!valid_pool_kind(opt.pool) || !valid_head_reduce(opt.reduce)) return status::invalid_argument;
  if (opt.pool_kernel < 1 || opt.pool_kernel % 2 == 0 || opt.pool_kernel > (1 << 20))
    return status::invalid_argument;
  if (lse != nullptr) HEED_RETURN_IF_ERROR(detail::resolve_stride(lse_head_stride, w));
  if (out.window) HEED_RETURN_IF_ERROR(detail::resolve_stride(out.window_head_stride, lk));
  if (out.vertical) HEED_RETURN_IF_ERROR(detail::resolve_stride(out.vertical_head_stride, lk));
  if (out.slash) HEED_RETURN_IF_ERROR(detail::resolve_stride(out.slash_head_stride, lk));
  if (out.colmean) HEED_RETURN_IF_ERROR(detail::resolve_stride(out.colmean_head_stride, lk));
  return status::ok;
}

// One observation_window_scores call past its checks: the window's probabilities of one query
// head at a time (run_head), in blocks of R rows, summed into the head's columns (and slash
// diagonals), then the outputs of that head (finish_head).
template <class Arch, class Variant>
struct window_pass {
  using B = xsimd::batch<float, Arch>;
  using I = xsimd::batch<std::int32_t, Arch>;
  static constexpr std::int64_t L = B::size;
  static constexpr int R = detail::window_rows;
  static constexpr std::int64_t T = detail::window_tile;
  static constexpr float ninf = -std::numeric_limits<float>::infinity();

  const tensor_view& q;
  const tensor_view& k;
  const float* lse;
  std::int64_t lse_head_stride;
  const observation_window_options& opt;
  const observation_window_outputs& out;
  const Variant& var;
  window_scratch s;
  std::int64_t w, lk, d, group, q_offset;
  float scale;
  I iota;

  window_pass(const tensor_view& q_, const tensor_view& k_, const float* lse_,
              std::int64_t lse_stride, const observation_window_options& o,
              const observation_window_outputs& outs, const Variant& v, void* ws) noexcept
      : q(q_),
        k(k_),
        lse(lse_),
        lse_head_stride(lse_stride),
        opt(o),
        out(outs),
        var(v),
        s(detail::carve_window<Arch>(ws, k_.seq, o.pool_kernel, nullptr)) {
    w = q.seq;
    lk = k.seq;
    d = k.dim;
    group = q.heads / k.heads;
    q_offset = opt.q_offset >= 0 ? opt.q_offset : lk - w;
    scale = opt.logits.scale != 0.f ? opt.logits.scale : 1.f / std::sqrt(float(d));
    alignas(64) std::int32_t iota_v[L];
    for (std::int64_t n = 0; n < L; ++n) iota_v[n] = static_cast<std::int32_t>(n);
    iota = I::load_aligned(iota_v);
  }

  // Logits of rows [i0, i0 + nr) of head h over keys [j0, j0 + n) into s.logits.
  void logits_of(std::int64_t h, std::int64_t i0, std::int64_t nr, std::int64_t j0,
                 std::int64_t n) const noexcept {
    const float* qb = static_cast<const float*>(q.data);
    const float* qr[R];
    for (int r = 0; r < R; ++r) qr[r] = qb + q.offset(i0 + (r < nr ? r : 0), h);
    detail::with_typed(k, [&](auto kb) {
      detail::window_dots<Arch>(qr, k, kb, h / group, j0, n, s.logits, s.logit_stride);
    });
  }

  // Scales, transforms and masks a row of logits over keys [j0, j0 + n), padded to the batch
  // size with -inf; counts the visible keys (colmean) and returns the max.
  float prepare(std::int64_t h, float* row, std::int64_t qpos, std::int64_t j0,
                std::int64_t n) const noexcept {
    const std::int64_t npad = (n + L - 1) / L * L;
    for (std::int64_t t = n; t < npad; ++t) row[t] = 0.f;
    const I qp(static_cast<std::int32_t>(qpos));
    const I kend(static_cast<std::int32_t>(j0 + n));
    float* cnt = out.colmean ? s.count + j0 : nullptr;
    B mb(ninf);
    float rs = scale;
    if constexpr (Variant::has_query_scale) {
      rs *= var.query_scale(static_cast<int>(h), qpos,
                            opt.causal ? std::min<std::int64_t>(qpos + 1, lk) : lk);
    }
    for (std::int64_t t = 0; t < npad; t += L) {
      const I kpos = iota + I(static_cast<std::int32_t>(j0 + t));
      const lane_ctx<Arch> ctx{static_cast<int>(h), static_cast<int>(h / group), qp, kpos};
      B x = B::load_aligned(row + t) * B(rs);
      if constexpr (Variant::has_logits_transform) x = var.transform_logits(x, ctx);
      auto keep = xsimd::bool_cast(kpos < kend);
      if (opt.causal) keep = keep && xsimd::bool_cast(kpos <= qp);
      if constexpr (Variant::has_logits_mask) keep = keep && var.keep(ctx);
      x = xsimd::select(keep, x, B(ninf));
      x.store_aligned(row + t);
      mb = xsimd::max(mb, x);
      if (cnt)
        (B::load_unaligned(cnt + t) + xsimd::select(keep, B(1.f), B(0.f))).store_unaligned(cnt + t);
    }
    return simd::hmax<Arch>(mb);
  }

  // Adds the probabilities exp(s - l) of a prepared row into the column and slash sums.
  void accumulate(float* slash, float* row, std::int64_t qpos, float l, std::int64_t j0,
                  std::int64_t n) const noexcept {
    if (!(l > ninf) || !std::isfinite(l)) return;  // nothing visible (or a broken LSE)
    float* colsum = s.colsum + j0;
    for (std::int64_t t = 0; t < n; t += L) {
      const B p = simd::fast_exp<Arch>(B::load_aligned(row + t) - B(l));
      p.store_aligned(row + t);
      (B::load_unaligned(colsum + t) + p).store_unaligned(colsum + t);
    }
    if (slash) {  // t = qpos - j; keep 0 <= t < lk
      std::int64_t jlo = qpos - (lk - 1);
      jlo = jlo > j0 ? jlo : j0;
      const std::int64_t jhi = qpos + 1 < j0 + n ? qpos + 1 : j0 + n;
      for (std::int64_t j = jlo; j < jhi; ++j) slash[qpos - j] += row[j - j0];
    }
  }

  // Keys [j0, j0 + tn) clipped to what the last row of block [i0, i0 + nr) can see.
  std::int64_t visible(std::int64_t i0, std::int64_t nr, std::int64_t j0,
                       std::int64_t tn) const noexcept {
    if (!opt.causal) return tn;
    const std::int64_t v = q_offset + i0 + nr - j0;
    return v < tn ? v : tn;
  }

  // The rows' probabilities from the main pass's LSE: per tile of T keys (kept in cache), every
  // window row in blocks of R.
  void rows_with_lse(std::int64_t h, float* slash) const noexcept {
    for (std::int64_t j0 = 0; j0 < lk; j0 += T) {
      const std::int64_t tn = lk - j0 < T ? lk - j0 : T;
      for (std::int64_t i0 = 0; i0 < w; i0 += R) {
        const std::int64_t nr = w - i0 < R ? w - i0 : R;
        const std::int64_t n = visible(i0, nr, j0, tn);
        if (n <= 0) continue;
        logits_of(h, i0, nr, j0, n);
        for (std::int64_t r = 0; r < nr; ++r) {
          float* row = s.logits + r * s.logit_stride;
          const std::int64_t qpos = q_offset + i0 + r;
          prepare(h, row, qpos, j0, n);
          accumulate(slash, row, qpos, lse[h * lse_head_stride + i0 + r], j0, n);
        }
      }
    }
  }

  // Without an LSE: per block of R rows, their whole logit rows, then each row's own LSE (with
  // the variant's row finalize), then the probabilities.
  void rows_own_lse(std::int64_t h, float* slash) const noexcept {
    for (std::int64_t i0 = 0; i0 < w; i0 += R) {
      const std::int64_t nr = w - i0 < R ? w - i0 : R;
      const std::int64_t n = visible(i0, nr, 0, lk);
      if (n <= 0) continue;
      logits_of(h, i0, nr, 0, n);
      for (std::int64_t r = 0; r < nr; ++r) {
        float* row = s.logits + r * s.logit_stride;
        const std::int64_t qpos = q_offset + i0 + r;
        row_state st{prepare(h, row, qpos, 0, n), 0.f, 0.f};
        if (st.m != ninf) {
          B db(0.f);
          for (std::int64_t t = 0; t < n; t += L)
            db += simd::fast_exp<Arch>(B::load_aligned(row + t) - B(st.m));
          st.d = simd::hsum<Arch>(db);
        }
        if constexpr (Variant::has_row_finalize) var.finalize_row(static_cast<int>(h), qpos, st);
        accumulate(slash, row, qpos, st.d > 0.f ? st.m + std::log(st.d) : ninf, 0, n);
      }
    }
  }

  // Query head h's column sums (and its slash output).
  void run_head(std::int64_t h) const noexcept {
    for (std::int64_t j = 0; j < s.row_stride; ++j) s.colsum[j] = s.count[j] = 0.f;
    float* slash = out.slash ? out.slash + h * out.slash_head_stride : nullptr;
    if (slash)
      for (std::int64_t j = 0; j < lk; ++j) slash[j] = 0.f;
    if (lse != nullptr)
      rows_with_lse(h, slash);
    else
      rows_own_lse(h, slash);
  }

  // Query head h's vertical, window and colmean outputs from its column sums (the last two folded
  // into its KV head's rows).
  void finish_head(std::int64_t h) const noexcept {
    const std::int64_t kvh = h / group, rs = s.row_stride;
    if (out.vertical) {
      float* v = out.vertical + h * out.vertical_head_stride;
      for (std::int64_t j = 0; j < lk; ++j) v[j] = s.colsum[j];
    }
    const bool first = h % group == 0;
    const float wr = 1.f / float(group);
    if (out.window) {
      const float inv_w = 1.f / float(w);
      for (std::int64_t j = 0; j < lk; ++j) s.tmp[j] = s.colsum[j] * inv_w;
      detail::pool_row<Arch>(s.tmp, lk, opt.pool, opt.pool_kernel, s.pool, s.tmp + rs);
      detail::fold_head<Arch>(out.window + kvh * out.window_head_stride, s.tmp + rs, lk, opt.reduce,
                              first, wr);
    }
    if (out.colmean) {
      for (std::int64_t j = 0; j < lk; ++j)
        s.tmp[j] = s.count[j] > 0.f ? s.colsum[j] / s.count[j] : 0.f;
      detail::fold_head<Arch>(out.colmean + kvh * out.colmean_head_stride, s.tmp, lk, opt.reduce,
                              first, wr);
    }
  }
};

// observation_window_scores once the variant passed its contract.
template <class Arch, class Variant>
status observation_window_scores_impl(const tensor_view& q, const tensor_view& k, const float* lse,
                                      std::int64_t lse_head_stride,
                                      const observation_window_options& opt,
                                      observation_window_outputs out, workspace ws,
                                      const Variant& var) noexcept {
  HEED_RETURN_IF_ERROR(check_window_args(q, k, lse, lse_head_stride, opt, out));
  if (!out.window && !out.vertical && !out.slash && !out.colmean) return status::ok;
  if (ws.size < observation_window_workspace_size<Arch>(k.seq, opt))
    return status::workspace_too_small;
  if (ws.data == nullptr) return status::null_pointer;
  const window_pass<Arch, Variant> pass(q, k, lse, lse_head_stride, opt, out, var, ws.data);
  for (std::int64_t h = 0; h < q.heads; ++h) {
    pass.run_head(h);
    pass.finish_head(h);
  }
  return status::ok;
}
}  // namespace detail

// q: [W, Hq, d] f32, the last W query rows; k: [Lk, Hkv, d]; lse: see the header comment.
//
// Loop order per query head: with the main pass LSE, per tile of 256 keys (kept in cache), every
// window row in blocks of 4; with lse == nullptr, per block of 4 rows, their whole logit rows
// (4 x Lk floats of scratch), then each row's LSE, then the probabilities.
//
// The logits are opt.logits' (with_builtin_variant), or those of your own variant (then
// opt.logits beyond the scale must be unset); its contract is checked at compile time
// (variant_traits.hpp).
template <class Arch = xsimd::default_arch, class Variant = no_variant>
status observation_window_scores(const tensor_view& q, const tensor_view& k, const float* lse,
                                 std::int64_t lse_head_stride,
                                 const observation_window_options& opt,
                                 observation_window_outputs out, workspace ws,
                                 const Variant& var = Variant{}) noexcept {
  if constexpr (std::is_same_v<Variant, no_variant>) {
    return with_builtin_variant(opt.logits, [&](const auto& v) {
      return detail::observation_window_scores_impl<Arch>(q, k, lse, lse_head_stride, opt, out, ws,
                                                          v);
    });
  } else if constexpr (!detail::check_variant<Variant, Arch>()) {
    return status::invalid_argument;  // not compiled: a contract static_assert failed
  } else {
    if (opt.logits.any_variant()) return status::invalid_argument;  // one source for the logits
    return detail::observation_window_scores_impl<Arch>(q, k, lse, lse_head_stride, opt, out, ws,
                                                        var);
  }
}

// Every key whose normalized column mean colmean[j] exceeds threshold, at any position, in
// ascending order. Writes up to capacity indices and sets *n_found to the number of such keys;
// returns workspace_too_small when they do not all fit (the first capacity are written).
inline status detect_sinks(const float* colmean, std::int64_t lk, float threshold,
                           std::int64_t* indices, std::int64_t capacity,
                           std::int64_t* n_found) noexcept {
  if (colmean == nullptr || n_found == nullptr) return status::null_pointer;
  if (lk < 0 || capacity < 0 || std::isnan(threshold)) return status::invalid_argument;
  if (capacity > 0 && indices == nullptr) return status::null_pointer;
  std::int64_t n = 0;
  for (std::int64_t j = 0; j < lk; ++j) {
    if (colmean[j] > threshold) {
      if (n < capacity) indices[n] = j;
      ++n;
    }
  }
  *n_found = n;
  return n <= capacity ? status::ok : status::workspace_too_small;
}

}  // namespace heed
