// Random eviction, seeded: the baseline every policy must beat. The score of an entry is a hash
// of (seed, layer, head, original position), so the choice is deterministic and does not change
// when other entries are evicted.
#pragma once

#include <cstdint>

#include "heed/policy/policy.hpp"

namespace heed {

struct random_policy : policy_base<random_policy> {
  std::uint64_t seed = 0;

  random_policy() = default;
  explicit random_policy(std::uint64_t s) noexcept : seed(s) {}

  static std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64 finalizer
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  const char* name() const noexcept { return "random"; }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    const std::int64_t n = in.length(head);
    const std::int64_t* pos = in.positions(head);
    const std::uint64_t base =
        mix(seed ^ mix(in.seed) ^ (std::uint64_t(in.layer) << 32) ^ std::uint64_t(head));
    for (std::int64_t j = 0; j < n; ++j)
      out[j] = float(mix(base ^ std::uint64_t(pos[j])) >> 40) * (1.f / 16777216.f);
    return status::ok;
  }
};

}  // namespace heed
