// What the contracts allow compiles: a variant with every hook, an observer with both flags,
// chains and observer pairs of the built-ins, and a user policy through every policy entry point.
// (No expect-error line: this source must compile.)
#include <algorithm>
#include <cstdint>

#include "heed/attention/dense.hpp"
#include "heed/attention/sparse.hpp"
#include "heed/attention/variants/alibi.hpp"
#include "heed/attention/variants/chain.hpp"
#include "heed/attention/variants/learned_sinks.hpp"
#include "heed/attention/variants/sliding_window.hpp"
#include "heed/attention/variants/softcap.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/evict.hpp"
#include "heed/policy/wrappers.hpp"
#include "heed/scoring/materialize.hpp"

struct every_hook : heed::variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_log2_transform = true;
  static constexpr bool has_logits_mask = true;
  static constexpr bool has_row_finalize = true;
  static constexpr bool has_key_range = true;
  static constexpr bool has_query_scale = true;
  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const heed::lane_ctx<A>&) const noexcept {
    return s;
  }
  template <class A>
  xsimd::batch<float, A> transform_logits_log2(xsimd::batch<float, A> u,
                                               const heed::lane_ctx<A>&) const noexcept {
    return u;
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const heed::lane_ctx<A>& c) const noexcept {
    return xsimd::bool_cast(c.q_pos - c.k_pos <= xsimd::batch<std::int32_t, A>(64));
  }
  void finalize_row(int, std::int64_t, heed::row_state& r) const noexcept {
    heed::fold_virtual_logit(r, 0.f);
  }
  void key_range(std::int64_t q_lo, std::int64_t, std::int64_t& k_lo,
                 std::int64_t&) const noexcept {
    k_lo = std::max<std::int64_t>(k_lo, q_lo - 64);
  }
  float query_scale(int, std::int64_t, std::int64_t) const noexcept { return 1.f; }
};

struct both_observer {
  static constexpr bool wants_row_stats = true;
  static constexpr bool wants_probs = true;
  void on_row(int, std::int64_t, float, float) noexcept {}
  bool probs_active() const noexcept { return true; }
  void on_probs(int, std::int64_t, const float*, std::int64_t) noexcept {}
  bool row_stats_active() const noexcept { return true; }
};

struct user_policy : heed::policy_base<user_policy> {
  const char* name() const noexcept { return "user"; }
  heed::status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
    return heed::status::ok;
  }
};

// A write gate (optional member): accepted, and known to gate.
struct gating_policy : heed::policy_base<gating_policy> {
  const char* name() const noexcept { return "gating"; }
  heed::status score(const heed::policy_input& in, int head, float* out, heed::workspace) noexcept {
    for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
    return heed::status::ok;
  }
  heed::status admit(const heed::admission_input& in, int head, bool& admitted) noexcept {
    admitted = in.position(head) % 2 == 0;
    return heed::status::ok;
  }
};
static_assert(heed::detail::may_gate<gating_policy>, "its own admit() gates");
static_assert(!heed::detail::may_gate<user_policy>, "policy_base's admit() does not");

heed::status run_gate(heed::any_policy* out) {
  return heed::any_policy::make(heed::protect(gating_policy{}, 4, 0), out);
}

heed::status run_dense(const heed::dense_params& p, heed::workspace ws) {
  both_observer obs;
  return heed::dense_attention_t(p, every_hook{}, obs, ws);
}

heed::status run_sparse(const heed::dense_params& p, const heed::block_sparse_layout& l,
                        heed::workspace ws) {
  heed::row_stats_observer rows;
  heed::null_observer none;
  heed::observer_pair<heed::null_observer, heed::row_stats_observer> pair{none, rows};
  heed::chain<heed::alibi, heed::softcap, heed::sliding_window, heed::learned_sinks> v{
      heed::alibi(nullptr), heed::softcap(30.f), heed::sliding_window(128),
      heed::learned_sinks(nullptr)};
  return heed::block_sparse_attention_t(p, l, v, pair, ws);
}

heed::status run_materialize(const heed::dense_params& p, float* out) {
  const int head = 0;
  const std::int64_t row = 0;
  return heed::materialize_attention_t(p, every_hook{}, &head, 1, &row, 1,
                                       heed::attention_values::logits, out);
}

heed::status run_policy(heed::kv_cache& cache, const heed::policy_input& in,
                        const std::int64_t* target, heed::eviction_scratch& s) {
  heed::any_policy held;
  HEED_RETURN_IF_ERROR(heed::any_policy::make(heed::protect(user_policy{}, 4, 16), &held));
  heed::any_policy direct = user_policy{};
  (void)direct;
  return heed::evict_layer(cache, held, in, target, s);
}
