/* heed policy plug-ins in C: a score callback plus user data.
 *
 * A plug-in fills one score per cache entry of one (layer, KV head), higher = keep; heed turns
 * the scores into a keep-set (top-k, with the protection the host configures) and compacts the
 * cache. The host wraps the callback in heed::callback_policy (heed/policy/callback_policy.hpp).
 *
 *   static heed_status my_score(void* user, const heed_policy_head* h, float* out) {
 *     for (int64_t j = 0; j < h->length; ++j) out[j] = h->accumulated ? h->accumulated[j] : 0.f;
 *     return HEED_STATUS_OK;
 *   }
 */
#ifndef HEED_C_HEED_POLICY_H_
#define HEED_C_HEED_POLICY_H_

#include <stdint.h>

#include "heed/c/heed.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything a callback may read about one (layer, KV head). Pointers are valid during the call. */
typedef struct heed_policy_head {
  int layer, head;        /* which cache slot */
  int n_layers, kv_heads; /* cache shape */
  int q_heads;            /* query heads of the model (group = q_heads / kv_heads) */
  int64_t length;         /* entries in this slot */
  int64_t budget;         /* the nominal budget of this eviction */
  int64_t step;           /* tokens seen so far by this layer */
  int64_t head_dim;
  heed_dtype dtype;         /* type of keys and values: the storage type (F32 copies for a head
                               of a tiered cache that holds demoted entries) */
  const void* keys;         /* [length][head_dim], rows contiguous */
  const void* values;       /* [length][head_dim] */
  const int64_t* positions; /* [length] original positions, ascending */
  const float* accumulated; /* [length] decode column mass (score channel 0) or NULL */
  const float* queries;     /* [n_queries][q_heads][head_dim] recent queries or NULL */
  int64_t n_queries;
} heed_policy_head;

/* Writes out[0 .. head->length); returns HEED_STATUS_OK or an error that aborts the eviction. */
typedef heed_status (*heed_policy_score_fn)(void* user, const heed_policy_head* head, float* out);

/* A write gate (optional): what it reads about the new token and one (layer, KV head). A step of
 * n tokens asks about each token in turn. Pointers are valid during the call. */
typedef struct heed_admit_head {
  int layer, head;        /* which cache slot */
  int n_layers, kv_heads; /* cache shape */
  int q_heads;
  int64_t length;   /* entries in this slot now */
  int64_t budget;   /* entries per head the loop keeps (0: no limit) */
  int64_t step;     /* tokens seen so far by this layer */
  int64_t position; /* the token's position (kept whether or not it enters) */
  int64_t head_dim;
  heed_dtype dtype;  /* type of key and value: the step's input type */
  const void* key;   /* [head_dim] (a quantized row for a quantized input) */
  const void* value; /* [head_dim] */
} heed_admit_head;

/* Sets *admit to 1 to let the token into this KV head, 0 to keep it out (it is then never
 * attended); returns HEED_STATUS_OK or an error that aborts the step. */
typedef heed_status (*heed_policy_admit_fn)(void* user, const heed_admit_head* head, int* admit);

#ifdef __cplusplus
}
#endif

#endif /* HEED_C_HEED_POLICY_H_ */
