// Delta correction for sparse prefill (Delta Attention): the sparse output plus, per group of
// `gamma` query rows, the difference between dense and sparse attention at the group's first row.
//
//   O[i] = O_sparse[i] + (O_dense[g gamma] - O_sparse[g gamma]),   g = floor(i / gamma)
//
// so the sampled rows become exact and their neighbours inherit the same shift. The dense rows
// are one dense prefill over the Lq / gamma sampled queries packed together, with a variant that
// puts packed row g at its real position (causal up to q_offset + g gamma): 1 / gamma of the dense
// work. Header-only (templated on the arch like dense_attention_t); plain causal softmax attention
// (no built-in variants). LSE / entropy outputs of the sparse call are left as they were.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "heed/attention/dense.hpp"
#include "heed/attention/params.hpp"
#include "heed/attention/sparse_layout.hpp"
#include "heed/attention/variant.hpp"
#include "heed/core/detail/no_throw.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {

namespace detail {
// Packed query row g (lane position g, q_offset 0) sits at real position off + g * gamma.
struct strided_rows_variant : variant_base {
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_key_range = true;
  std::int32_t off = 0, gamma = 1;
  template <class A>
  xsimd::batch_bool<float, A> keep(const lane_ctx<A>& c) const noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    return xsimd::bool_cast(c.k_pos <= I(off) + c.q_pos * I(gamma));
  }
  void key_range(std::int64_t, std::int64_t q_hi, std::int64_t&,
                 std::int64_t& k_hi) const noexcept {
    k_hi = std::min<std::int64_t>(k_hi, off + q_hi * gamma + 1);
  }
};
}  // namespace detail

// Memory of delta_correct (grows on first use, then reused).
struct delta_scratch {
  std::vector<float> q, o;
  std::vector<char> ws;
};

// p: the parameters the sparse call ran with (causal, f32 O already holding the sparse output);
// gamma >= 1 rows per group. Runs the dense rows on `ex` and corrects p.o in place.
template <class Arch = xsimd::default_arch>
status delta_correct(const dense_params& p, std::int64_t gamma, delta_scratch& sc,
                     executor& ex = default_executor()) noexcept {
  return detail::no_throw([&]() -> status {
    HEED_RETURN_IF_ERROR(validate(p));
    if (gamma < 1 || !p.causal) return status::invalid_argument;
    if (p.window_left >= 0 || p.softcap > 0.f || p.alibi_slopes || p.sink_logits)
      return status::invalid_argument;  // plain attention only
    const std::int64_t lq = p.q_len(), hq = p.q_heads(), d = p.head_dim();
    const std::int64_t ng = ceil_div(lq, gamma), off = p.offset();
    if (off + lq > (std::int64_t(1) << 30)) return status::invalid_argument;
    sc.q.resize(std::size_t(ng * hq * d));
    sc.o.resize(sc.q.size());
    const float* qb = static_cast<const float*>(p.q.data);
    for (std::int64_t g = 0; g < ng; ++g)
      for (std::int64_t h = 0; h < hq; ++h) {
        const float* src = qb + p.q.offset(g * gamma, h);
        std::copy(src, src + d, sc.q.data() + (g * hq + h) * d);
      }
    dense_params dp;
    dp.q = make_view<const void*>(sc.q.data(), dtype::f32, ng, hq, d);
    dp.k = p.k;
    dp.v = p.v;
    dp.o = make_view<void*>(sc.o.data(), dtype::f32, ng, hq, d);
    dp.scale = p.scale;
    dp.causal = false;  // the variant masks by real position
    dp.q_offset = 0;
    detail::strided_rows_variant var;
    var.off = static_cast<std::int32_t>(off);
    var.gamma = static_cast<std::int32_t>(gamma);
    sc.ws.resize(dense_workspace_size_t<Arch>(dp, ex.concurrency()));
    HEED_RETURN_IF_ERROR(dense_attention_t<Arch>(dp, var, {sc.ws.data(), sc.ws.size()}, ex));
    // delta = dense - sparse at the sampled rows (into sc.o), then add it to each group.
    float* ob = static_cast<float*>(p.o.data);
    for (std::int64_t g = 0; g < ng; ++g)
      for (std::int64_t h = 0; h < hq; ++h) {
        const float* sparse_row = ob + p.o.offset(g * gamma, h);
        float* delta = sc.o.data() + (g * hq + h) * d;
        for (std::int64_t c = 0; c < d; ++c) delta[c] -= sparse_row[c];
      }
    for (std::int64_t i = 0; i < lq; ++i)
      for (std::int64_t h = 0; h < hq; ++h) {
        float* row = ob + p.o.offset(i, h);
        const float* delta = sc.o.data() + ((i / gamma) * hq + h) * d;
        for (std::int64_t c = 0; c < d; ++c) row[c] += delta[c];
      }
    return status::ok;
  });
}

}  // namespace heed
