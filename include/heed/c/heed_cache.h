/* heed C API, part 2: the KV cache and the eviction loop (library heed::heed), callable from C99.
 *
 * Mirrors heed::kv_cache (heed/cache/kv_cache.hpp), heed::eviction_loop
 * (heed/policy/eviction_loop.hpp) and the policy registry (heed/policy/registry.hpp). An engine's
 * loop (docs/c_api.md has the whole story, examples/c_engine_loop.c a complete program):
 *
 *   heed_kv_cache_config cc;  heed_kv_cache_config_init(&cc);
 *   cc.layers = L; cc.kv_heads = Hkv; cc.head_dim = d; cc.dtype = HEED_DTYPE_F16;
 *   cc.score_channels = 1;                         // H2O accumulates into channel 0
 *   heed_kv_cache* cache;  heed_kv_cache_create(&cc, &cache);
 *   heed_eviction_config ec;  heed_eviction_config_init(&ec);  ec.budget = 256;
 *   heed_policy_param pp[] = {{"recent_fraction", 0.5}};
 *   heed_eviction_loop* loop;  heed_eviction_loop_create(cache, "h2o", pp, 1, &ec, Hq, &loop);
 *   for each token, for each layer (after RoPE):
 *     heed_eviction_loop_step(loop, layer, &q, &k, &v, &o, NULL, NULL, NULL);
 *   heed_eviction_loop_destroy(loop);  heed_kv_cache_destroy(cache);
 *
 * Rules for every function here:
 *   - it returns a heed_status (values come back through out-pointers) and never throws, aborts
 *     or crashes on bad input: null handles and pointers, out-of-range layers and heads, and
 *     tensors of the wrong shape or type are reported as statuses;
 *   - a call that fails leaves its objects as they were (a failed append or step appends nothing
 *     and evicts nothing), HEED_STATUS_OUT_OF_MEMORY included (retry once memory is available;
 *     docs/allocation_faults.md). Two exceptions: a step that evicted before its append and then
 *     cannot get the attention's workspace keeps that eviction (its append is undone; a retry
 *     completes the step as if nothing had failed), and what a score callback does itself;
 *   - out-pointers are written only on success;
 *   - the library allocates (handles, cache rows, loop scratch) and reports a failed allocation
 *     as HEED_STATUS_OUT_OF_MEMORY.
 * Threads: a handle is used by one thread at a time (the caller serializes calls on the same cache
 * or loop, and on a cache while a loop over it runs); different handles are independent. The
 * executor passed to a step (a heed_executor of your own, or heed_thread_pool_executor) runs the
 * kernels on several threads.
 */
#ifndef HEED_C_HEED_CACHE_H_
#define HEED_C_HEED_CACHE_H_

#include <stddef.h>
#include <stdint.h>

#include "heed/c/heed.h"
#include "heed/c/heed_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- KV cache --------------------------------------------------------------------------------
 * Per (layer, KV head): K and V rows in the storage dtype, the original position of every entry
 * (ascending) and `score_channels` float channels. Rows are head-major: a (layer, head) holds
 * length rows of row_bytes bytes each (heed_kv_cache_row_bytes). */

typedef struct heed_kv_cache heed_kv_cache;

/* Mirrors heed::kv_cache_config. Initialize with heed_kv_cache_config_init(). */
typedef struct heed_kv_cache_config {
  int layers;         /* >= 1 */
  int kv_heads;       /* >= 1; layers * kv_heads <= 2^20 */
  int64_t head_dim;   /* 1 .. 65536 */
  heed_dtype dtype;   /* storage: F32, F16, BF16, Q8 or Q4 (rows quantized on append) */
  int64_t reserve;    /* entries reserved up front per (layer, head); 0 = grow on demand */
  int score_channels; /* 0 .. 64 float channels per entry (policies: heed_policy_channels) */
  int64_t capacity;   /* most entries a (layer, head) may hold; 0 = no limit */
  int64_t page_rows;  /* 0 = one contiguous block per head; else 16 .. 2^20 rows per page */
  int group;          /* Q8 / Q4: values per scale, 0 = 32; must divide head_dim. 0 otherwise */
  /* Two precisions per head (heed_kv_cache_demote); contiguous only (page_rows 0): */
  int tiered;          /* non-zero: demotion re-stores entries at low_type */
  heed_dtype low_type; /* storage of demoted entries, fewer bytes a row than dtype; Q4 */
} heed_kv_cache_config;

/* The C++ defaults: 1 layer, 1 head, head_dim 0 (must be set), F32, no reserve, no channels,
 * no limit, contiguous, group 0, not tiered, low_type Q4. */
HEED_NODISCARD heed_status heed_kv_cache_config_init(heed_kv_cache_config* config);

/* Creates an empty cache. *out is set only on success. HEED_STATUS_INVALID_ARGUMENT or
 * HEED_STATUS_UNSUPPORTED_DTYPE for a configuration heed::kv_cache::init refuses. */
HEED_NODISCARD heed_status heed_kv_cache_create(const heed_kv_cache_config* config,
                                                heed_kv_cache** out);

/* Frees the cache. NULL is allowed (HEED_STATUS_OK). Destroy every loop over it first. */
heed_status heed_kv_cache_destroy(heed_kv_cache* cache);

/* The configuration the cache was created with. */
HEED_NODISCARD heed_status heed_kv_cache_get_config(const heed_kv_cache* cache,
                                                    heed_kv_cache_config* out);

/* Appends n tokens to every KV head of `layer`: k and v are [n, kv_heads, head_dim] views of F32,
 * F16 or BF16 (converted to the storage dtype), or of the cache's own Q8 / Q4 format and group
 * (copied). positions: [n] original positions shared by all heads, strictly ascending after each
 * head's last, or NULL to continue each head's count. New score channels start at 0. A quantized
 * cache refuses non-finite rows (HEED_STATUS_INVALID_ARGUMENT). All or nothing. */
HEED_NODISCARD heed_status heed_kv_cache_append(heed_kv_cache* cache, int layer,
                                                const heed_tensor* k, const heed_tensor* v,
                                                const int64_t* positions);

/* Entries held by (layer, head). */
HEED_NODISCARD heed_status heed_kv_cache_length(const heed_kv_cache* cache, int layer, int head,
                                                int64_t* out);

/* Bytes of one stored K (or V) row: head_dim * 4 / 2 for F32 / F16 / BF16, and the quantized row
 * size for Q8 / Q4 (heed.h: head_dim + head_dim / 16 for Q8 with group 32). */
HEED_NODISCARD heed_status heed_kv_cache_row_bytes(const heed_kv_cache* cache, size_t* out);

/* Copies the original positions of (layer, head)'s entries into dst[0 .. length). `capacity` is
 * dst's size in elements; HEED_STATUS_WORKSPACE_TOO_SMALL (nothing written) when it is below the
 * length. dst may be NULL when the head is empty. */
HEED_NODISCARD heed_status heed_kv_cache_positions(const heed_kv_cache* cache, int layer, int head,
                                                   int64_t* dst, int64_t capacity);

/* Copies (layer, head)'s K rows into k_dst and V rows into v_dst, length rows of row_bytes each,
 * contiguous, in the stored format (F16 bits, Q8 / Q4 rows as in heed.h), whether the cache is
 * contiguous or paged. Either destination may be NULL to skip it (not both); k_bytes / v_bytes are
 * the buffers' sizes (HEED_STATUS_WORKSPACE_TOO_SMALL below length * row_bytes). A head holding
 * demoted entries has two row formats: HEED_STATUS_UNSUPPORTED_DTYPE (heed_kv_cache_gather_float
 * reads any head). */
HEED_NODISCARD heed_status heed_kv_cache_read_rows(const heed_kv_cache* cache, int layer, int head,
                                                   void* k_dst, size_t k_bytes, void* v_dst,
                                                   size_t v_bytes);

/* Copies score channel `channel` of (layer, head) into dst[0 .. length) (capacity elements). */
HEED_NODISCARD heed_status heed_kv_cache_read_scores(const heed_kv_cache* cache, int layer,
                                                     int head, int channel, float* dst,
                                                     int64_t capacity);

/* Bytes in use (length x (2 rows + position + channels), summed; a tiered cache counts a tier
 * byte per entry and the low tier's rows at their size) and held (capacity, pages). */
HEED_NODISCARD heed_status heed_kv_cache_bytes_used(const heed_kv_cache* cache, size_t* out);
HEED_NODISCARD heed_status heed_kv_cache_bytes_reserved(const heed_kv_cache* cache, size_t* out);

/* Empties every head of one layer (layer >= 0) or of all layers (layer == -1), and restarts their
 * position counts at 0; the memory stays reserved. A loop keeps per-layer state of its own (step
 * counts, recent queries): for a new sequence, clear the cache and create a new loop. */
HEED_NODISCARD heed_status heed_kv_cache_clear(heed_kv_cache* cache, int layer);

/* Gives memory back: each head's capacity becomes its length plus `slack` entries. */
HEED_NODISCARD heed_status heed_kv_cache_shrink_to_fit(heed_kv_cache* cache, int64_t slack);

/* ---- Two precisions (config.tiered) -----------------------------------------------------------
 * A tiered cache appends entries at `dtype` (the high tier); demotion re-stores chosen entries at
 * `low_type` (the low tier) instead of evicting them. Positions, score channels and the order of
 * entries stay; attention (heed_eviction_loop_step) reads both tiers. heed_eviction_config's
 * high_budget makes the loop demote by itself. */

/* Demotes the entries idx[0 .. n) of (layer, head) to the low tier: strictly ascending indices
 * (0 .. length) of high-tier entries. HEED_STATUS_INVALID_ARGUMENT for an untiered cache, an index
 * out of range, not ascending or already low, or a row the low type cannot hold (Q8 / Q4:
 * non-finite values); idx may be NULL when n is 0. All or nothing. */
HEED_NODISCARD heed_status heed_kv_cache_demote(heed_kv_cache* cache, int layer, int head,
                                                const int32_t* idx, int64_t n);

/* Entries of (layer, head) in the low tier (0 for an untiered cache). */
HEED_NODISCARD heed_status heed_kv_cache_low_length(const heed_kv_cache* cache, int layer, int head,
                                                    int64_t* out);

/* Copies the tier of each of (layer, head)'s entries into dst[0 .. length): 0 high, 1 low (all 0
 * for an untiered cache). `n` is dst's size in elements (HEED_STATUS_WORKSPACE_TOO_SMALL below the
 * length, nothing written); dst may be NULL when the head is empty. */
HEED_NODISCARD heed_status heed_kv_cache_tiers(const heed_kv_cache* cache, int layer, int head,
                                               uint8_t* dst, size_t n);

/* Copies (layer, head)'s K (which 0) or V (which 1) rows into dst as F32, length rows of head_dim
 * floats in entry order, whatever the storage (tiers, pages, F16 / BF16 widened, Q8 / Q4
 * dequantized as the kernels read them). `n` is dst's size in floats
 * (HEED_STATUS_WORKSPACE_TOO_SMALL below length * head_dim); dst may be NULL when the head is
 * empty. */
HEED_NODISCARD heed_status heed_kv_cache_gather_float(const heed_kv_cache* cache, int layer,
                                                      int head, int which, float* dst, size_t n);

/* ---- Policies by name ------------------------------------------------------------------------
 * The built-in policies and their parameters: docs/policies.md ("Policies by name"). */

typedef struct heed_policy_param {
  const char* name; /* e.g. "sinks", "recent", "window", "lag", "seed" */
  double value;     /* integer parameters take integral values */
} heed_policy_param;

/* How many built-in policy names there are, and the i-th (a static string). Any of them may also
 * be prefixed by "caote_" (CAOTE re-scoring of that policy). */
HEED_NODISCARD heed_status heed_policy_count(int* out);
HEED_NODISCARD heed_status heed_policy_name(int i, const char** out);

/* Checks a policy name and parameters (HEED_STATUS_INVALID_ARGUMENT: unknown name, unknown or
 * repeated parameter, value out of range) and reports the score channels a cache needs for it. */
HEED_NODISCARD heed_status heed_policy_channels(const char* policy, const heed_policy_param* params,
                                                size_t n_params, int* channels);

/* PyramidKV budgets (heed::pyramid_budgets): `layers` budgets averaging `average`, shrinking
 * with depth (last layer average / beta), each at least min_budget, summing to layers * average.
 * Pass them as heed_eviction_config::layer_budgets. */
HEED_NODISCARD heed_status heed_pyramid_budgets(int layers, int64_t average, double beta,
                                                int64_t min_budget, int64_t* out);

/* ---- Eviction loop ----------------------------------------------------------------------------
 */

typedef struct heed_eviction_loop heed_eviction_loop;

/* Mirrors heed::eviction_config. Initialize with heed_eviction_config_init(). */
typedef struct heed_eviction_config {
  int64_t budget;               /* entries per (layer, KV head); 0 = never evict */
  const int64_t* layer_budgets; /* [layers] per-layer budgets (copied), or NULL */
  int64_t slack;                /* tolerate budget + slack entries, then evict to the budget */
  int64_t every;                /* also evict every N steps of a layer when over budget; 0 = off */
  uint64_t seed;                /* mixed into seeded policies (random) */
  float scale;                  /* logit scale, 0 = 1 / sqrt(head_dim) */
  float softcap;                /* 0 = off */
  /* A tiered cache: at most high_budget entries per (layer, KV head) in the high tier (<= the
   * budget); the lowest-scored others are demoted before any entry is evicted. -1 = off (the
   * default: a zero-filled struct means "demote all" and is refused by an untiered cache). */
  int64_t high_budget;
  /* The budget in bytes per (layer, KV head) instead of entries (budget 0, layer_budgets NULL):
   * the most entries that fit, high_budget of them at the high tier's entry size (or all, without
   * high_budget), the rest at the low tier's. 0 = off. heed_eviction_loop_budget reports it. */
  size_t budget_bytes;
} heed_eviction_config;

/* The C++ defaults: no budget, no slack, high_budget -1, budget_bytes 0 (always start here). */
HEED_NODISCARD heed_status heed_eviction_config_init(heed_eviction_config* config);

/* How a C score callback's entries become keep-sets, and what it reads: mirrors the score_needs
 * and selection_spec of heed::callback_policy. Initialize with heed_callback_policy_init(). */
typedef struct heed_callback_policy {
  heed_policy_score_fn fn;
  void* user;
  /* What the callback reads (heed_policy_head): */
  int column_mass;      /* non-zero: decode attention accumulates into channel 0 (accumulated) */
  int accumulate_mode;  /* 0 sum (H2O), 1 decay by lambda (A2SF), 2 last query (TOVA) */
  float lambda;         /* decay, 0 .. 1 */
  int reduce_max;       /* query heads reduce to their KV head by max (else mean) */
  int64_t query_window; /* keep the last n queries (heed_policy_head::queries); 0 .. 65536 */
  int kv_rows;          /* non-zero: reads keys / values (paged heads are copied out first) */
  /* Selection: top-k with these entries always kept (they count in the budget). */
  int64_t n_sink;
  int64_t n_recent;
  /* Optional write gate (NULL: every token enters): asked for each new token and KV head whether
   * it enters the cache at all (heed/c/heed_policy.h). */
  heed_policy_admit_fn admit;
} heed_callback_policy;

HEED_NODISCARD heed_status heed_callback_policy_init(heed_callback_policy* policy);

/* A loop over `cache` (which must outlive it) with the built-in policy `policy` and its
 * parameters (params may be NULL when n_params is 0), for a model of q_heads query heads (a
 * multiple of the cache's kv_heads). HEED_STATUS_INVALID_ARGUMENT for an unknown policy or
 * parameter, a bad value or budget, or a cache with fewer score channels than the policy needs. */
HEED_NODISCARD heed_status heed_eviction_loop_create(heed_kv_cache* cache, const char* policy,
                                                     const heed_policy_param* params,
                                                     size_t n_params,
                                                     const heed_eviction_config* config,
                                                     int q_heads, heed_eviction_loop** out);

/* The same with a C score callback as the policy (heed/c/heed_policy.h). The callback is called
 * from the thread that calls step / evict, once per (layer, KV head) per eviction. */
HEED_NODISCARD heed_status heed_eviction_loop_create_callback(heed_kv_cache* cache,
                                                              const heed_callback_policy* policy,
                                                              const heed_eviction_config* config,
                                                              int q_heads,
                                                              heed_eviction_loop** out);

/* Frees the loop (not the cache). NULL is allowed. */
heed_status heed_eviction_loop_destroy(heed_eviction_loop* loop);

/* One step of one layer: evict if the n new tokens would exceed the budget, append k / v, attend
 * q over the cache into o, update the policy's scores. q [n, Hq, d] F32; k, v [n, Hkv, d] (F32,
 * F16, BF16, or the cache's quantized format); o [n, Hq, d] F32; n = 1 for a decode token, more
 * for a prefill chunk (causal; a chunk longer than the budget is attended in full and evicted
 * after). executor NULL = serial. lse / entropy: optional [Hq][n] row outputs (natural log), or
 * NULL. Apply RoPE before the step: inside, positions are cache indices. */
HEED_NODISCARD heed_status heed_eviction_loop_step(heed_eviction_loop* loop, int layer,
                                                   const heed_tensor* q, const heed_tensor* k,
                                                   const heed_tensor* v,
                                                   const heed_mutable_tensor* o,
                                                   const heed_executor* executor, float* lse,
                                                   float* entropy);

/* Evicts `layer` down to its budget now (heed_eviction_loop_evict_to with the layer's budget; a
 * budget of 0 evicts nothing). */
HEED_NODISCARD heed_status heed_eviction_loop_evict_now(heed_eviction_loop* loop, int layer);

/* Evicts `layer` down to `target` entries per head now (e.g. once after prefill, SAGE-KV). */
HEED_NODISCARD heed_status heed_eviction_loop_evict_to(heed_eviction_loop* loop, int layer,
                                                       int64_t target);

/* The budget of `layer` (per-layer budget or the global one). */
HEED_NODISCARD heed_status heed_eviction_loop_budget(const heed_eviction_loop* loop, int layer,
                                                     int64_t* out);

/* The policy's name ("h2o", "snapkv", "callback", ...), a static string. */
HEED_NODISCARD heed_status heed_eviction_loop_policy_name(const heed_eviction_loop* loop,
                                                          const char** out);

/* ---- Threads ----------------------------------------------------------------------------------
 * heed's own thread pool (heed::thread_pool_executor: threads - 1 persistent workers plus the
 * calling thread), for engines without a pool of their own to wrap in a heed_executor. */

typedef struct heed_thread_pool heed_thread_pool;

/* threads: 1 .. 1024, or 0 for the hardware concurrency. */
HEED_NODISCARD heed_status heed_thread_pool_create(int threads, heed_thread_pool** out);

/* A heed_executor that runs on the pool (valid until the pool is destroyed). One call at a time
 * per pool: the steps of different loops that share a pool must not overlap. */
HEED_NODISCARD heed_status heed_thread_pool_executor(heed_thread_pool* pool, heed_executor* out);

/* Stops the workers and frees the pool. NULL is allowed. */
heed_status heed_thread_pool_destroy(heed_thread_pool* pool);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HEED_C_HEED_CACHE_H_ */
