/* The KV cache and eviction loop C API (heed/c/heed_cache.h) from C99: a whole multi-layer decode
 * loop (a prefill chunk longer than the budget, then decode tokens with eviction) with a policy by
 * name (h2o) and a C score callback, on contiguous and paged f32 caches, serial, through a C
 * executor and on heed's thread pool. After every step the cache's entries are read back (positions
 * and rows), the rows are checked bit for bit against the tokens at those positions, and each
 * output against a float64 attention over exactly those entries. A tiered cache demoting under
 * high_budget. Then error cases. Exit status 0 when everything passes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heed/c/heed_cache.h"

enum { LAYERS = 2, HQ = 4, HKV = 2, D = 64, PREFILL = 20, DECODE = 30, BUDGET = 12 };
#define TOTAL (PREFILL + DECODE)

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_STATUS(call, want)                                                         \
  do {                                                                                   \
    heed_status s_ = (call);                                                             \
    if (s_ != (want)) {                                                                  \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__, #call, \
              heed_status_string(s_), heed_status_string(want));                         \
      ++failures;                                                                        \
    }                                                                                    \
  } while (0)

/* Every token's q / k / v, [layer][pos][heads][d]. */
static float g_q[LAYERS][TOTAL][HQ][D];
static float g_k[LAYERS][TOTAL][HKV][D];
static float g_v[LAYERS][TOTAL][HKV][D];

static uint64_t rng_state = 88172645463325252ull;
static float uniform(void) { /* xorshift64, in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static heed_tensor view(const void* data, int64_t n, int64_t heads) {
  heed_tensor t;
  t.data = data;
  t.dtype = HEED_DTYPE_F32;
  t.seq = n;
  t.heads = heads;
  t.dim = D;
  t.seq_stride = heads * D;
  t.head_stride = D;
  return t;
}

/* A C executor: runs the tasks in order on this thread, but reports two threads (the thread ids
 * alternate; calls with the same id never overlap, as the contract asks). */
static void run_serial(void* ctx, int64_t n, void (*task)(void* arg, int64_t task, int thread),
                       void* arg) {
  int64_t i;
  (void)ctx;
  for (i = 0; i < n; ++i) task(arg, i, (int)(i % 2));
}

/* heed's own pool of 2 threads, for the runs with use_executor == 2. */
static heed_thread_pool* g_pool = NULL;

/* A callback policy: keep the keys of smallest norm (KNorm), reading the rows heed hands over. */
static int g_callback_calls = 0;
static heed_status knorm_score(void* user, const heed_policy_head* h, float* out) {
  int64_t j, c;
  (void)user;
  ++g_callback_calls;
  if (h->dtype != HEED_DTYPE_F32 || h->keys == NULL) return HEED_STATUS_UNSUPPORTED_DTYPE;
  for (j = 0; j < h->length; ++j) {
    const float* k = (const float*)h->keys + j * h->head_dim;
    double s = 0;
    for (c = 0; c < h->head_dim; ++c) s += (double)k[c] * k[c];
    out[j] = (float)-sqrt(s);
  }
  return HEED_STATUS_OK;
}

/* Checks query row (layer, token) of every head in o [HQ][D] (and lse [HQ]) against float64
 * attention over the entries `pos[kvh][0 .. len[kvh])`. */
static void check_output(int layer, int token, const float* o, const float* lse,
                         int64_t pos[HKV][TOTAL], const int64_t len[HKV]) {
  int h, c;
  int64_t j;
  const double scale = 1.0 / sqrt((double)D);
  for (h = 0; h < HQ; ++h) {
    const int kvh = h / (HQ / HKV);
    double m = -INFINITY, sum = 0, acc[D];
    double logits[TOTAL];
    for (c = 0; c < D; ++c) acc[c] = 0;
    for (j = 0; j < len[kvh]; ++j) {
      const float* k = g_k[layer][pos[kvh][j]][kvh];
      double s = 0;
      for (c = 0; c < D; ++c) s += (double)g_q[layer][token][h][c] * k[c];
      logits[j] = s * scale;
      if (logits[j] > m) m = logits[j];
    }
    for (j = 0; j < len[kvh]; ++j) {
      const double p = exp(logits[j] - m);
      const float* v = g_v[layer][pos[kvh][j]][kvh];
      sum += p;
      for (c = 0; c < D; ++c) acc[c] += p * v[c];
    }
    for (c = 0; c < D; ++c) {
      const double want = acc[c] / sum, got = o[h * D + c];
      if (!(fabs(got - want) <= 2e-5 * (1 + fabs(want)))) {
        fprintf(stderr, "layer %d token %d head %d col %d: %.8f, float64 %.8f\n", layer, token, h,
                c, got, want);
        ++failures;
        return;
      }
    }
    if (lse != NULL && !(fabs(lse[h] - (m + log(sum))) <= 1e-4 * (1 + fabs(m + log(sum))))) {
      fprintf(stderr, "layer %d token %d head %d: lse %.6f, float64 %.6f\n", layer, token, h,
              lse[h], m + log(sum));
      ++failures;
    }
  }
}

/* Reads back every head of `layer`: lengths and positions, and the K / V rows checked bit for bit
 * against the tokens at those positions. */
static void read_back(heed_kv_cache* cache, int layer, int64_t pos[HKV][TOTAL], int64_t len[HKV]) {
  static float rows_k[TOTAL * D], rows_v[TOTAL * D];
  int h;
  int64_t j;
  for (h = 0; h < HKV; ++h) {
    CHECK_STATUS(heed_kv_cache_length(cache, layer, h, &len[h]), HEED_STATUS_OK);
    CHECK_STATUS(heed_kv_cache_positions(cache, layer, h, pos[h], TOTAL), HEED_STATUS_OK);
    CHECK_STATUS(
        heed_kv_cache_read_rows(cache, layer, h, rows_k, sizeof rows_k, rows_v, sizeof rows_v),
        HEED_STATUS_OK);
    for (j = 0; j < len[h]; ++j) {
      CHECK(pos[h][j] >= 0 && pos[h][j] < TOTAL);
      if (j > 0) CHECK(pos[h][j] > pos[h][j - 1]);
      CHECK(memcmp(rows_k + j * D, g_k[layer][pos[h][j]][h], sizeof(float) * D) == 0);
      CHECK(memcmp(rows_v + j * D, g_v[layer][pos[h][j]][h], sizeof(float) * D) == 0);
    }
  }
}

/* One engine run: prefill chunk, then decode tokens, every layer each step. */
static void run(int64_t page_rows, int use_callback, int use_executor) {
  heed_kv_cache_config cc;
  heed_eviction_config ec;
  heed_kv_cache* cache = NULL;
  heed_eviction_loop* loop = NULL;
  heed_executor ex;
  static float o[PREFILL * HQ * D], lse[HQ * PREFILL];
  int64_t pos[HKV][TOTAL], len[HKV];
  int layer, t, h;
  size_t used = 0;

  ex.concurrency = 2;
  ex.parallel_for = run_serial;
  ex.ctx = NULL;
  if (use_executor == 2) CHECK_STATUS(heed_thread_pool_executor(g_pool, &ex), HEED_STATUS_OK);
  CHECK_STATUS(heed_kv_cache_config_init(&cc), HEED_STATUS_OK);
  cc.layers = LAYERS;
  cc.kv_heads = HKV;
  cc.head_dim = D;
  cc.score_channels = 1;
  cc.page_rows = page_rows;
  CHECK_STATUS(heed_kv_cache_create(&cc, &cache), HEED_STATUS_OK);
  CHECK_STATUS(heed_eviction_config_init(&ec), HEED_STATUS_OK);
  ec.budget = BUDGET;
  if (use_callback) {
    heed_callback_policy cp;
    CHECK_STATUS(heed_callback_policy_init(&cp), HEED_STATUS_OK);
    cp.fn = knorm_score;
    cp.kv_rows = 1;
    cp.n_sink = 2;
    CHECK_STATUS(heed_eviction_loop_create_callback(cache, &cp, &ec, HQ, &loop), HEED_STATUS_OK);
  } else {
    const heed_policy_param params[1] = {{"recent_fraction", 0.25}};
    CHECK_STATUS(heed_eviction_loop_create(cache, "h2o", params, 1, &ec, HQ, &loop),
                 HEED_STATUS_OK);
  }
  if (cache == NULL || loop == NULL) return;

  /* Prefill: the chunk attends over itself (causal), then is evicted to the budget. */
  for (layer = 0; layer < LAYERS; ++layer) {
    const heed_tensor q = view(g_q[layer], PREFILL, HQ), k = view(g_k[layer], PREFILL, HKV),
                      v = view(g_v[layer], PREFILL, HKV);
    heed_mutable_tensor om;
    int64_t i, j;
    om.data = o;
    om.dtype = HEED_DTYPE_F32;
    om.seq = PREFILL;
    om.heads = HQ;
    om.dim = D;
    om.seq_stride = HQ * D;
    om.head_stride = D;
    CHECK_STATUS(heed_eviction_loop_step(loop, layer, &q, &k, &v, &om, use_executor ? &ex : NULL,
                                         NULL, NULL),
                 HEED_STATUS_OK);
    for (i = 0; i < PREFILL; ++i) {
      for (h = 0; h < HKV; ++h) {
        for (j = 0; j <= i; ++j) pos[h][j] = j;
        len[h] = i + 1;
      }
      check_output(layer, (int)i, o + i * HQ * D, NULL, pos, len);
    }
    read_back(cache, layer, pos, len);
    for (h = 0; h < HKV; ++h) CHECK(len[h] == BUDGET);
  }
  /* Decode: each step evicts one entry per head first, so the output is over the entries the
   * cache holds afterwards. */
  for (t = PREFILL; t < TOTAL; ++t)
    for (layer = 0; layer < LAYERS; ++layer) {
      const heed_tensor q = view(g_q[layer][t], 1, HQ), k = view(g_k[layer][t], 1, HKV),
                        v = view(g_v[layer][t], 1, HKV);
      heed_mutable_tensor om;
      om.data = o;
      om.dtype = HEED_DTYPE_F32;
      om.seq = 1;
      om.heads = HQ;
      om.dim = D;
      om.seq_stride = HQ * D;
      om.head_stride = D;
      CHECK_STATUS(heed_eviction_loop_step(loop, layer, &q, &k, &v, &om, use_executor ? &ex : NULL,
                                           lse, NULL),
                   HEED_STATUS_OK);
      read_back(cache, layer, pos, len);
      for (h = 0; h < HKV; ++h) {
        CHECK(len[h] == BUDGET);
        CHECK(pos[h][len[h] - 1] == t); /* the new token is always kept */
      }
      check_output(layer, t, o, lse, pos, len);
    }
  CHECK_STATUS(heed_kv_cache_bytes_used(cache, &used), HEED_STATUS_OK);
  CHECK(used > 0);
  CHECK_STATUS(heed_eviction_loop_destroy(loop), HEED_STATUS_OK);
  CHECK_STATUS(heed_kv_cache_destroy(cache), HEED_STATUS_OK);
}

/* A tiered cache (F32, demoted entries at F16) under a loop with high_budget: after every step
 * each head holds BUDGET entries, at most HIGH of them high; high rows read back (as F32)
 * bit for bit, low rows within F16 rounding; then one more entry demoted by hand. */
enum { HIGH = 4 };
static void tiered(void) {
  static float o[PREFILL * HQ * D], rows[TOTAL * D];
  heed_kv_cache_config cc;
  heed_eviction_config ec;
  heed_kv_cache* cache = NULL;
  heed_eviction_loop* loop = NULL;
  int64_t pos[TOTAL], len = 0, low = 0, j;
  uint8_t tiers[TOTAL];
  int layer, t, h, c, which;

  CHECK_STATUS(heed_kv_cache_config_init(&cc), HEED_STATUS_OK);
  cc.layers = LAYERS;
  cc.kv_heads = HKV;
  cc.head_dim = D;
  cc.score_channels = 1;
  cc.tiered = 1;
  cc.low_type = HEED_DTYPE_F16;
  CHECK_STATUS(heed_kv_cache_create(&cc, &cache), HEED_STATUS_OK);
  CHECK_STATUS(heed_eviction_config_init(&ec), HEED_STATUS_OK);
  CHECK(ec.high_budget == -1 && ec.budget_bytes == 0);
  ec.budget = BUDGET;
  ec.high_budget = HIGH;
  CHECK_STATUS(heed_eviction_loop_create(cache, "h2o", NULL, 0, &ec, HQ, &loop), HEED_STATUS_OK);
  if (cache == NULL || loop == NULL) return;
  for (t = 0; t < TOTAL; t += (t == 0 ? PREFILL : 1))
    for (layer = 0; layer < LAYERS; ++layer) {
      const int64_t n = t == 0 ? PREFILL : 1;
      const heed_tensor q = view(g_q[layer][t], n, HQ), k = view(g_k[layer][t], n, HKV),
                        v = view(g_v[layer][t], n, HKV);
      heed_mutable_tensor om;
      om.data = o;
      om.dtype = HEED_DTYPE_F32;
      om.seq = n;
      om.heads = HQ;
      om.dim = D;
      om.seq_stride = HQ * D;
      om.head_stride = D;
      CHECK_STATUS(heed_eviction_loop_step(loop, layer, &q, &k, &v, &om, NULL, NULL, NULL),
                   HEED_STATUS_OK);
      for (j = 0; j < n * HQ * D; ++j) CHECK(isfinite(o[j]));
      for (h = 0; h < HKV; ++h) {
        int64_t high = 0, lows = 0;
        CHECK_STATUS(heed_kv_cache_length(cache, layer, h, &len), HEED_STATUS_OK);
        CHECK_STATUS(heed_kv_cache_low_length(cache, layer, h, &low), HEED_STATUS_OK);
        CHECK_STATUS(heed_kv_cache_positions(cache, layer, h, pos, TOTAL), HEED_STATUS_OK);
        CHECK_STATUS(heed_kv_cache_tiers(cache, layer, h, tiers, TOTAL), HEED_STATUS_OK);
        CHECK(len == BUDGET);
        for (j = 0; j < len; ++j) {
          high += tiers[j] == 0;
          lows += tiers[j] == 1;
        }
        CHECK(high <= HIGH && lows == low && high + lows == len);
        if (t > 0) CHECK(tiers[len - 1] == 0 && pos[len - 1] == t); /* decode: kept, high */
        for (which = 0; which < 2; ++which) {
          CHECK_STATUS(heed_kv_cache_gather_float(cache, layer, h, which, rows, TOTAL * D),
                       HEED_STATUS_OK);
          for (j = 0; j < len; ++j) {
            const float* want = which == 0 ? g_k[layer][pos[j]][h] : g_v[layer][pos[j]][h];
            if (tiers[j] == 0) {
              CHECK(memcmp(rows + j * D, want, sizeof(float) * D) == 0);
            } else {
              for (c = 0; c < D; ++c) CHECK(fabsf(rows[j * D + c] - want[c]) <= 1e-3f);
            }
          }
        }
      }
    }
  /* By hand: the first high entry of (0, 0). Raw rows then come in two formats. */
  CHECK_STATUS(heed_kv_cache_tiers(cache, 0, 0, tiers, TOTAL), HEED_STATUS_OK);
  CHECK_STATUS(heed_kv_cache_low_length(cache, 0, 0, &low), HEED_STATUS_OK);
  j = 0;
  while (j < BUDGET && tiers[j] != 0) ++j;
  {
    const int32_t idx = (int32_t)j;
    int64_t low_after = 0;
    CHECK_STATUS(heed_kv_cache_demote(cache, 0, 0, &idx, 1), HEED_STATUS_OK);
    CHECK_STATUS(heed_kv_cache_low_length(cache, 0, 0, &low_after), HEED_STATUS_OK);
    CHECK(low_after == low + 1);
    CHECK_STATUS(heed_kv_cache_demote(cache, 0, 0, &idx, 1), HEED_STATUS_INVALID_ARGUMENT);
  }
  CHECK_STATUS(heed_kv_cache_read_rows(cache, 0, 0, rows, sizeof rows, NULL, 0),
               HEED_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(heed_kv_cache_gather_float(cache, 0, 0, 0, rows, BUDGET * D - 1),
               HEED_STATUS_WORKSPACE_TOO_SMALL);
  CHECK_STATUS(heed_kv_cache_tiers(cache, 0, 0, tiers, BUDGET - 1),
               HEED_STATUS_WORKSPACE_TOO_SMALL);
  CHECK_STATUS(heed_eviction_loop_destroy(loop), HEED_STATUS_OK);
  CHECK_STATUS(heed_kv_cache_destroy(cache), HEED_STATUS_OK);
}

static void errors(void) {
  heed_kv_cache_config cc;
  heed_eviction_config ec;
  heed_kv_cache* cache = NULL;
  heed_eviction_loop* loop = NULL;
  heed_eviction_loop* sentinel = (heed_eviction_loop*)&ec;
  heed_eviction_loop* out = sentinel;
  const heed_policy_param bad_window[1] = {{"window", 0}};
  const heed_policy_param unknown[1] = {{"no_such_parameter", 1}};
  float o[HQ * D];
  heed_tensor q = view(g_q[0][0], 1, HQ), k = view(g_k[0][0], 1, HKV), v = view(g_v[0][0], 1, HKV);
  heed_mutable_tensor om;
  int64_t len = -1;

  CHECK_STATUS(heed_kv_cache_config_init(&cc), HEED_STATUS_OK);
  cc.layers = LAYERS;
  cc.kv_heads = HKV;
  cc.head_dim = D;
  cc.score_channels = 1;
  CHECK_STATUS(heed_kv_cache_create(&cc, &cache), HEED_STATUS_OK);
  CHECK_STATUS(heed_eviction_config_init(&ec), HEED_STATUS_OK);
  ec.budget = 4;
  CHECK_STATUS(heed_eviction_loop_create(cache, "no_such_policy", NULL, 0, &ec, HQ, &out),
               HEED_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(heed_eviction_loop_create(cache, "snapkv", bad_window, 1, &ec, HQ, &out),
               HEED_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(heed_eviction_loop_create(cache, "h2o", unknown, 1, &ec, HQ, &out),
               HEED_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(heed_eviction_loop_create(NULL, "h2o", NULL, 0, &ec, HQ, &out),
               HEED_STATUS_NULL_POINTER);
  CHECK(out == sentinel);
  CHECK_STATUS(heed_eviction_loop_create(cache, "h2o", NULL, 0, &ec, HQ, &loop), HEED_STATUS_OK);

  om.data = o;
  om.dtype = HEED_DTYPE_F32;
  om.seq = 1;
  om.heads = HQ;
  om.dim = D;
  om.seq_stride = HQ * D;
  om.head_stride = D;
  CHECK_STATUS(heed_eviction_loop_step(NULL, 0, &q, &k, &v, &om, NULL, NULL, NULL),
               HEED_STATUS_NULL_POINTER);
  CHECK_STATUS(heed_eviction_loop_step(loop, 0, NULL, &k, &v, &om, NULL, NULL, NULL),
               HEED_STATUS_NULL_POINTER);
  CHECK_STATUS(heed_eviction_loop_step(loop, LAYERS, &q, &k, &v, &om, NULL, NULL, NULL),
               HEED_STATUS_INVALID_ARGUMENT);
  k.heads = 1; /* mismatched shapes */
  CHECK_STATUS(heed_eviction_loop_step(loop, 0, &q, &k, &v, &om, NULL, NULL, NULL),
               HEED_STATUS_SHAPE_MISMATCH);
  k.heads = HKV;
  q.dim = 32;
  CHECK_STATUS(heed_eviction_loop_step(loop, 0, &q, &k, &v, &om, NULL, NULL, NULL),
               HEED_STATUS_SHAPE_MISMATCH);
  CHECK_STATUS(heed_kv_cache_length(cache, 0, 0, &len), HEED_STATUS_OK);
  CHECK(len == 0); /* nothing appended by the failed steps */
  CHECK_STATUS(heed_kv_cache_length(NULL, 0, 0, &len), HEED_STATUS_NULL_POINTER);
  CHECK_STATUS(heed_kv_cache_length(cache, 0, HKV, &len), HEED_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(heed_kv_cache_append(cache, 0, &k, NULL, NULL), HEED_STATUS_NULL_POINTER);
  CHECK_STATUS(heed_eviction_loop_destroy(loop), HEED_STATUS_OK);
  CHECK_STATUS(heed_kv_cache_destroy(cache), HEED_STATUS_OK);
  CHECK_STATUS(heed_kv_cache_destroy(NULL), HEED_STATUS_OK);
}

int main(void) {
  int l, i, h, c, n = 0;
  const char* name = NULL;
  for (l = 0; l < LAYERS; ++l)
    for (i = 0; i < TOTAL; ++i) {
      for (h = 0; h < HQ; ++h)
        for (c = 0; c < D; ++c) g_q[l][i][h][c] = 2.f * uniform();
      for (h = 0; h < HKV; ++h)
        for (c = 0; c < D; ++c) {
          g_k[l][i][h][c] = uniform();
          g_v[l][i][h][c] = uniform();
        }
    }
  CHECK(heed_abi_version() == HEED_ABI_VERSION);
  CHECK_STATUS(heed_policy_count(&n), HEED_STATUS_OK);
  CHECK(n > 10);
  CHECK_STATUS(heed_policy_name(0, &name), HEED_STATUS_OK);
  CHECK(name != NULL && strlen(name) > 0);

  CHECK_STATUS(heed_thread_pool_create(2, &g_pool), HEED_STATUS_OK);
  run(0, 0, 0);
  run(16, 0, 1);
  run(0, 1, 1);
  run(16, 1, 0);
  run(16, 0, 2);
  run(0, 1, 2);
  CHECK_STATUS(heed_thread_pool_destroy(g_pool), HEED_STATUS_OK);
  CHECK_STATUS(heed_thread_pool_create(-1, &g_pool), HEED_STATUS_INVALID_ARGUMENT);
  CHECK(g_callback_calls > 0);
  tiered();
  errors();
  if (failures != 0) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("heed C API cache test passed (heed %s, %d policies by name)\n", heed_version(), n);
  return 0;
}
