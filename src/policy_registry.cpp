// The built-in policies by name (include/heed/policy/registry.hpp). The table of parameters is
// mirrored in docs/policies.md ("Policies by name"); keep the two together.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "heed/core/detail/grow_vector.hpp"
#include "heed/policy/admission.hpp"
#include "heed/policy/attention_free.hpp"
#include "heed/policy/caote.hpp"
#include "heed/policy/chunkkv.hpp"
#include "heed/policy/critical_kv.hpp"
#include "heed/policy/duo_attention.hpp"
#include "heed/policy/h2o.hpp"
#include "heed/policy/leverage.hpp"
#include "heed/policy/q_filters.hpp"
#include "heed/policy/random.hpp"
#include "heed/policy/registry.hpp"
#include "heed/policy/simlayer_kv.hpp"
#include "heed/policy/snapkv.hpp"
#include "heed/policy/streaming_llm.hpp"
#include "heed/policy/wrappers.hpp"

namespace heed {
namespace {

enum param_id : int {
  p_sinks,
  p_recent,
  p_recent_fraction,
  p_lambda,
  p_reduce_max,
  p_tau,
  p_min_keep,
  p_window,
  p_pool,
  p_pool_kernel,
  p_scale,
  p_covariance,
  p_value_norm,
  p_lag,
  p_eps,
  p_seed,
  p_retrieval,
  p_adaptive_floor,
  p_threshold_tau,
  p_coverage,
  p_chunk_size,
  p_epsilon,
  p_first_stage_ratio,
  p_lazy_threshold,
  p_n_last,
  p_n_initial,
  p_n_recent,
  p_rank,
  p_ridge,
  p_center,
  p_sketch,
  p_blending,
  p_admit_norm,
  p_admit_cosine,
  p_admit_window,
  p_admit_full,
  p_count
};

struct param_spec {
  const char* name;
  double lo, hi;  // inclusive range
  bool integer;
};

constexpr double max_count = double(1 << 30);
constexpr double max_seed = 9007199254740992.0;  // 2^53: every integer up to it is a double

constexpr param_spec specs[p_count] = {
    {"sinks", 0, max_count, true},
    {"recent", 0, max_count, true},
    {"recent_fraction", 0, 1, false},
    {"lambda", 0, 1, false},
    {"reduce_max", 0, 1, true},
    {"tau", -1e30, 1e30, false},
    {"min_keep", 0, max_count, true},
    {"window", 1, 1 << 16, true},
    {"pool", 0, 2, true},
    {"pool_kernel", 1, 1 << 10, true},
    {"scale", 0, 1e30, false},
    {"covariance", 0, 1, true},
    {"value_norm", 0, 1, true},
    {"lag", 1, 1 << 20, true},
    {"eps", 1e-30, 1, false},
    {"seed", 0, max_seed, true},
    {"retrieval", 0, (1 << 20) - 1, true},
    {"adaptive_floor", 0, 1, false},
    {"threshold_tau", -1e30, 1e30, false},
    {"coverage", 0, 1, false},
    {"chunk_size", 1, max_count, true},
    {"epsilon", 0, 1e30, false},
    {"first_stage_ratio", 0, 1, false},
    {"lazy_threshold", -1e30, 1e30, false},
    {"n_last", 1, 1 << 16, true},
    {"n_initial", 0, max_count, true},
    {"n_recent", 0, max_count, true},
    {"rank", 0, 1 << 16, true},
    {"ridge", 0, 1e30, false},
    {"center", 0, 1, true},
    {"sketch", 0, 1 << 16, true},
    {"blending", -1, 1e6, false},
    {"admit_norm", 0, 1e30, false},
    {"admit_cosine", -1, 1, false},
    {"admit_window", 1, 1 << 16, true},
    {"admit_full", 0, 1, true},
};

constexpr std::uint64_t bit(param_id p) noexcept { return std::uint64_t(1) << p; }
static_assert(p_count <= 64, "parameter masks are 64-bit words");

// Parameters every policy takes (the wrappers); a policy may also take sinks / recent / min_keep
// natively, which its entry then lists.
// The parameters of the wrappers a name prefix adds (chunkkv_, critical_, simlayer_).
constexpr std::uint64_t chunkkv_params = bit(p_chunk_size);
constexpr std::uint64_t critical_params = bit(p_epsilon) | bit(p_first_stage_ratio);
constexpr std::uint64_t simlayer_params =
    bit(p_lazy_threshold) | bit(p_n_last) | bit(p_n_initial) | bit(p_n_recent);

constexpr std::uint64_t generic = bit(p_sinks) | bit(p_recent) | bit(p_adaptive_floor) |
                                  bit(p_threshold_tau) | bit(p_coverage) | bit(p_min_keep) |
                                  bit(p_admit_norm) | bit(p_admit_cosine) | bit(p_admit_window) |
                                  bit(p_admit_full);

struct values {
  bool set[p_count] = {};
  double v[p_count] = {};
  const policy_param* params = nullptr;
  std::size_t n_params = 0;

  bool has(param_id p) const noexcept { return set[p]; }
  double get(param_id p, double def) const noexcept { return set[p] ? v[p] : def; }
  std::int64_t count(param_id p, std::int64_t def) const noexcept {
    return set[p] ? std::int64_t(v[p]) : def;
  }
  head_reduce reduce() const noexcept {
    return count(p_reduce_max, 0) != 0 ? head_reduce::max : head_reduce::mean;
  }
};

using build_fn = status (*)(const values&, any_policy*);

struct entry {
  const char* name;
  std::uint64_t native;  // parameters the policy takes itself
  build_fn build;
  double default_floor;  // adaptive_floor when not given (adakv), < 0: none
  // Scores may be +inf (LagKV's sinks and newest partition), which select_coverage refuses: a
  // coverage wrapper would fail at every eviction, so it is refused here.
  bool infinite_scores = false;
  // Each head has its own fixed budget (DuoAttention: retrieval heads keep everything), which the
  // layer-wide budget of adaptive_floor (AdaKV) would share out between heads: refused.
  bool fixed_head_budgets = false;
};

status build_streaming_llm(const values& a, any_policy* out) noexcept {
  streaming_llm_policy p;
  p.n_sink = a.count(p_sinks, p.n_sink);
  return any_policy::make(p, out);
}

status build_h2o(const values& a, any_policy* out) noexcept {
  h2o_policy p;
  p.recent_fraction = a.get(p_recent_fraction, p.recent_fraction);
  p.reduce = a.reduce();
  return any_policy::make(p, out);
}

status build_a2sf(const values& a, any_policy* out) noexcept {
  a2sf_policy p;
  p.lambda = float(a.get(p_lambda, double(p.lambda)));
  p.n_recent = a.count(p_recent, p.n_recent);
  p.reduce = a.reduce();
  return any_policy::make(p, out);
}

status build_tova(const values& a, any_policy* out) noexcept {
  tova_policy p;
  p.reduce = a.reduce();
  return any_policy::make(p, out);
}

status build_column_mean(const values& a, any_policy* out) noexcept {
  column_mean_policy p;
  p.n_recent = a.count(p_recent, p.n_recent);
  return any_policy::make(p, out);
}

status build_threshold(const values& a, any_policy* out) noexcept {
  threshold_policy p;
  p.tau = float(a.get(p_tau, double(p.tau)));
  p.min_keep = a.count(p_min_keep, p.min_keep);
  p.n_recent = a.count(p_recent, p.n_recent);
  return any_policy::make(p, out);
}

template <class P>
void set_window_options(const values& a, P& p) noexcept {
  p.n_sink = a.count(p_sinks, p.n_sink);
  p.scale = float(a.get(p_scale, double(p.scale)));
  p.reduce = a.reduce();
}

status build_snapkv(const values& a, any_policy* out) noexcept {
  snapkv_policy p;
  set_window_options(a, p);
  p.window = a.count(p_window, p.window);
  p.pool = static_cast<pool_kind>(a.count(p_pool, static_cast<int>(p.pool)));
  p.pool_kernel = int(a.count(p_pool_kernel, p.pool_kernel));
  if (p.pool_kernel % 2 == 0) return status::invalid_argument;
  return any_policy::make(p, out);
}

status build_sage_kv(const values& a, any_policy* out) noexcept {
  sage_kv_policy p;
  set_window_options(a, p);
  return any_policy::make(p, out);
}

status build_knorm(const values& a, any_policy* out) noexcept {
  knorm_policy p;
  p.n_sink = a.count(p_sinks, p.n_sink);
  return any_policy::make(p, out);
}

status build_key_diff(const values& a, any_policy* out) noexcept {
  key_diff_policy p;
  p.n_sink = a.count(p_sinks, p.n_sink);
  return any_policy::make(p, out);
}

status build_q_filters(const values& a, any_policy* out) noexcept {
  q_filters_policy p;
  p.window = a.count(p_window, p.window);
  p.n_sink = a.count(p_sinks, p.n_sink);
  return any_policy::make(std::move(p), out);
}

leverage_options leverage_from(const values& a) noexcept {
  leverage_options o;
  o.rank = a.count(p_rank, o.rank);
  o.ridge = a.get(p_ridge, o.ridge);
  o.center = a.count(p_center, o.center ? 1 : 0) != 0;
  o.sketch = a.count(p_sketch, o.sketch);
  return o;
}

status build_leverage(const values& a, any_policy* out) noexcept {
  leverage_policy p;
  p.options = leverage_from(a);
  p.n_sink = a.count(p_sinks, p.n_sink);
  return any_policy::make(p, out);
}

status build_compactor(const values& a, any_policy* out) noexcept {
  compactor_policy p;
  p.options = leverage_from(a);
  p.blending = a.get(p_blending, p.blending);
  p.n_sink = a.count(p_sinks, p.n_sink);
  p.n_recent = a.count(p_recent, p.n_recent);
  return any_policy::make(p, out);
}

status build_expected_attention(const values& a, any_policy* out) noexcept {
  expected_attention_policy p;
  p.window = a.count(p_window, p.window);
  p.n_sink = a.count(p_sinks, p.n_sink);
  p.options.scale = float(a.get(p_scale, double(p.options.scale)));
  p.options.use_covariance = a.count(p_covariance, p.options.use_covariance ? 1 : 0) != 0;
  p.options.weight_by_value_norm =
      a.count(p_value_norm, p.options.weight_by_value_norm ? 1 : 0) != 0;
  p.options.reduce = a.reduce();
  return any_policy::make(p, out);
}

status build_lagkv(const values& a, any_policy* out) noexcept {
  lagkv_policy p;
  p.options.lag = a.count(p_lag, p.options.lag);
  p.options.n_sink = a.count(p_sinks, p.options.n_sink);
  p.options.eps = float(a.get(p_eps, double(p.options.eps)));
  return any_policy::make(p, out);
}

status build_random(const values& a, any_policy* out) noexcept {
  return any_policy::make(random_policy{std::uint64_t(a.count(p_seed, 0))}, out);
}

status build_duo_attention(const values& a, any_policy* out) noexcept {
  duo_attention_policy p;
  p.n_sink = a.count(p_sinks, p.n_sink);
  p.n_recent = a.count(p_recent, p.n_recent);
  std::size_t slots = 0;  // one past the largest retrieval index
  for (std::size_t i = 0; i < a.n_params; ++i)
    if (std::strcmp(a.params[i].name, specs[p_retrieval].name) == 0)
      slots = std::max(slots, std::size_t(a.params[i].value) + 1);
  if (!detail::grow_vector(p.retrieval, slots)) return status::out_of_memory;
  for (std::size_t i = 0; i < a.n_params; ++i)
    if (std::strcmp(a.params[i].name, specs[p_retrieval].name) == 0)
      p.retrieval[std::size_t(a.params[i].value)] = 1;
  return any_policy::make(std::move(p), out);
}

simlayer_options simlayer_options_of(const values& a) noexcept {
  simlayer_options o;
  o.lazy_threshold = float(a.get(p_lazy_threshold, double(o.lazy_threshold)));
  o.n_last = a.count(p_n_last, o.n_last);
  o.n_initial = a.count(p_n_initial, o.n_initial);
  o.n_recent = a.count(p_n_recent, o.n_recent);
  return o;
}

status build_simlayer_kv(const values& a, any_policy* out) noexcept {
  return any_policy::make(simlayer(full_cache_policy{}, simlayer_options_of(a)), out);
}

constexpr std::uint64_t window_params = bit(p_sinks) | bit(p_scale) | bit(p_reduce_max) |
                                        bit(p_window) | bit(p_pool) | bit(p_pool_kernel);

constexpr entry entries[] = {
    {"streaming_llm", bit(p_sinks), build_streaming_llm, -1},
    {"h2o", bit(p_recent_fraction) | bit(p_reduce_max), build_h2o, -1},
    {"a2sf", bit(p_lambda) | bit(p_recent) | bit(p_reduce_max), build_a2sf, -1},
    {"tova", bit(p_reduce_max), build_tova, -1},
    {"column_mean", bit(p_recent), build_column_mean, -1},
    {"threshold", bit(p_tau) | bit(p_min_keep) | bit(p_recent), build_threshold, -1},
    {"snapkv", window_params, build_snapkv, -1},
    {"pyramidkv", window_params, build_snapkv, -1},
    {"adakv", window_params, build_snapkv, 0.2},
    {"sage_kv", bit(p_sinks) | bit(p_scale) | bit(p_reduce_max), build_sage_kv, -1},
    {"knorm", bit(p_sinks), build_knorm, -1},
    {"key_diff", bit(p_sinks), build_key_diff, -1},
    {"q_filters", bit(p_window) | bit(p_sinks), build_q_filters, -1},
    {"leverage", bit(p_rank) | bit(p_ridge) | bit(p_center) | bit(p_sketch) | bit(p_sinks),
     build_leverage, -1},
    {"compactor",
     bit(p_rank) | bit(p_ridge) | bit(p_center) | bit(p_sketch) | bit(p_blending) | bit(p_sinks) |
         bit(p_recent),
     build_compactor, -1},
    {"expected_attention",
     bit(p_window) | bit(p_sinks) | bit(p_scale) | bit(p_covariance) | bit(p_value_norm) |
         bit(p_reduce_max),
     build_expected_attention, -1},
    {"lagkv", bit(p_lag) | bit(p_sinks) | bit(p_eps), build_lagkv, -1, true},
    {"random", bit(p_seed), build_random, -1},
    {"duo_attention", bit(p_sinks) | bit(p_recent) | bit(p_retrieval), build_duo_attention, -1,
     false, true},
    // kvpress SimLayerKV: lazy layers keep sinks + recent, the others everything.
    {"simlayer_kv", simlayer_params, build_simlayer_kv, -1, false, true},
};
constexpr int n_entries = int(sizeof(entries) / sizeof(entries[0]));

const entry* find_entry(const char* name) noexcept {
  for (const entry& e : entries)
    if (std::strcmp(e.name, name) == 0) return &e;
  return nullptr;
}

int find_param(const char* name) noexcept {
  for (int p = 0; p < p_count; ++p)
    if (std::strcmp(specs[p].name, name) == 0) return p;
  return -1;
}

bool in_range(const param_spec& s, double v) noexcept {
  if (!(v >= s.lo && v <= s.hi)) return false;  // NaN fails too
  return !s.integer || std::floor(v) == v;
}

}  // namespace

int policy_count() noexcept { return n_entries; }

const char* policy_name(int i) noexcept {
  return i >= 0 && i < n_entries ? entries[i].name : nullptr;
}

status make_policy(const char* name, const policy_param* params, std::size_t n_params,
                   any_policy* out) noexcept {
  return make_policy(name, params, n_params, policy_context{}, out);
}

status make_policy(const char* name, const policy_param* params, std::size_t n_params,
                   const policy_context& context, any_policy* out) noexcept {
  if (name == nullptr || out == nullptr) return status::null_pointer;
  if (n_params > 0 && params == nullptr) return status::null_pointer;
  if (n_params > (std::size_t(1) << 20)) return status::invalid_argument;
  if (context.wo.weights != nullptr && (context.wo.hidden <= 0 || context.wo.row_stride < 0))
    return status::invalid_argument;
  // Wrapper prefixes, each at most once, in any order: caote_, chunkkv_, critical_, simlayer_.
  enum { w_caote, w_chunkkv, w_critical, w_simlayer, w_count };
  static const char* const prefixes[w_count] = {"caote_", "chunkkv_", "critical_", "simlayer_"};
  bool wrap[w_count] = {};
  const entry* e = find_entry(name);
  while (e == nullptr) {
    int w = 0;
    for (; w < w_count; ++w)
      if (std::strncmp(name, prefixes[w], std::strlen(prefixes[w])) == 0) break;
    if (w == w_count || wrap[w]) return status::invalid_argument;
    wrap[w] = true;
    name += std::strlen(prefixes[w]);
    e = find_entry(name);
  }
  const std::uint64_t none = 0;
  const std::uint64_t allowed = e->native | generic | (wrap[w_chunkkv] ? chunkkv_params : none) |
                                (wrap[w_critical] ? critical_params : none) |
                                (wrap[w_simlayer] ? simlayer_params : none);

  values a;
  a.params = params;
  a.n_params = n_params;
  for (std::size_t i = 0; i < n_params; ++i) {
    if (params[i].name == nullptr) return status::null_pointer;
    const int p = find_param(params[i].name);
    if (p < 0 || (allowed & bit(param_id(p))) == 0) return status::invalid_argument;
    if (a.set[p] && p != p_retrieval) return status::invalid_argument;  // given twice
    if (!in_range(specs[p], params[i].value)) return status::invalid_argument;
    a.set[p] = true;
    a.v[p] = params[i].value;
  }
  // At most one selection wrapper; min_keep only with one that reads it (or natively).
  const bool floor_given = a.has(p_adaptive_floor) || e->default_floor >= 0;
  const int wrappers = int(floor_given) + int(a.has(p_threshold_tau)) + int(a.has(p_coverage));
  if (wrappers > 1) return status::invalid_argument;
  if (a.has(p_coverage) && e->infinite_scores) return status::invalid_argument;
  if (a.has(p_adaptive_floor) && e->fixed_head_budgets) return status::invalid_argument;
  // SimLayerKV over fixed head budgets (duo_attention, simlayer_kv itself): refused.
  if (wrap[w_simlayer] && e->fixed_head_budgets) return status::invalid_argument;
  const bool native_min_keep = (e->native & bit(p_min_keep)) != 0;
  if (a.has(p_min_keep) && !native_min_keep && !a.has(p_threshold_tau) && !a.has(p_coverage))
    return status::invalid_argument;

  any_policy p;
  HEED_RETURN_IF_ERROR(e->build(a, &p));
  const bool wrap_sinks = a.has(p_sinks) && (e->native & bit(p_sinks)) == 0;
  const bool wrap_recent = a.has(p_recent) && (e->native & bit(p_recent)) == 0;
  if (wrap_sinks || wrap_recent)
    HEED_RETURN_IF_ERROR(any_policy::make(
        protect(p, wrap_sinks ? a.count(p_sinks, 0) : 0, wrap_recent ? a.count(p_recent, 0) : 0),
        &p));
  const std::int64_t min_keep = native_min_keep ? 0 : a.count(p_min_keep, 0);
  if (wrap[w_chunkkv])
    HEED_RETURN_IF_ERROR(
        any_policy::make(chunked(p, a.count(p_chunk_size, chunkkv_default_chunk_size)), &p));
  const float eps = float(a.get(p_epsilon, double(critical_default_epsilon)));
  const double ratio = a.get(p_first_stage_ratio, critical_default_first_stage_ratio);
  if (wrap[w_critical] && floor_given) {
    // CriticalAdaKV: the head budgets from the inner scores, the entries in critical order.
    HEED_RETURN_IF_ERROR(any_policy::make(
        critical_adaptive(p, a.get(p_adaptive_floor, e->default_floor), eps, ratio, context.wo),
        &p));
  } else {
    if (wrap[w_critical])
      HEED_RETURN_IF_ERROR(any_policy::make(critical(p, eps, ratio, context.wo), &p));
    if (floor_given)
      HEED_RETURN_IF_ERROR(
          any_policy::make(head_adaptive(p, a.get(p_adaptive_floor, e->default_floor)), &p));
  }
  if (a.has(p_threshold_tau))
    HEED_RETURN_IF_ERROR(
        any_policy::make(with_threshold(p, float(a.v[p_threshold_tau]), min_keep), &p));
  if (a.has(p_coverage))
    HEED_RETURN_IF_ERROR(any_policy::make(with_coverage(p, a.v[p_coverage], min_keep), &p));
  if (wrap[w_caote]) HEED_RETURN_IF_ERROR(any_policy::make(caote(p), &p));
  if (wrap[w_simlayer])
    HEED_RETURN_IF_ERROR(any_policy::make(simlayer(p, simlayer_options_of(a)), &p));
  // The write gate (admission.hpp): outermost, any policy.
  if (a.has(p_admit_norm) || a.has(p_admit_cosine) || a.has(p_admit_window) ||
      a.has(p_admit_full)) {
    admission_spec g;
    g.max_key_norm = float(a.get(p_admit_norm, double(g.max_key_norm)));
    g.max_cosine = float(a.get(p_admit_cosine, double(g.max_cosine)));
    g.window = a.count(p_admit_window, g.window);
    g.refuse_when_full = a.count(p_admit_full, 0) != 0;
    HEED_RETURN_IF_ERROR(g.validate());
    HEED_RETURN_IF_ERROR(any_policy::make(admitted(p, g), &p));
  }
  *out = std::move(p);
  return status::ok;
}

}  // namespace heed
