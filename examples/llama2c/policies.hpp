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

}  // namespace llama2c
