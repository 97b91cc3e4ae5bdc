// The policy contract: what a KV-eviction policy declares, reads and returns.
//
// A policy is a plain type with these members (see docs/policies.md for a worked example):
//
//   const char* name() const noexcept;
//   score_needs needs() const noexcept;                      // what the loop must provide
//   selection_spec selection(std::int64_t budget) const noexcept;  // how scores become keep-sets
//   std::size_t score_workspace_size(const policy_input& in) const noexcept;  // may be 0
//   status score(const policy_input& in, int head, float* out, workspace ws) noexcept;
//   std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept;
//     // optional: this head's own target (DuoAttention: retrieval heads keep everything)
//   status admit(const admission_input& in, int head, bool& admitted) noexcept;
//     // optional write gate: does the step's new token enter KV head `head` at all
//     // (policy/admission.hpp; docs/hooks.md, "Admission")
//
// score() writes one score per cache entry of KV head `head` of layer in.layer (out[0 .. len)),
// higher = keep. It must not allocate. Everything it may read is in policy_input: the cache (keys,
// values, positions, the score channels the kernel accumulated), recent queries, the latest
// output and probabilities. policy_base supplies defaults for everything but name() and score().
// policy_traits.hpp checks this contract at compile time where a policy enters the library
// (any_policy, evict_layer, the wrappers): a missing member, a wrong signature or a member that
// is not noexcept fails to compile with a message naming it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/attention/logit_settings.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/core/workspace.hpp"
#include "heed/policy/select.hpp"
#include "heed/scoring/column_accumulator.hpp"

namespace heed {

enum class select_kind : int {
  top_k = 0,         // the best `budget` entries per head
  global_top_k = 1,  // AdaKV: the layer's total budget across heads, with a per-head floor
  threshold = 2,     // DMS-style: scores >= tau, clamped to [min_keep, budget]
  coverage = 3,      // the smallest set reaching gamma of the score mass, clamped likewise
};

struct selection_spec {
  select_kind kind = select_kind::top_k;
  protect_spec protect{};       // sinks and recent entries always kept (within the budget)
  double floor_fraction = 0.2;  // global_top_k: each head gets at least this share
  float tau = 0.f;              // threshold
  double gamma = 0.9;           // coverage
  std::int64_t min_keep = 0;    // threshold / coverage lower clamp
};

// What the eviction loop provides to a policy. The kernel pays only for what is asked.
struct score_needs {
  int channels = 0;                     // score channels the policy uses in the cache
  bool column_mass = false;             // decode: fold probabilities into channel 0
  column_accumulate_spec accumulate{};  // how (H2O sum, A2SF decay, TOVA last)
  std::int64_t query_window = 0;        // keep the last n queries of each layer
  bool last_output = false;             // keep the latest attention output of each layer
  bool last_probs = false;              // keep the latest probabilities of each layer
  // score() reads keys(head) / values(head). A paged cache has no single view of a head of more
  // than one page; the loop then copies the head into contiguous scratch before score() (only
  // for policies that set this: without it such a head's views have a null data pointer).
  bool kv_rows = false;
};

// Everything score() may read, for one layer.
struct policy_input {
  const kv_cache* cache = nullptr;
  int layer = 0;
  int n_layers = 1;
  int q_heads = 0;          // Hq; the group of KV head h is h*G .. h*G+G-1
  std::int64_t budget = 0;  // entries per head this eviction keeps
  std::int64_t step = 0;    // tokens seen so far by this layer
  std::uint64_t seed = 0;   // for seeded policies (Random)
  // The model's logit settings (the loop's eviction_config; per-head arrays [Hq]): policies that
  // recompute probabilities (SnapKV's window) use them, so they see the kernel's logits.
  logit_settings logits;
  tensor_view queries;                // [n, Hq, d] f32, the most recent n queries (seq 0: none)
  tensor_view last_output;            // [1, Hq, d] f32 latest output (seq 0: none)
  const float* last_probs = nullptr;  // [Hq][last_probs_stride] latest probabilities
  std::int64_t last_probs_stride = 0;

  int kv_heads() const noexcept { return cache->kv_heads(); }
  int group() const noexcept { return q_heads / cache->kv_heads(); }
  std::int64_t length(int head) const noexcept { return cache->length(layer, head); }
  const std::int64_t* positions(int head) const noexcept { return cache->positions(layer, head); }
  tensor_view keys(int head) const noexcept {
    return head == gathered_head ? gathered_keys : cache->keys(layer, head);
  }
  tensor_view values(int head) const noexcept {
    return head == gathered_head ? gathered_values : cache->values(layer, head);
  }
  // Set by the eviction code for a paged head it copied out (score_needs::kv_rows).
  int gathered_head = -1;
  tensor_view gathered_keys, gathered_values;
  const float* channel(int head, int c) const noexcept { return cache->scores(layer, head, c); }
};

// What a write gate (admit()) reads: one new token of one layer, before it enters the cache. The
// eviction loop asks for each KV head whether the token enters it; a step of n tokens is admitted
// token by token (each sees the cache as the earlier ones left it).
struct admission_input {
  const kv_cache* cache = nullptr;
  int layer = 0;
  int n_layers = 1;
  int q_heads = 0;
  std::int64_t budget = 0;  // entries per head this layer keeps (0: no limit)
  std::int64_t step = 0;    // tokens seen so far by this layer (before this one)
  tensor_view keys;         // [1, kv_heads, d] the new token's key rows (step()'s k)
  tensor_view values;       // [1, kv_heads, d] its value rows

  int kv_heads() const noexcept { return cache->kv_heads(); }
  std::int64_t length(int head) const noexcept { return cache->length(layer, head); }
  // The position the token gets in KV head `head` (kept whether or not it is admitted).
  std::int64_t position(int head) const noexcept { return cache->appended(layer, head); }
};

// Defaults for the optional members. Derive with CRTP: struct my_policy : policy_base<my_policy>.
template <class Derived>
struct policy_base {
  score_needs needs() const noexcept { return {}; }
  selection_spec selection(std::int64_t) const noexcept { return {}; }
  std::size_t score_workspace_size(const policy_input&) const noexcept { return 0; }
  std::int64_t head_budget(const policy_input&, int, std::int64_t target) const noexcept {
    return target;
  }
  // The write gate: every token enters. A policy that does not declare its own admit() keeps this
  // one, which the eviction loop never calls (policy_traits.hpp, policy_gates: zero cost).
  status admit(const admission_input&, int, bool& admitted) noexcept {
    admitted = true;
    return status::ok;
  }
};

// A base for policies that score from the cached rows alone (KNorm, KeyDiff, leverage): asks the
// loop for the rows (score_needs::kv_rows) and keeps n_sink sinks; top-k selection.
template <class Derived>
struct rows_policy_base : policy_base<Derived> {
  std::int64_t n_sink = 0;
  score_needs needs() const noexcept {
    score_needs n;
    n.kv_rows = true;
    return n;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    return s;
  }
};

}  // namespace heed
