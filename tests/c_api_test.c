/* Tests the C API (heed/c/heed.h) from C99: dense attention on small problems against a naive
 * double-precision implementation written here, an external executor, the decode probability
 * tap, and status codes for bad input. Exits non-zero on failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heed/c/heed.h"
#include "heed/c/heed_policy.h"

static int g_failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

/* ---- deterministic random numbers (xorshift64*) ---- */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) { /* in [-1, 1) */
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return (float)((double)((g_rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* bf16 storage: round to nearest even, and back. */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static double from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ---- the naive reference ---- */
typedef struct problem {
  int64_t lq, lk, hq, hkv, d;
  int causal;
  int64_t q_offset; /* already resolved (>= 0) */
  int64_t window_left;
  double scale, softcap;
  const float* alibi;    /* [hq] or NULL */
  const float* sinks;    /* [hq] or NULL */
  const float* ssmax;    /* [hq] or NULL: logits * ssmax[h] * log(n) */
  const float* key_bias; /* [hq][key_bias_len] or NULL */
  int64_t key_bias_len;
} problem;

/* q, o: [lq, hq, d]; k, v given as element accessors through layout. kv is [hkv, lk, d]
 * (head-major) when kv_head_major, else [lk, hkv, d]; kv values already decoded to double. */
static void naive_attention(const problem* pb, const double* q, const double* k, const double* v,
                            int kv_head_major, double* o, double* lse, double* entropy,
                            double* probs /* [hq, lk] for row 0, or NULL */) {
  int64_t i, h, j, c;
  double* s = (double*)malloc(sizeof(double) * (size_t)pb->lk);
  for (h = 0; h < pb->hq; ++h) {
    const int64_t kh = h / (pb->hq / pb->hkv);
    for (i = 0; i < pb->lq; ++i) {
      const int64_t qpos = pb->q_offset + i;
      double m = -INFINITY, den = 0.0, t = 0.0;
      for (j = 0; j < pb->lk; ++j) {
        const double* kr =
            kv_head_major ? k + (kh * pb->lk + j) * pb->d : k + (j * pb->hkv + kh) * pb->d;
        double dot = 0.0;
        int keep = 1;
        for (c = 0; c < pb->d; ++c) dot += q[(i * pb->hq + h) * pb->d + c] * kr[c];
        dot *= pb->scale;
        if (pb->ssmax) {
          const int64_t n = pb->causal ? (qpos + 1 < pb->lk ? qpos + 1 : pb->lk) : pb->lk;
          dot *= pb->ssmax[h] * log((double)n);
        }
        if (pb->alibi) dot -= pb->alibi[h] * (double)(qpos - j);
        if (pb->key_bias && j < pb->key_bias_len) dot += pb->key_bias[h * pb->key_bias_len + j];
        if (pb->softcap > 0.0) dot = pb->softcap * tanh(dot / pb->softcap);
        if (pb->causal && j > qpos) keep = 0;
        if (pb->window_left >= 0 && qpos - j > pb->window_left) keep = 0;
        s[j] = keep ? dot : -INFINITY;
        if (s[j] > m) m = s[j];
      }
      if (pb->sinks && pb->sinks[h] > m) m = pb->sinks[h];
      for (j = 0; j < pb->lk; ++j) {
        if (s[j] == -INFINITY) continue;
        den += exp(s[j] - m);
        t += exp(s[j] - m) * s[j];
      }
      if (pb->sinks) den += exp(pb->sinks[h] - m);
      for (c = 0; c < pb->d; ++c) o[(i * pb->hq + h) * pb->d + c] = 0.0;
      for (j = 0; j < pb->lk; ++j) {
        const double* vr =
            kv_head_major ? v + (kh * pb->lk + j) * pb->d : v + (j * pb->hkv + kh) * pb->d;
        const double p = s[j] == -INFINITY ? 0.0 : exp(s[j] - m) / den;
        if (probs && i == 0) probs[h * pb->lk + j] = p;
        for (c = 0; c < pb->d; ++c) o[(i * pb->hq + h) * pb->d + c] += p * vr[c];
      }
      if (lse) lse[h * pb->lq + i] = m + log(den);
      if (entropy) entropy[h * pb->lq + i] = m + log(den) - t / den;
    }
  }
  free(s);
}

static double max_abs_diff_f(const float* a, const double* b, int64_t n) {
  double e = 0.0;
  int64_t i;
  for (i = 0; i < n; ++i) {
    const double x = fabs((double)a[i] - b[i]);
    if (!(x <= e)) e = x; /* NaN propagates as a failure */
  }
  return e;
}

/* ---- an external "executor": runs tasks serially but reports two thread indices ---- */
static int g_parallel_calls = 0;
static void fake_parallel_for(void* ctx, int64_t n, void (*task)(void*, int64_t, int), void* arg) {
  int64_t i;
  (void)ctx;
  ++g_parallel_calls;
  for (i = 0; i < n; ++i) task(arg, i, (int)(i & 1));
}

/* ---- the probability tap ---- */
typedef struct tap_state {
  int64_t hq, lk;
  double* probs; /* [hq, lk] */
  int64_t calls;
} tap_state;
static void record_probs(void* user, int q_head, int64_t key_begin, const float* p, int64_t n) {
  tap_state* st = (tap_state*)user;
  int64_t j;
  ++st->calls;
  for (j = 0; j < n; ++j) st->probs[q_head * st->lk + key_begin + j] += p[j];
}

static heed_tensor tensor(const void* data, heed_dtype t, int64_t seq, int64_t heads, int64_t dim,
                          int head_major) {
  heed_tensor v;
  v.data = data;
  v.dtype = t;
  v.seq = seq;
  v.heads = heads;
  v.dim = dim;
  v.seq_stride = head_major ? dim : heads * dim;
  v.head_stride = head_major ? seq * dim : dim;
  return v;
}

/* A view of q8 rows (docs/quantization.md: d int8 values, then one f16 scale per 32): strides
 * count bytes. */
static heed_tensor tensor_q8(const void* data, int64_t seq, int64_t heads, int64_t dim,
                             int head_major) {
  const int64_t rb = dim + 2 * (dim / 32);
  heed_tensor v = tensor(data, HEED_DTYPE_Q8, seq, heads, dim, head_major);
  v.seq_stride = head_major ? rb : heads * rb;
  v.head_stride = head_major ? seq * rb : rb;
  return v;
}

/* Rows of d values that are multiples of 1/128 in [-127/128, 127/128] as q8 rows with every
 * scale 2^-7 (f16 bits 0x2000), written by the format's layout alone. */
static void write_q8_rows(const float* x, int64_t rows, int64_t d, unsigned char* out) {
  const int64_t rb = d + 2 * (d / 32);
  int64_t r, c;
  for (r = 0; r < rows; ++r) {
    unsigned char* row = out + r * rb;
    for (c = 0; c < d; ++c) {
      const signed char q = (signed char)lrintf(x[r * d + c] * 128.f);
      memcpy(row + c, &q, 1);
    }
    for (c = 0; c < d / 32; ++c) {
      const uint16_t half = 0x2000;
      memcpy(row + d + 2 * c, &half, 2);
    }
  }
}

/* Runs one case; kv selects the K/V storage: 0 f32, 1 bf16, 2 q8 (head_dim a multiple of 32). */
static void run_case(const char* name, problem pb, int kv, int kv_head_major, int use_exec,
                     int check_stats, int check_probs) {
  const int kv_bf16 = kv == 1, kv_q8 = kv == 2;
  const int64_t nq = pb.lq * pb.hq * pb.d, nkv = pb.lk * pb.hkv * pb.d;
  float* q = (float*)malloc(sizeof(float) * (size_t)nq);
  float* o = (float*)malloc(sizeof(float) * (size_t)nq);
  float* kf = (float*)malloc(sizeof(float) * (size_t)nkv);
  float* vf = (float*)malloc(sizeof(float) * (size_t)nkv);
  uint16_t* kb = (uint16_t*)malloc(sizeof(uint16_t) * (size_t)nkv);
  uint16_t* vb = (uint16_t*)malloc(sizeof(uint16_t) * (size_t)nkv);
  unsigned char* kq = (unsigned char*)malloc((size_t)(nkv + nkv / 16));
  unsigned char* vq = (unsigned char*)malloc((size_t)(nkv + nkv / 16));
  double* qd = (double*)malloc(sizeof(double) * (size_t)nq);
  double* kd = (double*)malloc(sizeof(double) * (size_t)nkv);
  double* vd = (double*)malloc(sizeof(double) * (size_t)nkv);
  double* od = (double*)malloc(sizeof(double) * (size_t)nq);
  float* lse = (float*)malloc(sizeof(float) * (size_t)(pb.hq * pb.lq));
  float* ent = (float*)malloc(sizeof(float) * (size_t)(pb.hq * pb.lq));
  double* lsed = (double*)malloc(sizeof(double) * (size_t)(pb.hq * pb.lq));
  double* entd = (double*)malloc(sizeof(double) * (size_t)(pb.hq * pb.lq));
  double* probs_ref = (double*)calloc((size_t)(pb.hq * pb.lk), sizeof(double));
  double* probs_got = (double*)calloc((size_t)(pb.hq * pb.lk), sizeof(double));
  tap_state tap;
  heed_dense_params p;
  heed_executor ex;
  heed_status s;
  size_t ws_size;
  void* ws;
  int64_t i;
  double err;

  for (i = 0; i < nq; ++i) {
    q[i] = uniform();
    /* Decode over q8 keys reads the query quantized to q8 (groups of 32): multiples of 1/128 with
     * a 127/128 in every group are the values it holds exactly (scale 1/128). */
    if (kv_q8 && pb.lq == 1)
      q[i] = i % 32 == 0 ? 127.f / 128.f : (float)lrintf(q[i] * 127.f) / 128.f;
    qd[i] = q[i];
    o[i] = NAN;
  }
  for (i = 0; i < nkv; ++i) {
    kf[i] = uniform();
    vf[i] = uniform();
    if (kv_q8) { /* the values q8 holds exactly: multiples of 1/128 */
      kf[i] = (float)lrintf(kf[i] * 127.f) / 128.f;
      vf[i] = (float)lrintf(vf[i] * 127.f) / 128.f;
    }
    kb[i] = to_bf16(kf[i]);
    vb[i] = to_bf16(vf[i]);
    kd[i] = kv_bf16 ? from_bf16(kb[i]) : kf[i];
    vd[i] = kv_bf16 ? from_bf16(vb[i]) : vf[i];
  }

  if (kv_q8) {
    write_q8_rows(kf, pb.lk * pb.hkv, pb.d, kq);
    write_q8_rows(vf, pb.lk * pb.hkv, pb.d, vq);
  }

  heed_dense_params_init(&p);
  p.q = tensor(q, HEED_DTYPE_F32, pb.lq, pb.hq, pb.d, 0);
  p.k = kv_bf16 ? tensor(kb, HEED_DTYPE_BF16, pb.lk, pb.hkv, pb.d, kv_head_major)
                : tensor(kf, HEED_DTYPE_F32, pb.lk, pb.hkv, pb.d, kv_head_major);
  p.v = kv_bf16 ? tensor(vb, HEED_DTYPE_BF16, pb.lk, pb.hkv, pb.d, kv_head_major)
                : tensor(vf, HEED_DTYPE_F32, pb.lk, pb.hkv, pb.d, kv_head_major);
  if (kv_q8) {
    p.k = tensor_q8(kq, pb.lk, pb.hkv, pb.d, kv_head_major);
    p.v = tensor_q8(vq, pb.lk, pb.hkv, pb.d, kv_head_major);
  }
  {
    heed_tensor ot = tensor(o, HEED_DTYPE_F32, pb.lq, pb.hq, pb.d, 0);
    p.o.data = o;
    p.o.dtype = ot.dtype;
    p.o.seq = ot.seq;
    p.o.heads = ot.heads;
    p.o.dim = ot.dim;
    p.o.seq_stride = ot.seq_stride;
    p.o.head_stride = ot.head_stride;
  }
  p.scale = (float)pb.scale;
  p.causal = pb.causal;
  p.q_offset = pb.q_offset;
  p.window_left = pb.window_left;
  p.softcap = (float)pb.softcap;
  p.alibi_slopes = pb.alibi;
  p.sink_logits = pb.sinks;
  p.ssmax = pb.ssmax;
  p.key_bias = pb.key_bias;
  p.key_bias_len = pb.key_bias_len;
  if (check_stats) {
    p.lse = lse;
    p.entropy = ent;
  }
  if (check_probs) {
    tap.hq = pb.hq;
    tap.lk = pb.lk;
    tap.probs = probs_got;
    tap.calls = 0;
    p.prob_tap = record_probs;
    p.prob_tap_user = &tap;
  }
  ex.concurrency = 2;
  ex.parallel_for = fake_parallel_for;
  ex.ctx = NULL;

  CHECK(heed_dense_can_implement(&p) == HEED_STATUS_OK);
  ws_size = heed_dense_workspace_size(&p, use_exec ? ex.concurrency : 1);
  ws = malloc(ws_size ? ws_size : 1);
  CHECK(ws_size > 0);
  s = heed_dense_attention(&p, ws, ws_size, use_exec ? &ex : NULL);
  if (s != HEED_STATUS_OK) {
    fprintf(stderr, "%s: heed_dense_attention returned %s\n", name, heed_status_string(s));
    ++g_failures;
  }

  naive_attention(&pb, qd, kd, vd, kv_head_major, od, lsed, entd, check_probs ? probs_ref : NULL);
  err = max_abs_diff_f(o, od, nq);
  printf("%-28s max |o - ref| = %.3g", name, err);
  CHECK(err < 2e-4);
  if (check_stats) {
    const double e_lse = max_abs_diff_f(lse, lsed, pb.hq * pb.lq);
    printf("  lse %.3g", e_lse);
    CHECK(e_lse < 2e-4);
    if (!pb.sinks) {
      const double e_ent = max_abs_diff_f(ent, entd, pb.hq * pb.lq);
      printf("  entropy %.3g", e_ent);
      CHECK(e_ent < 1e-3);
    }
  }
  if (check_probs) {
    double e_p = 0.0;
    for (i = 0; i < pb.hq * pb.lk; ++i) {
      const double x = fabs(probs_got[i] - probs_ref[i]);
      if (!(x <= e_p)) e_p = x;
    }
    printf("  probs %.3g (%ld tap calls)", e_p, (long)tap.calls);
    CHECK(tap.calls > 0);
    CHECK(e_p < 1e-5);
  }
  printf("\n");

  free(ws);
  free(q);
  free(o);
  free(kf);
  free(vf);
  free(kb);
  free(vb);
  free(kq);
  free(vq);
  free(qd);
  free(kd);
  free(vd);
  free(od);
  free(lse);
  free(ent);
  free(lsed);
  free(entd);
  free(probs_ref);
  free(probs_got);
}

static void test_bad_input(void) {
  float q[4 * 2 * 8], k[4 * 1 * 8], v[4 * 1 * 8], o[4 * 2 * 8];
  char ws[64];
  heed_dense_params p;
  heed_executor bad_ex;
  size_t need;
  memset(q, 0, sizeof q);
  memset(k, 0, sizeof k);
  memset(v, 0, sizeof v);
  heed_dense_params_init(&p);
  p.q = tensor(q, HEED_DTYPE_F32, 4, 2, 8, 0);
  p.k = tensor(k, HEED_DTYPE_F32, 4, 1, 8, 0);
  p.v = tensor(v, HEED_DTYPE_F32, 4, 1, 8, 0);
  p.o.data = o;
  p.o.dtype = HEED_DTYPE_F32;
  p.o.seq = 4;
  p.o.heads = 2;
  p.o.dim = 8;
  p.o.seq_stride = 16;
  p.o.head_stride = 8;

  CHECK(heed_dense_attention(NULL, NULL, 0, NULL) == HEED_STATUS_NULL_POINTER);
  CHECK(heed_dense_can_implement(NULL) == HEED_STATUS_NULL_POINTER);
  CHECK(heed_dense_workspace_size(NULL, 1) == 0);
  CHECK(heed_dense_workspace_size(&p, 0) == 0);
  need = heed_dense_workspace_size(&p, 1);
  CHECK(need > 0);
  CHECK(heed_dense_attention(&p, NULL, 0, NULL) == HEED_STATUS_WORKSPACE_TOO_SMALL);
  if (need <= sizeof ws) CHECK(heed_dense_attention(&p, ws, sizeof ws, NULL) == HEED_STATUS_OK);

  /* Executor without parallel_for, or with no threads. */
  bad_ex.concurrency = 1;
  bad_ex.parallel_for = NULL;
  bad_ex.ctx = NULL;
  CHECK(heed_dense_attention(&p, ws, sizeof ws, &bad_ex) == HEED_STATUS_NULL_POINTER);
  bad_ex.parallel_for = fake_parallel_for;
  bad_ex.concurrency = 0;
  CHECK(heed_dense_attention(&p, ws, sizeof ws, &bad_ex) == HEED_STATUS_INVALID_ARGUMENT);

  {
    heed_dense_params b = p;
    b.k.data = NULL;
    CHECK(heed_dense_attention(&b, ws, sizeof ws, NULL) == HEED_STATUS_NULL_POINTER);
  }
  {
    heed_dense_params b = p;
    b.q.seq = 0;
    b.o.seq = 0;
    CHECK(heed_dense_can_implement(&b) == HEED_STATUS_INVALID_ARGUMENT);
    CHECK(heed_dense_workspace_size(&b, 1) == 0);
  }
  {
    heed_dense_params b = p; /* Hq = 3 is not a multiple of Hkv = 2 (views stay in bounds) */
    b.q.heads = b.o.heads = 3;
    b.q.seq = b.o.seq = 2;
    b.q.seq_stride = b.o.seq_stride = 24;
    b.k.heads = b.v.heads = 2;
    b.k.seq = b.v.seq = 2;
    b.k.seq_stride = b.v.seq_stride = 16;
    CHECK(heed_dense_can_implement(&b) == HEED_STATUS_SHAPE_MISMATCH);
  }
  {
    heed_dense_params b = p;
    b.q.dtype = HEED_DTYPE_BF16;
    CHECK(heed_dense_can_implement(&b) == HEED_STATUS_UNSUPPORTED_DTYPE);
    b.q.dtype = (heed_dtype)42;
    CHECK(heed_dense_can_implement(&b) != HEED_STATUS_OK);
  }
  {
    heed_dense_params b = p;
    b.k.seq_stride = 4; /* rows overlap */
    CHECK(heed_dense_can_implement(&b) == HEED_STATUS_INVALID_STRIDE);
  }
  {
    heed_dense_params b = p;
    b.k.dim = 0;
    CHECK(heed_dense_can_implement(&b) != HEED_STATUS_OK);
  }
}

int main(void) {
  static const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  static const float sinks[4] = {0.3f, -1.0f, 2.0f, 0.0f};
  static const float ssmax[4] = {0.4f, 0.3f, 0.5f, 0.35f};
  static const float zero_tuning[4] = {-1.2f, 0.7f, 0.0f, -0.4f}; /* log(gamma) on key 0 */
  problem pb;
  const char* v = heed_version();

  printf("heed %s (%d), isa %s\n", v, heed_version_number(), heed_isa_name());
  CHECK(v != NULL && strchr(v, '.') != NULL);
  CHECK(heed_version_number() >= 0);
  CHECK(strcmp(heed_status_string(HEED_STATUS_OK), "ok") == 0);
  CHECK(strcmp(heed_status_string(HEED_STATUS_WORKSPACE_TOO_SMALL), "workspace too small") == 0);
  CHECK(heed_status_string((heed_status)1234) != NULL);

  /* Causal prefill, GQA 4:2, head_dim 64, f32 K/V, LSE + entropy, serial. */
  memset(&pb, 0, sizeof pb);
  pb.lq = 37;
  pb.lk = 37;
  pb.hq = 4;
  pb.hkv = 2;
  pb.d = 64;
  pb.causal = 1;
  pb.q_offset = 0;
  pb.window_left = -1;
  pb.scale = 1.0 / sqrt(64.0);
  run_case("prefill causal f32", pb, 0, 0, 0, 1, 0);

  /* Non-causal, more keys than queries. */
  pb.causal = 0;
  pb.lq = 10;
  pb.lk = 23;
  run_case("prefill non-causal f32", pb, 0, 1, 1, 1, 0);
  pb.causal = 1;
  pb.lq = pb.lk = 37;

  /* Same through the external executor, bf16 K/V laid out [Hkv, Lk, d], head_dim 80. */
  pb.d = 80;
  pb.scale = 1.0 / sqrt(80.0);
  run_case("prefill causal bf16 exec", pb, 1, 1, 1, 1, 0);

  /* Chunked prefill: the last 9 of 50 positions, head_dim 24 (generic path), MQA. */
  pb.lq = 9;
  pb.lk = 50;
  pb.hq = 4;
  pb.hkv = 1;
  pb.d = 24;
  pb.q_offset = 41;
  pb.scale = 0.3;
  run_case("chunked prefill d=24 MQA", pb, 0, 0, 1, 1, 0);

  /* Decode with the probability tap, bf16 K/V, executor. */
  pb.lq = 1;
  pb.lk = 300;
  pb.hq = 4;
  pb.hkv = 2;
  pb.d = 128;
  pb.q_offset = 299;
  pb.scale = 1.0 / sqrt(128.0);
  run_case("decode bf16 tap exec", pb, 1, 0, 1, 1, 1);

  /* Built-in variants: sliding window + softcap + ALiBi + sinks, prefill and decode. */
  pb.lq = 20;
  pb.lk = 33;
  pb.d = 64;
  pb.q_offset = 13;
  pb.window_left = 7;
  pb.softcap = 5.0;
  pb.scale = 0.9;
  pb.alibi = slopes;
  pb.sinks = sinks;
  run_case("variants prefill", pb, 0, 0, 1, 1, 0);
  pb.lq = 1;
  pb.q_offset = 32;
  run_case("variants decode", pb, 0, 1, 1, 1, 0);

  /* SSMax and a ZeroTuning bias on key 0 with the variants above. */
  pb.ssmax = ssmax;
  pb.key_bias = zero_tuning;
  pb.key_bias_len = 1;
  run_case("ssmax zero-tuning decode", pb, 0, 0, 1, 1, 0);
  pb.lq = 20;
  pb.q_offset = 13;
  run_case("ssmax zero-tuning prefill", pb, 0, 1, 1, 1, 0);

  /* q8 K/V (rows written by the documented layout), decode and prefill, both layouts. */
  pb.ssmax = NULL;
  pb.key_bias = NULL;
  pb.key_bias_len = 0;
  pb.alibi = NULL;
  pb.sinks = NULL;
  pb.softcap = 0.0;
  pb.window_left = -1;
  pb.lq = 1;
  pb.lk = 200;
  pb.q_offset = 199;
  pb.d = 128;
  pb.scale = 1.0 / sqrt(128.0);
  run_case("decode q8 tap exec", pb, 2, 0, 1, 1, 1);
  run_case("decode q8 head-major", pb, 2, 1, 0, 1, 0);
  /* The same logits in f32 instead of integer dot products (AVX-512 VNNI CPUs). */
  printf("integer dot products active: %d\n", heed_integer_dot_active());
  CHECK(heed_set_integer_dot(0) == 1);
  CHECK(heed_integer_dot_active() == 0);
  run_case("decode q8 f32 logits", pb, 2, 1, 1, 1, 0);
  CHECK(heed_set_integer_dot(1) == 0);
  pb.lq = 40;
  pb.lk = 90;
  pb.q_offset = 50;
  pb.d = 64;
  pb.scale = 0.125;
  run_case("prefill q8 exec", pb, 2, 1, 1, 1, 0);

  test_bad_input();
  CHECK(g_parallel_calls > 0);

  if (g_failures) {
    fprintf(stderr, "c_api_test: %d check(s) failed\n", g_failures);
    return 1;
  }
  printf("c_api_test: all checks passed\n");
  return 0;
}
