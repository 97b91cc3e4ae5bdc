#include "policies.hpp"

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>

#include "heed/policy/q_filters.hpp"
#include "heed/policy/registry.hpp"
#include "heed/policy/wrappers.hpp"

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
    // Issue 22's wrappers around this engine's SnapKV (4 sinks); CriticalKV reads the model's wo.
    {"chunkkv_snapkv", "chunkkv_snapkv", {{"sinks", 4}}, 1},
    {"critical_snapkv", "critical_snapkv", {{"sinks", 4}}, 1},
    {"critical_adakv", "critical_adakv", {{"sinks", 4}}, 1},
    {"simlayer_snapkv", "simlayer_snapkv", {{"sinks", 4}}, 1},
    // kvpress's SimLayerKV: the layers that are not lazy keep everything (above the budget).
    {"simlayer_kv", "simlayer_kv", {}, 0},
    // Q-Filters with filters calibrated on the calibration text (heed-eval), and self-calibrated
    // from the last 64 queries at each eviction; 4 sinks, as knorm here.
    {"q_filters", "q_filters", {{"sinks", 4}}, 1},
    {"q_filters_online", "q_filters", {{"sinks", 4}}, 1},
    {"leverage", "leverage", {{"sinks", 4}}, 1},
    {"compactor", "compactor", {}, 0},  // its own 8 sinks and 4 recent
    // Admission (write gates) on StreamingLLM: near-duplicate keys kept out, and an append-only
    // cache that refuses every token once a head is full (no eviction pass at all).
    {"admit_dup", "streaming_llm", {{"admit_cosine", 0.999}, {"admit_window", 16}}, 2},
    {"append_only", "streaming_llm", {{"admit_full", 1}}, 1},
};

std::vector<float>& q_filters_store() {
  static std::vector<float> f;
  return f;
}

}  // namespace

void set_q_filters(std::vector<float> filters) { q_filters_store() = std::move(filters); }

bool uses_q_filters(const std::string& name) { return name == "q_filters"; }

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const choice& c : choices) n.push_back(c.name);
    return n;
  }();
  return names;
}

bool make_policy(const std::string& name, heed::any_policy* out, const model* m) {
  std::string err;
  return make_policy(name, "", out, &err, m);
}

bool make_policy(const std::string& name, const std::string& params, heed::any_policy* out,
                 std::string* err, const model* m) {
  // "name=value" items, split at commas; the names are kept in `names` while the call runs.
  std::vector<std::string> names;
  std::vector<double> values;
  for (std::size_t at = 0; at < params.size();) {
    std::size_t end = params.find(',', at);
    if (end == std::string::npos) end = params.size();
    const std::string item = params.substr(at, end - at);
    const std::size_t eq = item.find('=');
    char* stop = nullptr;
    errno = 0;
    const double v = eq == std::string::npos ? 0 : std::strtod(item.c_str() + eq + 1, &stop);
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size() || *stop != '\0' ||
        errno != 0 || !std::isfinite(v)) {
      *err = "bad --policy-params item '" + item + "' (name=value)";
      return false;
    }
    names.push_back(item.substr(0, eq));
    values.push_back(v);
    at = end + 1;
  }
  const char* lookup = name == "none" ? "full" : name.c_str();
  const char* registry_name = lookup;
  std::vector<heed::policy_param> all;
  for (const choice& c : choices) {
    if (std::string(lookup) != c.name) continue;
    registry_name = c.registry_name;
    for (std::size_t i = 0; i < c.n_params; ++i) {  // this engine's choice unless overridden
      bool overridden = false;
      for (const std::string& n : names) overridden = overridden || n == c.params[i].name;
      if (!overridden) all.push_back(c.params[i]);
    }
  }
  for (std::size_t i = 0; i < names.size(); ++i) all.push_back({names[i].c_str(), values[i]});
  if (uses_q_filters(lookup) && !q_filters_store().empty()) {
    // The calibrated filters: the registry cannot carry them, so the policy is built here; it
    // takes "sinks" and "recent" (a protected recent window, as the original Q-Filters cache's
    // window_length) only.
    heed::q_filters_policy p;
    p.filters = q_filters_store();
    long recent = 0;
    for (const auto& prm : all) {
      const std::string n = prm.name;
      if ((n != "sinks" && n != "recent") || !(prm.value >= 0) || prm.value > double(1 << 30) ||
          prm.value != double(long(prm.value))) {
        *err =
            "policy 'q_filters' (calibrated) takes sinks=N and recent=N only; "
            "'q_filters_online' takes the registry's parameters";
        return false;
      }
      (n == "sinks" ? p.n_sink : recent) = long(prm.value);
    }
    const heed::status st = recent > 0 ? heed::any_policy::make(heed::protect(p, 0, recent), out)
                                       : heed::any_policy::make(std::move(p), out);
    if (st != heed::status::ok) {
      *err = heed::status_string(st);
      return false;
    }
    return true;
  }
  heed::policy_context ctx;
  if (m != nullptr && !m->wo_layers.empty()) {
    ctx.wo.weights = m->wo_layers.data();
    ctx.wo.hidden = m->cfg().dim;
    ctx.wo.row_stride = m->cfg().dim;
  }
  const heed::status s = heed::make_policy(registry_name, all.data(), all.size(), ctx, out);
  if (s != heed::status::ok) {
    *err = "policy '" + name + "' with parameters '" + params + "': " + heed::status_string(s) +
           " (names and parameters: docs/policies.md)";
    return false;
  }
  return true;
}

}  // namespace llama2c
