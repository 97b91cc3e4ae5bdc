// The slow path for analysis: materialize the logits or probabilities of selected (head, row)
// pairs, with the same variant (transform, mask, sinks) and causal rule as the kernels.
// O(selected rows x Lk x d), scalar dot products; never use it in a serving loop.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variant_traits.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"

namespace heed {

enum class attention_values : int {
  logits = 0,  // q.k * scale after the variant's transform; masked keys are -inf
  probs = 1,   // softmax over the row, sinks included in the normalizer; masked keys are 0
};

// out[(hi * n_rows + ri) * out_stride + j] for head heads[hi], query row rows[ri], key j < Lk.
// out_stride 0 means Lk.
namespace detail {
template <class Arch, class Variant>
status materialize_attention_impl(const dense_params& p, const Variant& var, const int* heads,
                                  int n_heads, const std::int64_t* rows, int n_rows,
                                  attention_values what, float* out,
                                  std::int64_t out_stride) noexcept {
  using B = xsimd::batch<float, Arch>;
  using I = xsimd::batch<std::int32_t, Arch>;
  constexpr int L = static_cast<int>(B::size);
  HEED_RETURN_IF_ERROR(validate(p));
  if (n_heads < 0 || n_rows < 0 || out_stride < 0) return status::invalid_argument;
  if ((n_heads > 0 && heads == nullptr) || (n_rows > 0 && rows == nullptr))
    return status::null_pointer;
  if (n_heads > 0 && n_rows > 0 && out == nullptr) return status::null_pointer;
  const std::int64_t lk = p.kv_len(), d = p.head_dim(), group = p.q_heads() / p.kv_heads();
  if (out_stride == 0) out_stride = lk;
  if (out_stride < lk) return status::invalid_stride;
  for (int i = 0; i < n_heads; ++i)
    if (heads[i] < 0 || heads[i] >= p.q_heads()) return status::invalid_argument;
  for (int i = 0; i < n_rows; ++i)
    if (rows[i] < 0 || rows[i] >= p.q_len()) return status::invalid_argument;
  const float scale = p.logit_scale(), ninf = -std::numeric_limits<float>::infinity();
  alignas(64) std::int32_t iota_v[L];
  for (int n = 0; n < L; ++n) iota_v[n] = n;
  const I iota = I::load_aligned(iota_v);

  auto dot = [&](const float* q, std::int64_t j, int kvh) {
    double a = 0;
    auto acc = [&](auto* k) {
      for (std::int64_t c = 0; c < d; ++c) a += double(q[c]) * double(to_float(k[c]));
    };
    const std::int64_t off = p.k.offset(j, kvh);
    if (p.k.type == dtype::f32) acc(static_cast<const float*>(p.k.data) + off);
    if (p.k.type == dtype::f16) acc(static_cast<const f16*>(p.k.data) + off);
    if (p.k.type == dtype::bf16) acc(static_cast<const bf16*>(p.k.data) + off);
    return float(a) * scale;
  };

  for (int hi = 0; hi < n_heads; ++hi) {
    const int h = heads[hi], kvh = static_cast<int>(h / group);
    for (int ri = 0; ri < n_rows; ++ri) {
      const std::int64_t qpos = p.offset() + rows[ri];
      const float* q = static_cast<const float*>(p.q.data) + p.q.offset(rows[ri], h);
      float* o = out + (std::int64_t(hi) * n_rows + ri) * out_stride;
      const float rs = detail::row_query_scale(var, p, h, qpos);
      alignas(64) float tmp[L];
      for (std::int64_t j0 = 0; j0 < lk; j0 += L) {
        const int n = static_cast<int>(std::min<std::int64_t>(L, lk - j0));
        for (int t = 0; t < L; ++t) tmp[t] = t < n ? dot(q, j0 + t, kvh) * rs : 0.f;
        B s = B::load_aligned(tmp);
        const I kpos = iota + I(static_cast<std::int32_t>(j0));
        const lane_ctx<Arch> ctx{h, kvh, I(static_cast<std::int32_t>(qpos)), kpos};
        if constexpr (Variant::has_logits_transform) s = var.transform_logits(s, ctx);
        auto keep = xsimd::batch_bool<float, Arch>(true);
        if (p.causal) keep = xsimd::bool_cast(kpos <= ctx.q_pos);
        if constexpr (Variant::has_logits_mask) keep = keep && var.keep(ctx);
        xsimd::select(keep, s, B(ninf)).store_aligned(tmp);
        for (int t = 0; t < n; ++t) o[j0 + t] = tmp[t];
      }
      if (what == attention_values::probs) {
        row_state r{ninf, 0.f, 0.f};
        for (std::int64_t j = 0; j < lk; ++j) r.m = std::max(r.m, o[j]);
        if (r.m != ninf)
          for (std::int64_t j = 0; j < lk; ++j) {
            const float e = std::exp(o[j] - r.m);
            r.d += e;
            if (e > 0.f) r.t += e * o[j];
          }
        if constexpr (Variant::has_row_finalize) var.finalize_row(h, qpos, r);
        const float lse = r.d > 0.f ? r.m + std::log(r.d) : ninf;
        for (std::int64_t j = 0; j < lk; ++j) o[j] = lse == ninf ? 0.f : std::exp(o[j] - lse);
      }
    }
  }
  return status::ok;
}
}  // namespace detail

// The variant's contract is checked at compile time (variant_traits.hpp).
template <class Arch = xsimd::default_arch, class Variant = no_variant>
status materialize_attention_t(const dense_params& p, const Variant& var, const int* heads,
                               int n_heads, const std::int64_t* rows, int n_rows,
                               attention_values what, float* out,
                               std::int64_t out_stride = 0) noexcept {
  if constexpr (!detail::check_variant<Variant, Arch>()) {
    return status::invalid_argument;  // not compiled: a contract static_assert failed
  } else {
    return detail::materialize_attention_impl<Arch>(p, var, heads, n_heads, rows, n_rows, what, out,
                                                    out_stride);
  }
}

}  // namespace heed
