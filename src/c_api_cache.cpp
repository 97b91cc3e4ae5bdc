// The C API of the KV cache, the eviction loop and the policy registry
// (include/heed/c/heed_cache.h) over heed::kv_cache, heed::eviction_loop and heed::make_policy.
// Every entry point checks its pointers and ranges before it touches an object; handles are
// allocated with new (std::nothrow), everything else with heed's non-throwing helpers.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "c_api_detail.hpp"
#include "heed/c/heed.h"
#include "heed/c/heed_cache.h"
#include "heed/c/heed_policy.h"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/detail/grow_vector.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/budgets.hpp"
#include "heed/policy/callback_policy.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/registry.hpp"

struct heed_kv_cache {
  heed::kv_cache cache;
};

struct heed_thread_pool {
  explicit heed_thread_pool(int threads) : pool(threads) {}
  heed::thread_pool_executor pool;
};

struct heed_eviction_loop {
  heed::eviction_loop loop;
  heed_kv_cache* cache = nullptr;
};

namespace {

using heed::c_api::convert_view;
using heed::c_api::enum_value;
using heed::c_api::to_c;

static_assert(static_cast<int>(HEED_DTYPE_Q8) == static_cast<int>(heed::dtype::q8), "dtype");
static_assert(static_cast<int>(HEED_DTYPE_Q4) == static_cast<int>(heed::dtype::q4), "dtype");

// A view of k / v for the cache: quantized input rows are taken to be in the cache's group.
heed::tensor_view cache_input(const heed_tensor& t, const heed::kv_cache& c) noexcept {
  heed::tensor_view v = convert_view<heed::tensor_view>(t);
  if (heed::is_quantized(v.type) && v.type == c.type()) v.group = c.config().group;
  return v;
}

bool valid_slot(const heed_kv_cache* c, int layer, int head) noexcept {
  return c->cache.valid(layer, head);
}

// The parameters as the registry's type (copied: the two structs are distinct types).
heed_status to_params(const heed_policy_param* params, std::size_t n,
                      std::vector<heed::policy_param>& out) noexcept {
  if (n > 0 && params == nullptr) return HEED_STATUS_NULL_POINTER;
  if (n > (std::size_t(1) << 20)) return HEED_STATUS_INVALID_ARGUMENT;
  if (!heed::detail::grow_vector(out, n)) return HEED_STATUS_OUT_OF_MEMORY;
  for (std::size_t i = 0; i < n; ++i) out[i] = {params[i].name, params[i].value};
  return HEED_STATUS_OK;
}

heed_status build_policy(const char* name, const heed_policy_param* params, std::size_t n,
                         heed::any_policy* out) noexcept {
  if (name == nullptr) return HEED_STATUS_NULL_POINTER;
  std::vector<heed::policy_param> p;
  const heed_status s = to_params(params, n, p);
  if (s != HEED_STATUS_OK) return s;
  return to_c(heed::make_policy(name, p.data(), n, out));
}

// eviction_config from the C struct; layer_budgets copied ([layers] entries).
heed_status to_config(const heed_eviction_config& c, int layers,
                      heed::eviction_config* out) noexcept {
  heed::eviction_config e;
  e.budget = c.budget;
  e.slack = c.slack;
  e.every = c.every;
  e.seed = c.seed;
  e.logits.scale = c.scale;
  e.logits.softcap = c.softcap;
  e.high_budget = c.high_budget;
  e.budget_bytes = c.budget_bytes;
  if (c.layer_budgets != nullptr) {
    if (!heed::detail::grow_vector(e.layer_budgets, std::size_t(layers)))
      return HEED_STATUS_OUT_OF_MEMORY;
    std::memcpy(e.layer_budgets.data(), c.layer_budgets,
                sizeof(std::int64_t) * std::size_t(layers));
  }
  *out = std::move(e);
  return HEED_STATUS_OK;
}

// A loop over `cache` with `policy`; *out only on success.
heed_status make_loop(heed_kv_cache* cache, heed::any_policy policy,
                      const heed_eviction_config& config, int q_heads,
                      heed_eviction_loop** out) noexcept {
  heed::eviction_config cfg;
  heed_status s = to_config(config, cache->cache.layers(), &cfg);
  if (s != HEED_STATUS_OK) return s;
  auto* h = new (std::nothrow) heed_eviction_loop;
  if (h == nullptr) return HEED_STATUS_OUT_OF_MEMORY;
  s = to_c(h->loop.init(&cache->cache, std::move(policy), std::move(cfg), q_heads));
  if (s != HEED_STATUS_OK) {
    delete h;
    return s;
  }
  h->cache = cache;
  *out = h;
  return HEED_STATUS_OK;
}

// heed_executor::parallel_for over a heed_thread_pool.
void pool_parallel_for(void* ctx, std::int64_t n, void (*task)(void*, std::int64_t, int),
                       void* arg) {
  static_cast<heed_thread_pool*>(ctx)->pool.parallel_for(
      n, [task, arg](std::int64_t i, int thread) { task(arg, i, thread); });
}

}  // namespace

extern "C" {

// ---- KV cache ----------------------------------------------------------------------------------

namespace {
// The C struct of a cache configuration (the one field list from C++ to C).
heed_kv_cache_config to_c(const heed::kv_cache_config& c) noexcept {
  heed_kv_cache_config r{};
  r.layers = c.layers;
  r.kv_heads = c.kv_heads;
  r.head_dim = c.head_dim;
  r.dtype = static_cast<heed_dtype>(static_cast<int>(c.type));
  r.reserve = c.reserve;
  r.score_channels = c.score_channels;
  r.capacity = c.capacity;
  r.page_rows = c.page_rows;
  r.group = c.group;
  r.tiered = c.tiered ? 1 : 0;
  r.low_type = static_cast<heed_dtype>(static_cast<int>(c.low_type));
  return r;
}

// Its inverse. Enum fields are read through their bytes (a C enum object may hold any int);
// values outside the enum reach kv_cache::init, which refuses them.
heed::kv_cache_config from_c(const heed_kv_cache_config& c) noexcept {
  heed::kv_cache_config r;
  r.layers = c.layers;
  r.kv_heads = c.kv_heads;
  r.head_dim = c.head_dim;
  r.type = static_cast<heed::dtype>(enum_value(c.dtype));
  r.reserve = c.reserve;
  r.score_channels = c.score_channels;
  r.capacity = c.capacity;
  r.page_rows = c.page_rows;
  r.group = c.group;
  r.tiered = c.tiered != 0;
  r.low_type = static_cast<heed::dtype>(enum_value(c.low_type));
  return r;
}
}  // namespace

heed_status heed_kv_cache_config_init(heed_kv_cache_config* config) {
  if (config == nullptr) return HEED_STATUS_NULL_POINTER;
  *config = to_c(heed::kv_cache_config{});
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_create(const heed_kv_cache_config* config, heed_kv_cache** out) {
  if (config == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  const heed::kv_cache_config c = from_c(*config);
  auto* h = new (std::nothrow) heed_kv_cache;
  if (h == nullptr) return HEED_STATUS_OUT_OF_MEMORY;
  const heed_status s = to_c(h->cache.init(c));
  if (s != HEED_STATUS_OK) {
    delete h;
    return s;
  }
  *out = h;
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_destroy(heed_kv_cache* cache) {
  delete cache;
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_get_config(const heed_kv_cache* cache, heed_kv_cache_config* out) {
  if (cache == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  *out = to_c(cache->cache.config());
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_append(heed_kv_cache* cache, int layer, const heed_tensor* k,
                                 const heed_tensor* v, const int64_t* positions) {
  if (cache == nullptr || k == nullptr || v == nullptr) return HEED_STATUS_NULL_POINTER;
  return to_c(cache->cache.append(layer, cache_input(*k, cache->cache),
                                  cache_input(*v, cache->cache), positions));
}

heed_status heed_kv_cache_length(const heed_kv_cache* cache, int layer, int head, int64_t* out) {
  if (cache == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head)) return HEED_STATUS_INVALID_ARGUMENT;
  *out = cache->cache.length(layer, head);
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_row_bytes(const heed_kv_cache* cache, size_t* out) {
  if (cache == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  *out = cache->cache.row_bytes();
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_positions(const heed_kv_cache* cache, int layer, int head, int64_t* dst,
                                    int64_t capacity) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head) || capacity < 0) return HEED_STATUS_INVALID_ARGUMENT;
  const std::int64_t n = cache->cache.length(layer, head);
  if (n == 0) return HEED_STATUS_OK;
  if (dst == nullptr) return HEED_STATUS_NULL_POINTER;
  if (capacity < n) return HEED_STATUS_WORKSPACE_TOO_SMALL;
  std::memcpy(dst, cache->cache.positions(layer, head), sizeof(std::int64_t) * std::size_t(n));
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_read_rows(const heed_kv_cache* cache, int layer, int head, void* k_dst,
                                    size_t k_bytes, void* v_dst, size_t v_bytes) {
  if (cache == nullptr || (k_dst == nullptr && v_dst == nullptr)) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head)) return HEED_STATUS_INVALID_ARGUMENT;
  const heed::kv_cache& c = cache->cache;
  const std::size_t need = std::size_t(c.length(layer, head)) * c.row_bytes();
  if ((k_dst != nullptr && k_bytes < need) || (v_dst != nullptr && v_bytes < need))
    return HEED_STATUS_WORKSPACE_TOO_SMALL;
  if (k_dst != nullptr) {
    const heed_status s = to_c(c.gather(layer, head, 0, k_dst, k_bytes));
    if (s != HEED_STATUS_OK) return s;
  }
  if (v_dst != nullptr) return to_c(c.gather(layer, head, 1, v_dst, v_bytes));
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_read_scores(const heed_kv_cache* cache, int layer, int head, int channel,
                                      float* dst, int64_t capacity) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  const heed::kv_cache& c = cache->cache;
  if (!valid_slot(cache, layer, head) || channel < 0 || channel >= c.config().score_channels ||
      capacity < 0)
    return HEED_STATUS_INVALID_ARGUMENT;
  const std::int64_t n = c.length(layer, head);
  if (n == 0) return HEED_STATUS_OK;
  if (dst == nullptr) return HEED_STATUS_NULL_POINTER;
  if (capacity < n) return HEED_STATUS_WORKSPACE_TOO_SMALL;
  std::memcpy(dst, c.scores(layer, head, channel), sizeof(float) * std::size_t(n));
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_bytes_used(const heed_kv_cache* cache, size_t* out) {
  if (cache == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  *out = cache->cache.bytes_used();
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_bytes_reserved(const heed_kv_cache* cache, size_t* out) {
  if (cache == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  *out = cache->cache.bytes_reserved();
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_clear(heed_kv_cache* cache, int layer) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  if (layer == -1) {
    cache->cache.clear();
    return HEED_STATUS_OK;
  }
  if (!valid_slot(cache, layer, 0)) return HEED_STATUS_INVALID_ARGUMENT;
  cache->cache.clear_layer(layer);
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_shrink_to_fit(heed_kv_cache* cache, int64_t slack) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  return to_c(cache->cache.shrink_to_fit(slack));
}

// ---- Two precisions ----------------------------------------------------------------------------

heed_status heed_kv_cache_demote(heed_kv_cache* cache, int layer, int head, const int32_t* idx,
                                 int64_t n) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head) || n < 0) return HEED_STATUS_INVALID_ARGUMENT;
  if (n > 0 && idx == nullptr) return HEED_STATUS_NULL_POINTER;
  return to_c(cache->cache.demote(layer, head, idx, n));
}

heed_status heed_kv_cache_low_length(const heed_kv_cache* cache, int layer, int head,
                                     int64_t* out) {
  if (cache == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head)) return HEED_STATUS_INVALID_ARGUMENT;
  *out = cache->cache.low_length(layer, head);
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_tiers(const heed_kv_cache* cache, int layer, int head, uint8_t* dst,
                                size_t n) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head)) return HEED_STATUS_INVALID_ARGUMENT;
  const std::size_t len = std::size_t(cache->cache.length(layer, head));
  if (len == 0) return HEED_STATUS_OK;
  if (dst == nullptr) return HEED_STATUS_NULL_POINTER;
  if (n < len) return HEED_STATUS_WORKSPACE_TOO_SMALL;
  const std::uint8_t* t = cache->cache.tiers(layer, head);
  if (t == nullptr)
    std::memset(dst, 0, len);  // untiered: every entry is high
  else
    std::memcpy(dst, t, len);
  return HEED_STATUS_OK;
}

heed_status heed_kv_cache_gather_float(const heed_kv_cache* cache, int layer, int head, int which,
                                       float* dst, size_t n) {
  if (cache == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!valid_slot(cache, layer, head) || (which != 0 && which != 1))
    return HEED_STATUS_INVALID_ARGUMENT;
  return to_c(cache->cache.gather_float(layer, head, which, dst, n));
}

// ---- Policies by name --------------------------------------------------------------------------

heed_status heed_policy_count(int* out) {
  if (out == nullptr) return HEED_STATUS_NULL_POINTER;
  *out = heed::policy_count();
  return HEED_STATUS_OK;
}

heed_status heed_policy_name(int i, const char** out) {
  if (out == nullptr) return HEED_STATUS_NULL_POINTER;
  const char* n = heed::policy_name(i);
  if (n == nullptr) return HEED_STATUS_INVALID_ARGUMENT;
  *out = n;
  return HEED_STATUS_OK;
}

heed_status heed_policy_channels(const char* policy, const heed_policy_param* params,
                                 size_t n_params, int* channels) {
  if (channels == nullptr) return HEED_STATUS_NULL_POINTER;
  heed::any_policy p;
  const heed_status s = build_policy(policy, params, n_params, &p);
  if (s != HEED_STATUS_OK) return s;
  *channels = p.needs().channels;
  return HEED_STATUS_OK;
}

heed_status heed_pyramid_budgets(int layers, int64_t average, double beta, int64_t min_budget,
                                 int64_t* out) {
  return to_c(heed::pyramid_budgets(layers, average, beta, min_budget, out));
}

// ---- Eviction loop -----------------------------------------------------------------------------

heed_status heed_eviction_config_init(heed_eviction_config* config) {
  if (config == nullptr) return HEED_STATUS_NULL_POINTER;
  const heed::eviction_config d;
  heed_eviction_config c{};
  c.budget = d.budget;
  c.layer_budgets = nullptr;
  c.slack = d.slack;
  c.every = d.every;
  c.seed = d.seed;
  c.scale = d.logits.scale;
  c.softcap = d.logits.softcap;
  c.high_budget = d.high_budget;
  c.budget_bytes = d.budget_bytes;
  *config = c;
  return HEED_STATUS_OK;
}

heed_status heed_callback_policy_init(heed_callback_policy* policy) {
  if (policy == nullptr) return HEED_STATUS_NULL_POINTER;
  heed_callback_policy c{};
  c.lambda = 1.f;
  *policy = c;
  return HEED_STATUS_OK;
}

heed_status heed_eviction_loop_create(heed_kv_cache* cache, const char* policy,
                                      const heed_policy_param* params, size_t n_params,
                                      const heed_eviction_config* config, int q_heads,
                                      heed_eviction_loop** out) {
  if (cache == nullptr || policy == nullptr || config == nullptr || out == nullptr)
    return HEED_STATUS_NULL_POINTER;
  heed::any_policy p;
  const heed_status s = build_policy(policy, params, n_params, &p);
  if (s != HEED_STATUS_OK) return s;
  return make_loop(cache, std::move(p), *config, q_heads, out);
}

heed_status heed_eviction_loop_create_callback(heed_kv_cache* cache,
                                               const heed_callback_policy* policy,
                                               const heed_eviction_config* config, int q_heads,
                                               heed_eviction_loop** out) {
  if (cache == nullptr || policy == nullptr || config == nullptr || out == nullptr ||
      policy->fn == nullptr)
    return HEED_STATUS_NULL_POINTER;
  const heed_callback_policy& c = *policy;
  if (c.accumulate_mode < 0 || c.accumulate_mode > 2 || !(c.lambda >= 0.f && c.lambda <= 1.f) ||
      c.query_window < 0 || c.query_window > (1 << 16) || c.n_sink < 0 || c.n_recent < 0)
    return HEED_STATUS_INVALID_ARGUMENT;
  heed::callback_policy cb;
  cb.fn = c.fn;
  cb.admit_fn = c.admit;
  cb.user = c.user;
  cb.wants.column_mass = c.column_mass != 0;
  cb.wants.channels = cb.wants.column_mass ? 1 : 0;
  cb.wants.accumulate.mode = static_cast<heed::accumulate_mode>(c.accumulate_mode);
  cb.wants.accumulate.lambda = c.lambda;
  cb.wants.accumulate.reduce = c.reduce_max ? heed::head_reduce::max : heed::head_reduce::mean;
  cb.wants.query_window = c.query_window;
  cb.wants.kv_rows = c.kv_rows != 0;
  cb.select.protect.n_sink = c.n_sink;
  cb.select.protect.n_recent = c.n_recent;
  heed::any_policy p;
  const heed_status s = to_c(heed::any_policy::make(cb, &p));
  if (s != HEED_STATUS_OK) return s;
  return make_loop(cache, std::move(p), *config, q_heads, out);
}

heed_status heed_eviction_loop_destroy(heed_eviction_loop* loop) {
  delete loop;
  return HEED_STATUS_OK;
}

heed_status heed_eviction_loop_step(heed_eviction_loop* loop, int layer, const heed_tensor* q,
                                    const heed_tensor* k, const heed_tensor* v,
                                    const heed_mutable_tensor* o, const heed_executor* executor,
                                    float* lse, float* entropy) {
  if (loop == nullptr || q == nullptr || k == nullptr || v == nullptr || o == nullptr)
    return HEED_STATUS_NULL_POINTER;
  const heed::kv_cache& c = loop->cache->cache;
  if (!c.valid(layer, 0)) return HEED_STATUS_INVALID_ARGUMENT;
  const heed::tensor_view qv = convert_view<heed::tensor_view>(*q);
  const heed::tensor_view kv = cache_input(*k, c), vv = cache_input(*v, c);
  const heed::mutable_tensor_view ov = convert_view<heed::mutable_tensor_view>(*o);
  if (executor == nullptr)
    return to_c(loop->loop.step(layer, qv, kv, vv, ov, heed::default_executor(), lse, entropy));
  const heed_status e = heed::c_api::check_executor(*executor);
  if (e != HEED_STATUS_OK) return e;
  heed::c_api::c_executor ex(*executor);
  return to_c(loop->loop.step(layer, qv, kv, vv, ov, ex, lse, entropy));
}

heed_status heed_eviction_loop_evict_now(heed_eviction_loop* loop, int layer) {
  if (loop == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!loop->cache->cache.valid(layer, 0)) return HEED_STATUS_INVALID_ARGUMENT;
  const std::int64_t b = loop->loop.budget(layer);
  if (b == 0) return HEED_STATUS_OK;
  return to_c(loop->loop.evict_to(layer, b));
}

heed_status heed_eviction_loop_evict_to(heed_eviction_loop* loop, int layer, int64_t target) {
  if (loop == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!loop->cache->cache.valid(layer, 0) || target < 0) return HEED_STATUS_INVALID_ARGUMENT;
  return to_c(loop->loop.evict_to(layer, target));
}

heed_status heed_eviction_loop_budget(const heed_eviction_loop* loop, int layer, int64_t* out) {
  if (loop == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  if (!loop->cache->cache.valid(layer, 0)) return HEED_STATUS_INVALID_ARGUMENT;
  *out = loop->loop.budget(layer);
  return HEED_STATUS_OK;
}

heed_status heed_eviction_loop_policy_name(const heed_eviction_loop* loop, const char** out) {
  if (loop == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  *out = loop->loop.policy().name();
  return HEED_STATUS_OK;
}

// ---- Threads
// -------------------------------------------------------------------------------------

heed_status heed_thread_pool_create(int threads, heed_thread_pool** out) {
  if (out == nullptr) return HEED_STATUS_NULL_POINTER;
  if (threads < 0 || threads > 1024) return HEED_STATUS_INVALID_ARGUMENT;
  heed_thread_pool* p = nullptr;
  // Starting threads may throw (std::system_error, std::bad_alloc): reported as out of memory.
  if (!heed::detail::allocation_ok([&] { p = new heed_thread_pool(threads); }) || p == nullptr)
    return HEED_STATUS_OUT_OF_MEMORY;
  *out = p;
  return HEED_STATUS_OK;
}

heed_status heed_thread_pool_executor(heed_thread_pool* pool, heed_executor* out) {
  if (pool == nullptr || out == nullptr) return HEED_STATUS_NULL_POINTER;
  out->concurrency = pool->pool.concurrency();
  out->parallel_for = &pool_parallel_for;
  out->ctx = pool;
  return HEED_STATUS_OK;
}

heed_status heed_thread_pool_destroy(heed_thread_pool* pool) {
  delete pool;
  return HEED_STATUS_OK;
}

}  // extern "C"
