// A complete custom KV-eviction policy: keep the keys that drew the most attention recently
// (attention decayed by 7/8 per step, so roughly the last 8 steps, averaged over the steps each
// key has been seen so newcomers compete fairly), plus 4 sinks.
// The user code is the policy struct below; main() runs it in an eviction loop on random data
// and compares the output with full-cache attention.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/policy/eviction_loop.hpp"

// ---- the policy (user code) ----------------------------------------------------------------
struct recent_mass_policy : heed::policy_base<recent_mass_policy> {
  const char* name() const noexcept { return "recent_mass"; }
  heed::score_needs needs() const noexcept {
    heed::score_needs n;
    n.channels = 1;
    n.column_mass = true;  // the decode kernel folds each step's attention into channel 0 ...
    n.accumulate.mode = heed::accumulate_mode::decay;
    n.accumulate.lambda = 7.f / 8.f;  // ... as a mass that forgets over about 8 steps
    return n;
  }
  heed::selection_spec selection(std::int64_t) const noexcept {
    heed::selection_spec s;
    s.protect.n_sink = 4;  // the first 4 tokens always stay
    return s;
  }
  heed::status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    const float* mass = in.channel(head, 0);
    const std::int64_t* pos = in.positions(head);
    for (std::int64_t j = 0; j < in.length(head); ++j)  // mass / sum of the decay weights
      out[j] = mass[j] / (1.f - std::pow(7.f / 8.f, float(in.step - pos[j])));
    return heed::status::ok;
  }
};
// ----------------------------------------------------------------------------------------------

int main() {
  const int layers = 2, hq = 8, hkv = 2, d = 64, steps = 300, budget = 64;
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.f, 1.f);
  heed::kv_cache small, full;
  heed::eviction_loop evicting, keep_all;
  heed::status s = small.init({layers, hkv, d, heed::dtype::f16, budget, 1});
  if (s == heed::status::ok) s = full.init({layers, hkv, d, heed::dtype::f16, steps, 1});
  if (s == heed::status::ok) s = evicting.init(&small, recent_mass_policy{}, {budget}, hq);
  if (s == heed::status::ok) s = keep_all.init(&full, recent_mass_policy{}, {0}, hq);
  std::vector<float> q(hq * d), k(hkv * d), v(hkv * d), o1(hq * d), o2(hq * d);
  double err = 0, norm = 0;
  for (int t = 0; t < steps && s == heed::status::ok; ++t) {
    for (int l = 0; l < layers && s == heed::status::ok; ++l) {
      for (auto* x : {&q, &k, &v})
        for (auto& e : *x) e = g(rng);
      for (auto& e : q) e *= 3.f;  // peaked attention, as in real models
      const auto qv = heed::make_view(q.data(), 1, hq, d),
                 kv = heed::make_view(k.data(), 1, hkv, d),
                 vv = heed::make_view(v.data(), 1, hkv, d);
      s = evicting.step(l, qv, kv, vv, heed::make_mutable_view(o1.data(), 1, hq, d));
      if (s == heed::status::ok)
        s = keep_all.step(l, qv, kv, vv, heed::make_mutable_view(o2.data(), 1, hq, d));
      for (int i = 0; i < hq * d && t == steps - 1; ++i) {
        err += (o1[i] - o2[i]) * (o1[i] - o2[i]);
        norm += o2[i] * o2[i];
      }
    }
  }
  if (s != heed::status::ok) {
    std::fprintf(stderr, "custom_policy: %s\n", heed::status_string(s));
    return 1;
  }
  std::printf("policy %s, budget %d of %d tokens: cache %zu bytes (full: %zu)\n",
              evicting.policy().name(), budget, steps, small.bytes_used(), full.bytes_used());
  std::printf("layer 0 head 0 keeps positions:");
  for (std::int64_t i = 0; i < small.length(0, 0); ++i)
    std::printf(" %lld", (long long)small.positions(0, 0)[i]);
  // Random queries do not depend on the past, so no policy can foresee what they need: this
  // number shows the mechanics, not quality (real text: docs/policies.md).
  std::printf("\nrelative output difference vs full cache at the last step: %.3f\n",
              std::sqrt(err / norm));
  const bool ok = small.length(0, 0) == budget && small.positions(0, 0)[3] == 3;
  std::printf("%s\n", ok ? "custom_policy: ok" : "custom_policy: FAILED");
  return ok ? 0 : 1;
}
