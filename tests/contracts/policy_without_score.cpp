// A policy without score(): refused by any_policy.
// clang-format off
// expect-error: heed policy: there is no score() member: status score(const policy_input&, int head, float* out, workspace ws) noexcept is required
// clang-format on
#include "heed/policy/any_policy.hpp"

struct bad_policy : heed::policy_base<bad_policy> {
  const char* name() const noexcept { return "bad"; }
};

heed::any_policy make() { return heed::any_policy(bad_policy{}); }
