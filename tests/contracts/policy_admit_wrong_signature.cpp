// A policy whose write gate admit() has another signature (an int flag): refused by
// any_policy::make.
// clang-format off
// expect-error: heed policy: admit() has the wrong signature: it must be status admit(const admission_input&, int head, bool& admitted) noexcept
// clang-format on
#include "heed/policy/any_policy.hpp"

struct bad_policy : heed::policy_base<bad_policy> {
  const char* name() const noexcept { return "bad"; }
  heed::status score(const heed::policy_input&, int, float*, heed::workspace) noexcept {
    return heed::status::ok;
  }
  heed::status admit(const heed::admission_input&, int, int* admitted) noexcept {
    *admitted = 1;
    return heed::status::ok;
  }
};

heed::status make(heed::any_policy* out) { return heed::any_policy::make(bad_policy{}, out); }
