/* heed C API: the compiled dense attention kernel (library heed::heed) callable from C99.
 *
 * Mirrors the C++ API of heed/attention/dense_dispatch.hpp and heed/attention/params.hpp:
 *
 *   heed_dense_params p;
 *   heed_dense_params_init(&p);            // C++ defaults: causal, q_offset = Lk - Lq, no window
 *   p.q = ...; p.k = ...; p.v = ...; p.o = ...;
 *   size_t n = heed_dense_workspace_size(&p, 1);
 *   void* ws = malloc(n);
 *   heed_status s = heed_dense_attention(&p, ws, n, NULL);   // NULL executor = serial
 *   if (s != HEED_STATUS_OK) fprintf(stderr, "%s\n", heed_status_string(s));
 *
 * No function allocates, throws or aborts on bad input: they return a status.
 */
#ifndef HEED_C_HEED_H_
#define HEED_C_HEED_H_

#include <stddef.h>
#include <stdint.h>

/* Functions whose status must be looked at: GCC and Clang warn when a caller drops it
 * (-Wunused-result). The destroy functions are not marked: their status only reports a null
 * handle. */
#if defined(__GNUC__) || defined(__clang__)
#define HEED_NODISCARD __attribute__((warn_unused_result))
#else
#define HEED_NODISCARD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes; the same values as heed::status. */
typedef enum heed_status {
  HEED_STATUS_OK = 0,
  HEED_STATUS_NULL_POINTER = 1,         /* a required pointer is null */
  HEED_STATUS_INVALID_ARGUMENT = 2,     /* a length, count or option is out of range */
  HEED_STATUS_SHAPE_MISMATCH = 3,       /* tensors disagree on heads, seq or head_dim */
  HEED_STATUS_INVALID_STRIDE = 4,       /* strides overlap, are negative or do not fit */
  HEED_STATUS_UNSUPPORTED_DTYPE = 5,    /* e.g. a query that is not f32 */
  HEED_STATUS_UNSUPPORTED_HEAD_DIM = 6, /* only for entry points without a generic fallback */
  HEED_STATUS_UNSUPPORTED_ISA = 7,      /* an ISA not compiled in or not supported by the CPU */
  HEED_STATUS_WORKSPACE_TOO_SMALL = 8,  /* smaller than heed_dense_workspace_size() */
  HEED_STATUS_OUT_OF_MEMORY = 9         /* an owning structure could not allocate */
} heed_status;

/* Element types; the same values as heed::dtype. f16 is IEEE binary16, bf16 the upper half of
 * an f32, both stored as uint16_t. Q8 and Q4 are quantized rows with 32 values per f16 scale
 * (docs/quantization.md: int8, and int4 with an f16 offset per group), read by the dense kernel
 * in decode (one query row) as K and V. */
typedef enum heed_dtype {
  HEED_DTYPE_F32 = 0,
  HEED_DTYPE_F16 = 1,
  HEED_DTYPE_BF16 = 2,
  HEED_DTYPE_Q8 = 3,
  HEED_DTYPE_Q4 = 4
} heed_dtype;

/* A strided, non-owning view of a rank-3 tensor [seq, heads, dim] with a contiguous last
 * dimension. Strides are in elements: [seq, heads, dim] layout has seq_stride = heads * dim and
 * head_stride = dim; [heads, seq, dim] has seq_stride = dim and head_stride = seq * dim. Q8 / Q4
 * strides are in bytes, a row of dim values taking dim + dim / 16 (Q8) or dim / 2 + dim / 8 (Q4)
 * bytes. */
typedef struct heed_tensor {
  const void* data;
  heed_dtype dtype;
  int64_t seq;
  int64_t heads;
  int64_t dim;
  int64_t seq_stride;
  int64_t head_stride;
} heed_tensor;

/* The same, for the output. */
typedef struct heed_mutable_tensor {
  void* data;
  heed_dtype dtype;
  int64_t seq;
  int64_t heads;
  int64_t dim;
  int64_t seq_stride;
  int64_t head_stride;
} heed_mutable_tensor;

/* Decode-time probability tap: called with the final probabilities of query head q_head over
 * keys [key_begin, key_begin + n). Calls may come from several executor threads at once; each
 * (head, key) is reported exactly once per kernel call. */
typedef void (*heed_prob_tap_fn)(void* user, int q_head, int64_t key_begin, const float* p,
                                 int64_t n);

/* Parameters of heed_dense_attention; mirrors heed::dense_params. Initialize with
 * heed_dense_params_init(): a zero-filled struct is NOT the default (q_offset and window_left
 * default to -1 and causal to 1). */
typedef struct heed_dense_params {
  heed_tensor q;         /* [Lq, Hq, d], f32 */
  heed_tensor k;         /* [Lk, Hkv, d], f32 / f16 / bf16; Hq must be a multiple of Hkv */
  heed_tensor v;         /* [Lk, Hkv, d], same dtype as k */
  heed_mutable_tensor o; /* [Lq, Hq, d], f32 */
  float scale;           /* logit scale; 0 means 1 / sqrt(d) */
  int causal;            /* non-zero: query i (position q_offset + i) sees keys 0 .. q_offset + i */
  int64_t q_offset;      /* position of query row 0 among the keys; -1 means Lk - Lq */

  /* Optional per-row outputs (natural log units), indexed [h * row_head_stride + i]. */
  float* lse;
  float* entropy;          /* entropy of each attention row, in nats */
  int64_t row_head_stride; /* 0 means Lq */

  /* Built-in variants. */
  int64_t window_left;       /* mask keys with q_pos - k_pos > window_left; -1 = off */
  float softcap;             /* s -> softcap * tanh(s / softcap); 0 = off */
  const float* alibi_slopes; /* [Hq] or NULL: s -> s - slope[h] * (q_pos - k_pos) */
  const float* sink_logits;  /* [Hq] or NULL: a virtual key with this logit and a zero value */
  /* Row scales by n = keys under the causal limit (docs/variants.md). */
  const float* ssmax;        /* [Hq] or NULL: Scalable-Softmax, s -> s * ssmax[h] * log(n) */
  int64_t length_scale_base; /* s -> s * max(floor, log(n) / log(base)); 0 = off */
  float length_scale_floor;  /* 1 by default */
  const float* key_bias;     /* [Hq][key_bias_len] or NULL: s += bias for keys < key_bias_len */
  int64_t key_bias_len;
  int sigmoid;               /* nonzero: p = sigmoid(s + sigmoid_bias[h]), unnormalized */
  const float* sigmoid_bias; /* [Hq] or NULL (bias 0) */

  /* Decode (Lq == 1) probability tap, or NULL. */
  heed_prob_tap_fn prob_tap;
  void* prob_tap_user;
} heed_dense_params;

/* A caller-provided executor. parallel_for(ctx, n, task, arg) must call task(arg, i, thread)
 * exactly once for every i in [0, n), with thread in [0, concurrency), and return when all calls
 * are done. Two calls with the same thread index must not run at the same time. Pass NULL
 * wherever an executor is taken to run serially on the calling thread. */
typedef struct heed_executor {
  int concurrency;
  void (*parallel_for)(void* ctx, int64_t n, void (*task)(void* arg, int64_t task, int thread),
                       void* arg);
  void* ctx;
} heed_executor;

/* Sets every field to the C++ defaults (no tensors, causal, q_offset = -1, window_left = -1). */
void heed_dense_params_init(heed_dense_params* params);

/* HEED_STATUS_OK when heed_dense_attention can run these parameters (any head_dim >= 1 can). */
HEED_NODISCARD heed_status heed_dense_can_implement(const heed_dense_params* params);

/* Bytes of workspace heed_dense_attention needs with an executor of `threads` concurrency (1 for
 * the NULL executor). 0 when the parameters are invalid. */
size_t heed_dense_workspace_size(const heed_dense_params* params, int threads);

/* Runs dense (flash) attention with run-time ISA dispatch. `executor` may be NULL (serial).
 * The result does not depend on the executor's concurrency. */
HEED_NODISCARD heed_status heed_dense_attention(const heed_dense_params* params, void* workspace,
                                                size_t workspace_size,
                                                const heed_executor* executor);

/* A static, human-readable name for a status ("ok", "null pointer", ...). */
const char* heed_status_string(heed_status status);

/* The library version as "MAJOR.MINOR.PATCH", and as MAJOR * 10000 + MINOR * 100 + PATCH. */
const char* heed_version(void);
int heed_version_number(void);

/* The C ABI version: HEED_ABI_VERSION of the headers a program was compiled with, and
 * heed_abi_version() of the library it runs against; a program should refuse a library whose
 * number differs from its own. It changes (docs/c_api.md) when a struct's layout, an enum's values
 * or a function's signature or meaning changes in heed.h, heed_policy.h or heed_cache.h; new
 * functions and new enum values at the end do not change it. 1: the dense kernel, the KV cache,
 * the eviction loop and policy plug-ins. 2: tiered caches (new fields at the end of
 * heed_kv_cache_config and heed_eviction_config). */
#define HEED_ABI_VERSION 2
int heed_abi_version(void);

/* The instruction set heed_dense_attention dispatches to on this machine: "avx512", "avx2" or
 * "sse2". */
const char* heed_isa_name(void);

/* Decode over q8 keys quantizes the query to q8 and, on a CPU with AVX-512 VNNI, computes the
 * logits with 8-bit integer dot products (docs/quantization.md). heed_set_integer_dot(0) makes it
 * compute the same logits in f32 instead (they differ only in f32 rounding), 1 allows the integer
 * path again (the default); returns the previous setting. heed_integer_dot_active() is 1 when the
 * integer path is allowed and the CPU has it. */
int heed_set_integer_dot(int on);
int heed_integer_dot_active(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HEED_C_HEED_H_ */
