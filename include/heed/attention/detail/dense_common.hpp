// Shared pieces of the dense kernels: head-dim dispatch, lane positions, typed row access.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <xsimd/xsimd.hpp>

#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/quant/format.hpp"
#include "heed/scoring/observer.hpp"
#include "heed/simd/math.hpp"
#include "heed/simd/reduce.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// The head dims the kernels specialize (every other size takes the generic path, D = 0). The
// compiled library builds one kernel translation unit per entry: src/CMakeLists.txt reads these
// two lines, so they are the only place the list is written. HEED_FEW_HEAD_DIMS (CMake option)
// keeps only the second list, for faster (sanitizer) builds.
#define HEED_SPECIALIZED_HEAD_DIMS 64, 80, 96, 128, 256
#define HEED_SPECIALIZED_HEAD_DIMS_FEW 128

#if defined(HEED_FEW_HEAD_DIMS)
using specialized_head_dims = std::integer_sequence<int, HEED_SPECIALIZED_HEAD_DIMS_FEW>;
#else
using specialized_head_dims = std::integer_sequence<int, HEED_SPECIALIZED_HEAD_DIMS>;
#endif

template <class F, int... Ds>
HEED_FORCE_INLINE auto with_head_dim_in(std::int64_t d, F&& f, std::integer_sequence<int, Ds...>) {
  using R = decltype(f(std::integral_constant<int, 0>{}));
  if constexpr (std::is_void_v<R>) {
    const bool hit = ((d == Ds ? (f(std::integral_constant<int, Ds>{}), true) : false) || ...);
    if (!hit) f(std::integral_constant<int, 0>{});
  } else {
    R r{};
    const bool hit = ((d == Ds ? (r = f(std::integral_constant<int, Ds>{}), true) : false) || ...);
    return hit ? r : f(std::integral_constant<int, 0>{});
  }
}

// Calls f(std::integral_constant<int, D>) with D the specialized head dim, or D = 0 (generic).
template <class F>
HEED_FORCE_INLINE auto with_head_dim(std::int64_t d, F&& f) {
  return with_head_dim_in(d, std::forward<F>(f), specialized_head_dims{});
}

// Whether kernels of head dim D (0: generic) are instantiated for quantized K/V: quantized rows
// hold a whole number of kernel groups, so specialized head dims that are not (80) never see them.
template <int D>
constexpr bool reads_quantized = D == 0 || D % quant::kernel_group == 0;

// The head dim that picks the kernel: quantized K/V of a group other than quant::kernel_group
// run the generic path (0), whatever their head dim.
HEED_FORCE_INLINE std::int64_t kernel_head_dim(const dense_params& p) noexcept {
  return is_quantized(p.k.type) && p.k.quant_group() != quant::kernel_group ? 0 : p.head_dim();
}

// Calls f(T{}) with T the K/V storage type: float, f16, bf16.
template <class F>
HEED_FORCE_INLINE auto with_kv_type(dtype t, F&& f) {
  switch (t) {
    case dtype::f16:
      return f(f16{});
    case dtype::bf16:
      return f(bf16{});
    default:
      return f(float{});
  }
}

// Calls f(T{}) with T the K/V storage type of view k as the kernels of head dim D read it: float,
// f16, bf16, and (where reads_quantized<D>) the rows of q8 / q4 (quant::row_byte): of group
// kernel_group for a specialized D, of the view's group (run time, G = 0) for the generic path.
// The caller validated the view (validate_dense) and chose D by kernel_head_dim.
template <int D, class F>
HEED_FORCE_INLINE void with_kernel_kv_type(const tensor_view& k, F&& f) {
  if constexpr (reads_quantized<D>) {
    constexpr int G = D == 0 ? 0 : quant::kernel_group;
    if (k.type == dtype::q8) return f(quant::row_byte<dtype::q8, G>{});
    if (k.type == dtype::q4) return f(quant::row_byte<dtype::q4, G>{});
  }
  with_kv_type(k.type, std::forward<F>(f));
}

// Debug builds (HEED_DASSERT; nothing otherwise): what every kernel entry (run_prefill,
// run_decode, run_block_sparse, run_vertical_slash) takes from its caller, which validated p
// (validate_dense / validate, dense.hpp and sparse.hpp) and chose D by kernel_head_dim. The
// workspace size is asserted by each entry, against its own size function.
template <int D>
HEED_FORCE_INLINE void dassert_kernel_entry(const dense_params& p, const void* ws) noexcept {
  HEED_DASSERT(p.head_dim() >= 1);
  HEED_DASSERT(D == 0 || p.head_dim() == D);  // a specialization runs its own head dim only
  HEED_DASSERT(D == 0 || !is_quantized(p.k.type) || p.k.quant_group() == quant::kernel_group);
  HEED_DASSERT(p.k.dim == p.head_dim() && p.v.dim == p.head_dim() && p.o.dim == p.head_dim());
  HEED_DASSERT(p.q.data != nullptr && p.k.data != nullptr && p.v.data != nullptr &&
               p.o.data != nullptr);
  HEED_DASSERT(p.q_len() >= 1 && p.kv_len() >= 1);
  HEED_DASSERT(p.kv_heads() >= 1 && p.q_heads() % p.kv_heads() == 0);
  HEED_DASSERT(ws != nullptr);
  (void)p, (void)ws;
}

// 0, 1, 2, ... in the lanes.
template <class A>
HEED_FORCE_INLINE xsimd::batch<std::int32_t, A> lane_iota() noexcept {
  using I = xsimd::batch<std::int32_t, A>;
  alignas(64) std::int32_t v[I::size];
  for (std::size_t i = 0; i < I::size; ++i) v[i] = static_cast<std::int32_t>(i);
  return I::load_aligned(v);
}

// The variant's factor on the logits of the row at q_pos (1 without a query-scale hook).
template <class Variant>
HEED_FORCE_INLINE float row_query_scale(const Variant& var, const dense_params& p, int q_head,
                                        std::int64_t q_pos) noexcept {
  if constexpr (Variant::has_query_scale) {
    const std::int64_t n = p.causal ? std::min(q_pos + 1, p.kv_len()) : p.kv_len();
    return var.query_scale(q_head, q_pos, n);
  } else {
    (void)var, (void)p, (void)q_head, (void)q_pos;
    return 1.f;
  }
}

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// Final (natural-log) row statistics from the kernel's base-2 running state, after the
// variant's row finalize. Returns the factor that converts the accumulated output to the final
// output (0 for an empty row).
template <class Variant>
HEED_FORCE_INLINE float finish_row(const Variant& var, int q_head, std::int64_t q_pos, float m2,
                                   float d, float t2, float& lse, float& entropy) noexcept {
  row_state r{m2 * simd::ln2, d, t2 * simd::ln2};
  const float m_before = r.m;
  if constexpr (Variant::has_row_finalize) var.finalize_row(q_head, q_pos, r);
  if (!(r.d > 0.f)) {
    lse = neg_inf;
    entropy = 0.f;
    return 0.f;
  }
  lse = r.m + std::log(r.d);
  entropy = std::max(0.f, lse - r.t / r.d);
  const float rescale = (m_before == r.m || d == 0.f) ? 1.f : std::exp(m_before - r.m);
  return rescale / r.d;
}

// Prefetches the K and V rows of key j of KV head kvh (`bytes` each) with the given locality
// (3: into L1, 2: into L2). Addresses are formed as integers: rows past the end of a tensor are
// harmless (a prefetch does not fault).
template <int Locality = 3>
HEED_FORCE_INLINE void prefetch_kv_row(const dense_params& p, std::int64_t j, int kvh,
                                       std::int64_t elem_size, std::int64_t bytes) noexcept {
  const std::uintptr_t kf =
      reinterpret_cast<std::uintptr_t>(p.k.data) + std::uintptr_t(p.k.offset(j, kvh) * elem_size);
  const std::uintptr_t vf =
      reinterpret_cast<std::uintptr_t>(p.v.data) + std::uintptr_t(p.v.offset(j, kvh) * elem_size);
  for (std::int64_t b = 0; b < bytes; b += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(kf + std::uintptr_t(b)), 0, Locality);
    __builtin_prefetch(reinterpret_cast<const void*>(vf + std::uintptr_t(b)), 0, Locality);
  }
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
