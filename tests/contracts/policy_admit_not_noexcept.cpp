// A policy whose write gate admit() is not noexcept: refused by any_policy::make.
// expect-error: heed policy: admit() must be noexcept
#include "heed/policy/any_policy.hpp"

struct bad_policy : heed::policy_base<bad_policy> {
  const char* name() const noexcept { return "bad"; }
  heed::status score(const heed::policy_input&, int, float*, heed::workspace) noexcept {
    return heed::status::ok;
  }
  heed::status admit(const heed::admission_input&, int, bool& admitted) {
    admitted = true;
    return heed::status::ok;
  }
};

heed::status make(heed::any_policy* out) { return heed::any_policy::make(bad_policy{}, out); }
