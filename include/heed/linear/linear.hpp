// Linear attention, header-only: the causal chunked form (exact within a chunk, a running state
// across chunks), the non-causal form, and recurrent decode (one token, state in and out),
// templated on the xsimd arch and the feature map.
//
//   heed::linear_params p = ...;                       // q, k, v, o views; gates; norm
//   heed::elu_plus_one phi;
//   std::vector<char> ws(heed::linear_workspace_size_t(p, phi, ex.concurrency()));
//   heed::status s = heed::linear_attention_t(p, phi, {ws.data(), ws.size()}, ex);
//
// Decode is the same call with one token and a state (p.state, p.state_in = true); prefill with
// p.state set leaves the state a decode step continues from. The compiled library
// (heed/linear/linear_dispatch.hpp) wraps the built-in feature maps with run-time ISA dispatch.
// Results do not depend on the number of threads (one task per KV head).
#pragma once

#include <cstddef>
#include <xsimd/xsimd.hpp>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/config.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/linear/detail/linear_chunked.hpp"
#include "heed/linear/feature_maps.hpp"
#include "heed/linear/linear_params.hpp"

namespace heed {
HEED_ISA_BEGIN

// Floats of state per KV head this map needs for p (see linear_params::state).
template <class Map>
HEED_FORCE_INLINE std::int64_t linear_state_size(const linear_params& p, const Map& map) noexcept {
  return linear_state_floats(map.feature_dim(p.head_dim()), p.value_dim());
}

// Bytes of workspace for `threads` threads; 0 if p or the map is invalid.
template <class Arch = xsimd::default_arch, class Map>
std::size_t linear_workspace_size_t(const linear_params& p, const Map& map, int threads) noexcept {
  if (validate(p) != status::ok || threads < 1 || map.check(p.head_dim()) != status::ok) return 0;
  const std::int64_t f = map.feature_dim(p.head_dim());
  if (f < 1 || f > (1 << 16)) return 0;
  return detail::linear_workspace_bytes(p, f, threads);
}

template <class Arch = xsimd::default_arch, class Map>
status linear_attention_t(const linear_params& p, const Map& map, workspace ws,
                          executor& ex = default_executor()) noexcept {
  HEED_RETURN_IF_ERROR(validate(p));
  HEED_RETURN_IF_ERROR(map.check(p.head_dim()));
  const int threads = ex.concurrency();
  if (threads < 1) return status::invalid_argument;
  const std::int64_t f = map.feature_dim(p.head_dim());
  if (f < 1 || f > (1 << 16)) return status::invalid_argument;
  if (ws.data == nullptr && ws.size > 0) return status::null_pointer;
  if (ws.size < detail::linear_workspace_bytes(p, f, threads)) return status::workspace_too_small;

  const detail::linear_dims m = detail::linear_dims_of(p, f);
  const std::size_t per_thread = detail::linear_thread_stride(m);
  float* base = static_cast<float*>(workspace_carver::align_base(ws.data));
  float* state = p.state ? p.state : base + per_thread * std::size_t(threads);
  auto run = [&](auto kv) {
    using KV = decltype(kv);
    const detail::linear_kernel<Arch, KV, Map> k{
        p, map, m, base, per_thread, state, p.q_heads() / p.kv_heads()};
    ex.parallel_for(p.kv_heads(),
                    [&k](std::int64_t task, int thread) { k.run(static_cast<int>(task), thread); });
  };
  detail::with_kv_type(p.k.type, run);
  return status::ok;
}

// One decode step: p holds one token (L = 1) and a state (p.state non-null, p.state_in true).
template <class Arch = xsimd::default_arch, class Map>
status linear_decode_t(const linear_params& p, const Map& map, workspace ws,
                       executor& ex = default_executor()) noexcept {
  if (p.state == nullptr) return status::null_pointer;
  if (!p.state_in || !p.causal) return status::invalid_argument;
  if (p.q.seq != 1) return status::shape_mismatch;
  return linear_attention_t<Arch>(p, map, ws, ex);
}

HEED_ISA_END
}  // namespace heed
