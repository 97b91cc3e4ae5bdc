// heed's built-in policies by name, for the command line.
#pragma once

#include <string>
#include <vector>

#include "heed/policy/any_policy.hpp"

namespace llama2c {

// "full" (no eviction) and every built-in policy; false for an unknown name.
bool make_policy(const std::string& name, heed::any_policy* out);
const std::vector<std::string>& policy_names();

}  // namespace llama2c
