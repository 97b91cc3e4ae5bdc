// The built-in policies by name, with parameters by name: the one factory behind engines that
// pick a policy at run time (the C API's heed_eviction_loop_create, heed-eval's --policy).
//
//   heed::any_policy p;
//   const heed::policy_param params[] = {{"sinks", 4}, {"window", 16}};
//   heed::status s = heed::make_policy("snapkv", params, 2, &p);  // invalid_argument if unknown
//
// Every name, parameter, default and range is listed in docs/policies.md ("Policies by name").
// Parameter values are doubles; integer parameters must hold integers. Each parameter may be given
// once (except duo_attention's "retrieval", one per retrieval head). Generic parameters apply to
// every policy: "sinks" / "recent" (the policy's own sink / recent counts where it has them,
// otherwise the protect() wrapper), and at most one selection wrapper: "adaptive_floor"
// (head_adaptive, AdaKV), "threshold_tau" (with_threshold) or "coverage" (with_coverage), each
// with "min_keep". Name prefixes wrap any policy, each at most once, in any order: "caote_"
// (caote(), "caote_h2o"), "chunkkv_" (chunked(), ChunkKV; "chunk_size"), "critical_" (critical(),
// CriticalKV; "epsilon", "first_stage_ratio"; over a head-adaptive policy such as adakv it is
// critical_adaptive(), CriticalAdaKV: "critical_adakv"), "simlayer_" (simlayer(), SimLayerKV over
// that policy; "lazy_threshold", "n_last", "n_initial", "n_recent"). "simlayer_kv" is SimLayerKV as
// kvpress has it (the layers that are not lazy keep everything).
//
// Compiled into heed::heed (src/policy_registry.cpp). Nothing here throws or aborts: bad input is
// status::invalid_argument, a failed allocation status::out_of_memory; *out changes only on ok.
#pragma once

#include <cstddef>

#include "heed/core/status.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/output_projection.hpp"

namespace heed {

struct policy_param {
  const char* name = nullptr;
  double value = 0.0;
};

// The registered names (without the caote_ variants): count, and the i-th (null out of range).
int policy_count() noexcept;
const char* policy_name(int i) noexcept;

// Builds policy `name` with params[0 .. n_params) into *out. params may be null when n_params is 0.
status make_policy(const char* name, const policy_param* params, std::size_t n_params,
                   any_policy* out) noexcept;

// What an engine may give the policies besides parameters: the output projection (CriticalKV's
// critical_ prefix then weighs values by ||v W_o||_1 instead of ||v||_1). The pointers must
// outlive the policy.
struct policy_context {
  output_projection wo{};
};
status make_policy(const char* name, const policy_param* params, std::size_t n_params,
                   const policy_context& context, any_policy* out) noexcept;

}  // namespace heed
