// A small inference engine for llama2.c checkpoints (legacy float32 format): RMSNorm, rotary
// embedding, SwiGLU, GQA. All attention goes through heed: the KV cache, the eviction loop and
// any heed policy; the matrix-vector products are Eigen's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "heed/cache/kv_cache.hpp"
#include "heed/core/executor.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/eviction_loop.hpp"

namespace llama2c {

struct config {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
      seq_len = 0;
  bool shared_classifier = true;
  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return head_dim() * n_kv_heads; }
};

// The weights, read from the checkpoint (every dimension comes from its header).
class model {
 public:
  bool load(const std::string& path, std::string* error);
  const config& cfg() const { return cfg_; }

  const float* embedding = nullptr;     // [vocab, dim]
  const float* rms_att = nullptr;       // [layers, dim]
  const float* wq = nullptr;            // [layers, dim, dim]
  const float* wk = nullptr;            // [layers, kv_dim, dim]
  const float* wv = nullptr;            // [layers, kv_dim, dim]
  const float* wo = nullptr;            // [layers, dim, dim]
  std::vector<const float*> wo_layers;  // wo of each layer (heed::output_projection::weights)
  const float* rms_ffn = nullptr;       // [layers, dim]
  const float* w1 = nullptr;            // [layers, hidden, dim]
  const float* w2 = nullptr;            // [layers, dim, hidden]
  const float* w3 = nullptr;            // [layers, hidden, dim]
  const float* rms_final = nullptr;     // [dim]
  const float* wcls = nullptr;          // [vocab, dim]

 private:
  config cfg_;
  std::vector<float> data_;
};

// The group of a quantized KV cache of this head dim: the default (32) where it divides the head
// dim, else the largest power of two from 16 down to 8 that does (stories260K's head dim of 8:
// 8); 0 for the plain types.
int kv_group(heed::dtype kv, std::int64_t head_dim);

// How a session stores its KV cache.
struct kv_options {
  heed::dtype type = heed::dtype::f32;  // storage (q8 / q4: rows of kv_group values per scale)
  std::int64_t page_rows = 0;           // > 0: a paged cache (kv_cache_config::page_rows)
  // Queries and keys rotated by the normalized Hadamard transform after RoPE (q.k unchanged;
  // quantized keys lose less to outlier channels; the head dim must be a power of two).
  bool rotate_keys = false;
  // >= 0: a tiered cache keeping this many entries per head at `type`, the others demoted to
  // low_type before any is evicted (eviction_config::high_budget).
  std::int64_t high_budget = -1;
  heed::dtype low_type = heed::dtype::q4;
  // > 0: the budget in bytes per (layer, KV head) instead of entries (eviction_config).
  std::size_t budget_bytes = 0;
};

// One sequence: its own heed KV cache and eviction loop (budget 0 = full cache).
class session {
 public:
  // Returns a heed status (a bad combination of options: invalid_argument).
  heed::status init(const model& m, heed::any_policy policy, std::int64_t budget,
                    const kv_options& kv = {});
  // Runs `token` at position `pos`; returns the logits [vocab] (valid until the next call).
  const float* forward(int token, int pos, heed::executor& ex);
  // Runs tokens[0..n) at positions pos..pos+n-1 in one pass (prefill: matrix-matrix products and
  // one heed attention call per layer over the whole chunk). Returns the logits of the last token
  // [vocab], or of every token [n, vocab] when all_logits is set (valid until the next call);
  // nullptr on error (see status()).
  const float* prefill(const int* tokens, int n, int pos, heed::executor& ex,
                       bool all_logits = false);
  heed::status status() const { return status_; }
  const heed::kv_cache& cache() const { return cache_; }
  // Records every query the layers compute (after RoPE and any rotation, as attention gets
  // them) into taps[layer], appended as [n_heads * head_dim] rows; null stops it. For
  // calibrations such as Q-Filters' (calibrate_q_filters).
  void set_query_tap(std::vector<float>* taps) { tap_ = taps; }

 private:
  const model* m_ = nullptr;
  heed::kv_cache cache_;
  bool rotate_ = false;  // queries and keys through quant::hadamard_rotate after RoPE
  heed::eviction_loop loop_;
  heed::status status_ = heed::status::ok;
  std::vector<float>* tap_ = nullptr;  // [layers] query rows, when recording
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, k_, v_, att_, logits_;
  // Prefill buffers, [n, width] row-major; grown on demand.
  std::vector<float> px_, pxb_, pxb2_, phb_, phb2_, pq_, pk_, pv_, patt_, plogits_;
};

// -log softmax(logits)[target] in double precision (the loss of one prediction, in nats).
double next_token_loss(const float* logits, int vocab, int target);

// Q-Filters for this model (heed/scoring/q_filters.hpp): runs `tokens` through a full-cache
// session in windows of the context (prefill), records every layer's queries and calibrates one
// filter per (layer, KV head) from them. filters: [layers][kv_heads][head_dim].
heed::status calibrate_q_filters(const model& m, const std::vector<int>& tokens,
                                 std::vector<float>* filters, const kv_options& kv = {});

}  // namespace llama2c
