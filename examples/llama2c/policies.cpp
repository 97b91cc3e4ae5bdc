#include "policies.hpp"

#include <cstddef>

#include "heed/policy/registry.hpp"

namespace llama2c {

namespace {

// The command line's policies: each a name of heed's policy registry (heed/policy/registry.hpp)
// with this engine's choices where they differ from the registry's defaults.
struct choice {
  const char* name;
  const char* registry_name;
  heed::policy_param params[3];
  std::size_t n_params;
};

const choice choices[] = {
    {"full", "streaming_llm", {}, 0},  // run with budget 0: never evicts
    {"streaming_llm", "streaming_llm", {}, 0},
    {"h2o", "h2o", {}, 0},
    {"a2sf", "a2sf", {}, 0},
    {"tova", "tova", {}, 0},
    {"column_mean", "column_mean", {}, 0},
    {"snapkv", "snapkv", {{"sinks", 4}}, 1},
    {"adakv", "adakv", {{"sinks", 4}}, 1},
    {"knorm", "knorm", {{"sinks", 4}}, 1},
    {"expected_attention", "expected_attention", {}, 0},
    // The paper's lag of 128 is a quarter of this model's 512-token context.
    {"lagkv", "lagkv", {{"lag", 32}}, 1},
    {"caote_h2o", "caote_h2o", {}, 0},
    {"random", "random", {{"seed", 1}, {"sinks", 4}, {"recent", 16}}, 3},
};

}  // namespace

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const choice& c : choices) n.push_back(c.name);
    return n;
  }();
  return names;
}

bool make_policy(const std::string& name, heed::any_policy* out) {
  const char* lookup = name == "none" ? "full" : name.c_str();
  for (const choice& c : choices)
    if (std::string(lookup) == c.name)
      return heed::make_policy(c.registry_name, c.params, c.n_params, out) == heed::status::ok;
  return false;
}

}  // namespace llama2c
