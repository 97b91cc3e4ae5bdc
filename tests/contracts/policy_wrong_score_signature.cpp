// A policy whose score() takes a double* (and no workspace): refused by evict_layer.
// clang-format off
// expect-error: heed policy: score() has the wrong signature: it must be status score(const policy_input&, int head, float* out, workspace ws) noexcept
// clang-format on
#include "heed/policy/evict.hpp"

struct bad_policy : heed::policy_base<bad_policy> {
  const char* name() const noexcept { return "bad"; }
  heed::status score(const heed::policy_input&, int, double*) noexcept { return heed::status::ok; }
};

heed::status run(heed::kv_cache& cache, const heed::policy_input& in, const std::int64_t* target,
                 heed::eviction_scratch& s) {
  bad_policy p;
  return heed::evict_layer(cache, p, in, target, s);
}
