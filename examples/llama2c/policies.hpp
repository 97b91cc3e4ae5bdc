// heed's built-in policies by name, for the command line.
#pragma once

#include <string>
#include <vector>

#include "heed/policy/any_policy.hpp"
#include "model.hpp"

namespace llama2c {

// "full" (no eviction) and every built-in policy; false for an unknown name. With a model, the
// policies that read the output projection (CriticalKV: critical_*) get the model's wo.
bool make_policy(const std::string& name, heed::any_policy* out, const model* m = nullptr);
// The same, or any other name of heed's policy registry (docs/policies.md, "Policies by name"),
// with `params` ("name=value,name=value", may be empty) setting or overriding the policy's
// parameters. False, with the reason in *err, for an unknown name or a bad parameter.
bool make_policy(const std::string& name, const std::string& params, heed::any_policy* out,
                 std::string* err, const model* m = nullptr);
const std::vector<std::string>& policy_names();

// The Q-Filters this engine's "q_filters" uses ([layers][kv_heads][head_dim], from
// calibrate_q_filters): set once before building it. Without them "q_filters" is the registry's
// self-calibrating one (as "q_filters_online" always is).
void set_q_filters(std::vector<float> filters);
// Whether building `name` uses the calibrated filters (the caller calibrates first).
bool uses_q_filters(const std::string& name);

}  // namespace llama2c
