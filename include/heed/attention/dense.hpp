// Dense attention, header-only: flash-style prefill and split-KV decode, templated on the xsimd
// arch, a compile-time variant and an observer.
//
//   heed::dense_params p = ...;
//   std::vector<char> ws(heed::dense_workspace_size_t(p, ex.concurrency()));
//   heed::status s = heed::dense_attention_t(p, heed::no_variant{}, obs, {ws.data(), ws.size()},
//   ex);
//
// The compiled library (heed/attention/dense_dispatch.hpp) wraps the same kernels with run-time
// ISA dispatch and the built-in variants.
#pragma once

#include <cstddef>
#include <xsimd/xsimd.hpp>

#include "heed/attention/detail/dense_decode.hpp"
#include "heed/attention/detail/dense_prefill.hpp"
#include "heed/attention/params.hpp"
#include "heed/attention/variant.hpp"
#include "heed/attention/variant_traits.hpp"
#include "heed/config.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/scoring/observer.hpp"
#include "heed/scoring/observer_traits.hpp"

namespace heed {
HEED_ISA_BEGIN

namespace detail {
// Decode (one query row) takes the split-KV path; everything else the tiled prefill path.
inline bool use_decode_path(const dense_params& p) noexcept { return p.q_len() == 1; }

template <class Obs>
bool keeps_logits(const Obs& obs) noexcept {
  if constexpr (observer_traits<Obs>::probs) {
    return obs.probs_active();
  } else {
    (void)obs;
    return false;
  }
}
}  // namespace detail

// Bytes of workspace for dense_attention_t<Arch> with `threads` threads. `probs` = the observer
// will ask for decode probabilities (they need [Hq, Lk] floats of logits). 0 if p is invalid.
template <class Arch = xsimd::default_arch>
std::size_t dense_workspace_size_t(const dense_params& p, int threads,
                                   bool probs = false) noexcept {
  if (validate_dense(p) != status::ok || threads < 1) return 0;
  if (detail::use_decode_path(p)) return detail::decode_workspace_size(p, threads, probs);
  return detail::prefill_workspace_size<Arch>(p, threads);
}

namespace detail {
// dense_attention_t for head dim D (0: generic): checks the variant and observer contracts at
// compile time (a broken one stops here, before the kernels are instantiated, so its
// static_assert is the only error), then the parameters, the executor and the workspace, then
// runs. The compiled library instantiates it once per (ISA, D), each in its own translation unit.
template <class Arch, int D, class Variant, class Observer>
status dense_attention_head_dim(const dense_params& p, const Variant& var, Observer& obs,
                                workspace ws, executor& ex) noexcept {
  constexpr bool variant_ok = check_variant<Variant, Arch>();
  constexpr bool observer_ok = check_observer<Observer>();
  if constexpr (!variant_ok || !observer_ok) {
    (void)p, (void)var, (void)obs, (void)ws, (void)ex;
    return status::invalid_argument;  // not compiled: a contract static_assert failed
  } else {
    HEED_RETURN_IF_ERROR(validate_dense(p));
    const int threads = ex.concurrency();
    if (threads < 1) return status::invalid_argument;
    const bool probs = keeps_logits(obs);
    if (ws.data == nullptr && ws.size > 0) return status::null_pointer;
    if (ws.size < dense_workspace_size_t<Arch>(p, threads, probs))
      return status::workspace_too_small;
    if (use_decode_path(p)) {
      with_kernel_kv_type<D>(
          p.k, [&](auto kv) { run_decode<Arch, D, decltype(kv)>(p, var, obs, ws, ex, probs); });
    } else {
      run_prefill<Arch, D>(p, var, obs, ws, ex);  // one kernel for every K/V type
    }
    return status::ok;
  }
}
}  // namespace detail

template <class Arch = xsimd::default_arch, class Variant = no_variant,
          class Observer = null_observer>
status dense_attention_t(const dense_params& p, const Variant& var, Observer& obs, workspace ws,
                         executor& ex = default_executor()) noexcept {
  return detail::with_head_dim(detail::kernel_head_dim(p), [&](auto dc) {
    return detail::dense_attention_head_dim<Arch, decltype(dc)::value>(p, var, obs, ws, ex);
  });
}

// Without an observer.
template <class Arch = xsimd::default_arch, class Variant = no_variant>
status dense_attention_t(const dense_params& p, const Variant& var, workspace ws,
                         executor& ex = default_executor()) noexcept {
  null_observer obs;
  return dense_attention_t<Arch>(p, var, obs, ws, ex);
}

HEED_ISA_END
}  // namespace heed
