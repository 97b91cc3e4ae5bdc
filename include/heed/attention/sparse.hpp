// Sparse attention, header-only: block-sparse and vertical-slash prefill over index lists
// (sparse_layout.hpp), templated on the xsimd arch, a compile-time variant and a row observer,
// exactly like dense_attention_t. Rows see only the keys their layout keeps (and the causal mask
// and the variant allow); LSE and entropy are those of the sparse row.
//
//   heed::block_sparse_layout l{64, 64, row_ptr, col_idx};
//   std::vector<char> ws(heed::block_sparse_workspace_size_t(p, l, ex.concurrency()));
//   heed::status s = heed::block_sparse_attention_t(p, l, heed::no_variant{}, obs,
//                                                   {ws.data(), ws.size()}, ex);
//
// The compiled library (heed/attention/sparse_dispatch.hpp) wraps the same kernels with run-time
// ISA dispatch and the built-in variants. Decode rows (Lq == 1) take the same tiled path; the
// decode probability tap is not available (prob_tap must be null).
#pragma once

#include <cstddef>
#include <xsimd/xsimd.hpp>

#include "heed/attention/detail/sparse_prefill.hpp"
#include "heed/attention/params.hpp"
#include "heed/attention/sparse_layout.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variant_traits.hpp"
#include "heed/config.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/observer.hpp"
#include "heed/scoring/observer_traits.hpp"

namespace heed {
HEED_ISA_BEGIN

// Bytes of workspace for block_sparse_attention_t<Arch> with `threads` threads; 0 if invalid.
template <class Arch = xsimd::default_arch>
std::size_t block_sparse_workspace_size_t(const dense_params& p, const block_sparse_layout& l,
                                          int threads) noexcept {
  if (validate(p, l) != status::ok || threads < 1) return 0;
  return detail::block_sparse_workspace_size<Arch>(p, threads);
}

// Bytes of workspace for vertical_slash_attention_t<Arch>: the prefill scratch plus two Lk-long
// int32 arrays per thread. 0 if invalid.
template <class Arch = xsimd::default_arch>
std::size_t vertical_slash_workspace_size_t(const dense_params& p, const vertical_slash_layout& l,
                                            int threads) noexcept {
  if (validate(p, l) != status::ok || threads < 1) return 0;
  return detail::vertical_slash_workspace_size<Arch>(p, threads);
}

namespace detail {
template <class Arch, int D, class Variant, class Observer>
void run_sparse_layout(const dense_params& p, const block_sparse_layout& l, const Variant& var,
                       Observer& obs, workspace ws, executor& ex) noexcept {
  run_block_sparse<Arch, D>(p, l, var, obs, ws, ex);
}
template <class Arch, int D, class Variant, class Observer>
void run_sparse_layout(const dense_params& p, const vertical_slash_layout& l, const Variant& var,
                       Observer& obs, workspace ws, executor& ex) noexcept {
  run_vertical_slash<Arch, D>(p, l, var, obs, ws, ex);
}

// The sparse kernel of layout l for head dim D (0: generic): checks the variant and observer
// contracts at compile time (a broken one stops here, before the kernels are instantiated), then
// the parameters, the layout, the executor and the workspace (`size` of them), then runs. The
// compiled library instantiates it once per (ISA, D), each in its own translation unit.
template <class Arch, int D, class Layout, class Variant, class Observer>
status sparse_attention_head_dim(const dense_params& p, const Layout& l, const Variant& var,
                                 Observer& obs, workspace ws, executor& ex,
                                 std::size_t (*size)(const dense_params&, const Layout&,
                                                     int)) noexcept {
  constexpr bool variant_ok = check_variant<Variant, Arch>();
  constexpr bool observer_ok = check_observer<Observer>();
  if constexpr (!variant_ok || !observer_ok) {
    (void)p, (void)l, (void)var, (void)obs, (void)ws, (void)ex, (void)size;
    return status::invalid_argument;  // not compiled: a contract static_assert failed
  } else {
    HEED_RETURN_IF_ERROR(validate(p, l));
    const int threads = ex.concurrency();
    if (threads < 1) return status::invalid_argument;
    if (ws.data == nullptr && ws.size > 0) return status::null_pointer;
    if (ws.size < size(p, l, threads)) return status::workspace_too_small;
    run_sparse_layout<Arch, D>(p, l, var, obs, ws, ex);
    return status::ok;
  }
}

template <class Arch, class Layout, class Variant, class Observer>
status run_sparse(const dense_params& p, const Layout& l, const Variant& var, Observer& obs,
                  workspace ws, executor& ex,
                  std::size_t (*size)(const dense_params&, const Layout&, int)) noexcept {
  return with_head_dim(kernel_head_dim(p), [&](auto dc) {
    return sparse_attention_head_dim<Arch, decltype(dc)::value>(p, l, var, obs, ws, ex, size);
  });
}
}  // namespace detail

template <class Arch = xsimd::default_arch, class Variant = no_variant,
          class Observer = null_observer>
status block_sparse_attention_t(const dense_params& p, const block_sparse_layout& l,
                                const Variant& var, Observer& obs, workspace ws,
                                executor& ex = default_executor()) noexcept {
  return detail::run_sparse<Arch>(p, l, var, obs, ws, ex, &block_sparse_workspace_size_t<Arch>);
}

template <class Arch = xsimd::default_arch, class Variant = no_variant,
          class Observer = null_observer>
status vertical_slash_attention_t(const dense_params& p, const vertical_slash_layout& l,
                                  const Variant& var, Observer& obs, workspace ws,
                                  executor& ex = default_executor()) noexcept {
  return detail::run_sparse<Arch>(p, l, var, obs, ws, ex, &vertical_slash_workspace_size_t<Arch>);
}

HEED_ISA_END
}  // namespace heed
