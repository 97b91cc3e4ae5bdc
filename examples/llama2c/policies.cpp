#include "policies.hpp"

#include "heed/policy/attention_free.hpp"
#include "heed/policy/caote.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/random.hpp"
#include "heed/policy/snapkv.hpp"
#include "heed/policy/streaming_llm.hpp"
#include "heed/policy/wrappers.hpp"

namespace llama2c {

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = {
      "full",        "streaming_llm", "h2o",   "a2sf",  "tova",
      "column_mean", "snapkv",        "adakv", "knorm", "expected_attention",
      "lagkv",       "caote_h2o",     "random"};
  return names;
}

bool make_policy(const std::string& name, heed::any_policy* out) {
  if (name == "full" || name == "none")
    *out = heed::streaming_llm_policy{};  // never evicts
  else if (name == "streaming_llm")
    *out = heed::streaming_llm_policy{};
  else if (name == "h2o")
    *out = heed::h2o_policy{};
  else if (name == "a2sf")
    *out = heed::a2sf_policy{};
  else if (name == "tova")
    *out = heed::tova_policy{};
  else if (name == "column_mean")
    *out = heed::column_mean_policy{};
  else if (name == "snapkv")
    *out = heed::protect(heed::snapkv_policy{}, 4, 0);
  else if (name == "adakv")
    *out = heed::head_adaptive(heed::protect(heed::snapkv_policy{}, 4, 0));
  else if (name == "knorm")
    *out = heed::protect(heed::knorm_policy{}, 4, 0);
  else if (name == "expected_attention")
    *out = heed::expected_attention_policy{};
  else if (name == "lagkv") {
    heed::lagkv_policy p;
    p.options.lag = 32;  // the paper's 128 is a quarter of this model's 512-token context
    *out = p;
  } else if (name == "caote_h2o")
    *out = heed::caote(heed::h2o_policy{});
  else if (name == "random")
    *out = heed::protect(heed::random_policy{1}, 4, 16);
  else
    return false;
  return true;
}

}  // namespace llama2c
