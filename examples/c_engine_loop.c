/* An engine's attention loop in C99 on heed's KV cache and eviction loop (docs/c_api.md).
 *
 * A real engine computes q, k, v per layer from its weights and applies RoPE; here they come from
 * a small pseudo-random generator, so the program shows the calls and nothing else:
 *
 *   create the cache (f16 rows, 1 score channel for H2O) and the loop (policy by name, budget);
 *   prefill the prompt as one chunk per layer; then per token, per layer: one step (evicts when
 *   over the budget, appends, attends); read the cache's size; destroy both.
 *
 * Usage: heed_c_engine_loop [policy [budget [threads]]]   (defaults: h2o 64 1). Exit status 0 on
 * success. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heed/c/heed_cache.h"

enum { LAYERS = 4, Q_HEADS = 8, KV_HEADS = 2, HEAD_DIM = 64, PROMPT = 96, NEW_TOKENS = 64 };

static uint32_t rng = 12345u;
static float next_value(void) { /* xorshift32 in [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return (float)(rng >> 8) / 8388608.0f - 1.0f;
}
static void fill(float* x, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) x[i] = next_value();
}

/* A [n, heads, HEAD_DIM] view of f32 rows. */
static heed_tensor rows(const float* data, int64_t n, int64_t heads) {
  heed_tensor t;
  t.data = data;
  t.dtype = HEED_DTYPE_F32;
  t.seq = n;
  t.heads = heads;
  t.dim = HEAD_DIM;
  t.seq_stride = heads * HEAD_DIM;
  t.head_stride = HEAD_DIM;
  return t;
}

#define TRY(call)                                                        \
  do {                                                                   \
    heed_status s_ = (call);                                             \
    if (s_ != HEED_STATUS_OK) {                                          \
      fprintf(stderr, "%s failed: %s\n", #call, heed_status_string(s_)); \
      goto done;                                                         \
    }                                                                    \
  } while (0)

int main(int argc, char** argv) {
  const char* policy = argc > 1 ? argv[1] : "h2o";
  const int64_t budget = argc > 2 ? atoll(argv[2]) : 64;
  const int threads = argc > 3 ? atoi(argv[3]) : 1;
  heed_thread_pool* pool = NULL;
  heed_executor ex;
  const heed_executor* exec = NULL; /* NULL: run on this thread */
  heed_kv_cache_config cc;
  heed_eviction_config ec;
  heed_kv_cache* cache = NULL;
  heed_eviction_loop* loop = NULL;
  int channels = 0, layer, t, ok = 0;
  int64_t len = 0, pos = 0;
  int64_t* positions = NULL;
  size_t used = 0;
  const size_t q_size = (size_t)PROMPT * Q_HEADS * HEAD_DIM;
  const size_t kv_size = (size_t)PROMPT * KV_HEADS * HEAD_DIM;
  float* q = malloc(q_size * sizeof(float));
  float* k = malloc(kv_size * sizeof(float));
  float* v = malloc(kv_size * sizeof(float));
  float* o = malloc(q_size * sizeof(float));
  if (q == NULL || k == NULL || v == NULL || o == NULL) goto done;
  if (heed_abi_version() != HEED_ABI_VERSION) {
    fprintf(stderr, "libheed has C ABI %d, this program was built for %d\n", heed_abi_version(),
            HEED_ABI_VERSION);
    goto done;
  }

  if (threads > 1) { /* heed's pool; an engine with its own pool wraps it in a heed_executor */
    TRY(heed_thread_pool_create(threads, &pool));
    TRY(heed_thread_pool_executor(pool, &ex));
    exec = &ex;
  }

  /* The policy decides how many score channels the cache needs (H2O: 1). */
  TRY(heed_policy_channels(policy, NULL, 0, &channels));
  TRY(heed_kv_cache_config_init(&cc));
  cc.layers = LAYERS;
  cc.kv_heads = KV_HEADS;
  cc.head_dim = HEAD_DIM;
  cc.dtype = HEED_DTYPE_F16;
  cc.score_channels = channels;
  cc.page_rows = 32;
  TRY(heed_kv_cache_create(&cc, &cache));
  TRY(heed_eviction_config_init(&ec));
  ec.budget = budget;
  TRY(heed_eviction_loop_create(cache, policy, NULL, 0, &ec, Q_HEADS, &loop));

  /* The prompt: one chunk per layer (attended in full, then evicted to the budget). */
  for (layer = 0; layer < LAYERS; ++layer) {
    heed_tensor qt = rows(q, PROMPT, Q_HEADS), kt = rows(k, PROMPT, KV_HEADS),
                vt = rows(v, PROMPT, KV_HEADS);
    heed_mutable_tensor ot;
    fill(q, q_size);
    fill(k, kv_size);
    fill(v, kv_size);
    ot.data = o;
    ot.dtype = HEED_DTYPE_F32;
    ot.seq = PROMPT;
    ot.heads = Q_HEADS;
    ot.dim = HEAD_DIM;
    ot.seq_stride = Q_HEADS * HEAD_DIM;
    ot.head_stride = HEAD_DIM;
    TRY(heed_eviction_loop_step(loop, layer, &qt, &kt, &vt, &ot, exec, NULL, NULL));
  }
  TRY(heed_kv_cache_bytes_used(cache, &used));
  TRY(heed_kv_cache_length(cache, 0, 0, &len));
  printf("%s, budget %lld: after a %d-token prompt each head holds %lld entries, %lu bytes\n",
         policy, (long long)budget, PROMPT, (long long)len, (unsigned long)used);

  /* Decode: per token, per layer, one step. */
  for (t = 0; t < NEW_TOKENS; ++t) {
    for (layer = 0; layer < LAYERS; ++layer) {
      heed_tensor qt = rows(q, 1, Q_HEADS), kt = rows(k, 1, KV_HEADS), vt = rows(v, 1, KV_HEADS);
      heed_mutable_tensor ot;
      fill(q, Q_HEADS * HEAD_DIM);
      fill(k, KV_HEADS * HEAD_DIM);
      fill(v, KV_HEADS * HEAD_DIM);
      ot.data = o;
      ot.dtype = HEED_DTYPE_F32;
      ot.seq = 1;
      ot.heads = Q_HEADS;
      ot.dim = HEAD_DIM;
      ot.seq_stride = Q_HEADS * HEAD_DIM;
      ot.head_stride = HEAD_DIM;
      TRY(heed_eviction_loop_step(loop, layer, &qt, &kt, &vt, &ot, exec, NULL, NULL));
      /* o now holds this layer's attention output for the token. */
    }
  }
  TRY(heed_kv_cache_bytes_used(cache, &used));
  TRY(heed_kv_cache_length(cache, 0, 0, &len));
  positions = malloc((size_t)(len > 0 ? len : 1) * sizeof(int64_t));
  if (positions == NULL) goto done;
  TRY(heed_kv_cache_positions(cache, 0, 0, positions, len));
  pos = len > 0 ? positions[0] : -1;
  printf("after %d new tokens: %lld entries per head (oldest kept position %lld), %lu bytes\n",
         NEW_TOKENS, (long long)len, (long long)pos, (unsigned long)used);
  ok = budget == 0 || len <= budget;
  if (!ok) fprintf(stderr, "a head holds more than the budget\n");

done:
  heed_eviction_loop_destroy(loop);
  heed_kv_cache_destroy(cache);
  heed_thread_pool_destroy(pool);
  free(q);
  free(k);
  free(v);
  free(o);
  free(positions);
  return ok ? 0 : 1;
}
