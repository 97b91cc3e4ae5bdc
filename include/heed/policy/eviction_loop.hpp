// The eviction loop an engine calls per layer per step: evict (if the new tokens would exceed the
// budget), append, attend with the observers the policy asks for, keep the policy's inputs.
//
//   heed::kv_cache cache;            cache.init({layers, kv_heads, d, heed::dtype::f16});
//   heed::eviction_loop loop;        loop.init(&cache, heed::h2o_policy{}, {.budget = 256}, Hq);
//   for each token, for each layer:  loop.step(layer, q, k, v, o, executor);
//
// Budget: every (layer, KV head) holds at most `budget` entries after each step (layer_budgets
// overrides it per layer). When the new tokens would push a head past budget + slack, the policy
// scores the current entries and evicts first (decode: the head ends at exactly `budget`
// after the append); a chunk longer than the budget is attended in full and evicted after.
// A policy that needs no observer (StreamingLLM, KNorm, ...) costs nothing in the kernel.
//
// Demotion (a tiered cache, kv_cache_config::tiered, and high_budget >= 0): each head also keeps
// at most high_budget entries in its high tier; when new tokens would push it past that (plus
// slack), the policy scores the entries and the lowest-scored kept ones of the high tier are
// demoted to the low tier, before any entry is evicted. budget_bytes states the budget in bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "heed/cache/cache_attention.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"
#include "heed/policy/any_policy.hpp"
#include "heed/policy/evict.hpp"
#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"
#include "heed/scoring/observation_window.hpp"

namespace heed {

struct eviction_config {
  std::int64_t budget = 0;                  // entries per (layer, KV head); 0 = no eviction
  std::vector<std::int64_t> layer_budgets;  // optional [layers], overrides budget per layer
  std::int64_t slack = 0;  // tolerate budget + slack entries before evicting (periodic eviction)
  std::int64_t every = 0;  // also evict every N steps of a layer when over budget; 0 = off
  std::uint64_t seed = 0;  // passed to the policy (Random)
  // A tiered cache: entries per head kept in the high tier (<= the budget); the others are
  // demoted to the low tier before any entry is evicted. -1 = no demotion.
  std::int64_t high_budget = -1;
  // The budget in bytes per (layer, KV head) instead of entries (then budget must be 0 and
  // layer_budgets empty): init() sets budget to the most entries that fit, counting
  // kv_cache::entry_bytes() per entry (with high_budget: high_budget entries at entry_bytes(), the
  // rest at low_entry_bytes()). config() reports the budget it chose.
  std::size_t budget_bytes = 0;
  // The model's logit settings (scale, softcap, sink_logits: the ones cache_attention applies;
  // [Hq] arrays). The loop hands them to the kernel and to every score it recomputes (the prefill
  // column mass; policy_input::logits for the policies, e.g. SnapKV's window).
  logit_settings logits;
};

template <class Policy = any_policy>
class basic_eviction_loop {
 public:
  // The cache must outlive the loop and be initialized with at least needs().channels score
  // channels.
  status init(kv_cache* cache, Policy policy, eviction_config cfg, int q_heads) noexcept {
    if (cache == nullptr) return status::null_pointer;
    if (!cache->valid(0, 0)) return status::invalid_argument;
    if (q_heads <= 0 || q_heads % cache->kv_heads() != 0) return status::shape_mismatch;
    if (cfg.budget < 0 || cfg.slack < 0 || cfg.every < 0) return status::invalid_argument;
    HEED_RETURN_IF_ERROR(validate_cache_logits(cfg.logits));
    if (cfg.high_budget < -1 || (cfg.high_budget >= 0 && !cache->tiered()))
      return status::invalid_argument;
    if (cfg.budget_bytes > 0) {
      if (cfg.budget != 0 || !cfg.layer_budgets.empty()) return status::invalid_argument;
      const std::size_t hb = cache->entry_bytes(), lb = cache->low_entry_bytes();
      if (cfg.high_budget < 0) {
        cfg.budget = std::int64_t(cfg.budget_bytes / hb);
      } else {
        const std::size_t high = std::size_t(cfg.high_budget) * hb;
        if (high > cfg.budget_bytes) return status::invalid_argument;
        cfg.budget = cfg.high_budget + std::int64_t((cfg.budget_bytes - high) / lb);
      }
      if (cfg.budget == 0) return status::invalid_argument;  // not one entry fits
    }
    if (cfg.high_budget >= 0 && cfg.budget > 0 && cfg.high_budget > cfg.budget)
      return status::invalid_argument;
    if (!cfg.layer_budgets.empty()) {
      if (std::int64_t(cfg.layer_budgets.size()) != cache->layers())
        return status::invalid_argument;
      for (auto b : cfg.layer_budgets)
        if (b < 0) return status::invalid_argument;
    }
    // A budget the cache cannot hold is an error (a 0 budget keeps everything: no limit allowed).
    for (int l = 0; l < cache->layers(); ++l) {
      const std::int64_t b =
          cfg.layer_budgets.empty() ? cfg.budget : cfg.layer_budgets[std::size_t(l)];
      for (int h = 0; h < cache->kv_heads(); ++h) {
        const std::int64_t lim = cache->limit(l, h);
        if (lim > 0 && (b == 0 || b + cfg.slack > lim)) return status::invalid_argument;
      }
    }
    const score_needs needs = policy.needs();
    const bool gates = detail::policy_gates(policy);
    if (needs.channels > cache->config().score_channels) return status::invalid_argument;
    if (needs.column_mass && needs.channels < 1) return status::invalid_argument;
    if (needs.column_mass) HEED_RETURN_IF_ERROR(needs.accumulate.validate());
    if (needs.query_window < 0 || needs.query_window > (1 << 16)) return status::invalid_argument;
    // All or nothing: the new buffers are allocated apart; the loop changes once they all are.
    const std::size_t layers = std::size_t(cache->layers());
    const std::size_t row = std::size_t(q_heads) * std::size_t(cache->head_dim());
    std::vector<std::int64_t> steps, q_count, targets, high_targets;
    std::vector<float> queries, outputs;
    std::vector<std::uint8_t> admit;
    if (!detail::grow_vector(steps, layers) || !detail::grow_vector(q_count, layers) ||
        !detail::grow_vector(targets, std::size_t(cache->kv_heads())) ||
        !detail::grow_vector(high_targets, std::size_t(cache->kv_heads())))
      return status::out_of_memory;
    if (needs.query_window > 0 &&
        !detail::grow_vector(queries, layers * 2 * std::size_t(needs.query_window) * row))
      return status::out_of_memory;
    if (needs.last_output && !detail::grow_vector(outputs, layers * row))
      return status::out_of_memory;
    if (gates && !detail::grow_vector(admit, std::size_t(cache->kv_heads())))
      return status::out_of_memory;
    cache_ = cache;
    policy_ = std::move(policy);
    cfg_ = std::move(cfg);
    needs_ = needs;
    q_heads_ = q_heads;
    steps_ = std::move(steps);
    q_count_ = std::move(q_count);
    targets_ = std::move(targets);
    high_targets_ = std::move(high_targets);
    queries_ = std::move(queries);
    outputs_ = std::move(outputs);
    admit_ = std::move(admit);
    gates_ = gates;
    return status::ok;
  }

  const Policy& policy() const noexcept { return policy_; }
  Policy& policy() noexcept { return policy_; }
  const eviction_config& config() const noexcept { return cfg_; }
  std::int64_t budget(int layer) const noexcept {
    return cfg_.layer_budgets.empty() ? cfg_.budget : cfg_.layer_budgets[std::size_t(layer)];
  }

  // q [n, Hq, d] f32, k and v [n, Hkv, d] (any dtype), o [n, Hq, d] f32; optional lse/entropy
  // [Hq][n]. Causal over the cache. All or nothing but for one case: a step that fails (status::
  // out_of_memory included) leaves the cache and the loop as they were, except when it had
  // evicted (or demoted) before the append and then cannot have the attention's workspace or,
  // after a chunk longer than the budget, the scratch of the eviction that follows it (both sized
  // by the state after the first eviction, so not before it): that eviction then stays, the
  // append is undone, and a retry completes the step as if nothing had failed
  // (docs/allocation_faults.md).
  //
  // A policy with a write gate (admit(), policy/admission.hpp) decides for each new token and KV
  // head whether the token enters the cache: the eviction's budget check counts only the tokens
  // that enter, and the attention reads only admitted entries (a refused token is not attended,
  // not even by its own query; its position is skipped, so later tokens keep theirs). A chunk of
  // n > 1 tokens then runs as n steps of one token each (the gate of each sees the cache the
  // earlier ones left; lse / entropy keep the chunk's [Hq][n] layout); a failure in one of them
  // leaves the earlier ones done.
  status step(int layer, const tensor_view& q, const tensor_view& k, const tensor_view& v,
              const mutable_tensor_view& o, executor& ex = default_executor(), float* lse = nullptr,
              float* entropy = nullptr) noexcept {
    if constexpr (detail::may_gate<Policy>) {
      if (gates_ && k.seq > 1 && q.seq == k.seq) {
        if (cache_ == nullptr) return status::invalid_argument;
        HEED_RETURN_IF_ERROR(check_outputs(q, o));
        for (std::int64_t i = 0; i < q.seq; ++i)
          HEED_RETURN_IF_ERROR(step_impl(layer, row_of(q, i), row_of(k, i), row_of(v, i),
                                         row_of(o, i), ex, lse ? lse + i : nullptr,
                                         entropy ? entropy + i : nullptr, q.seq));
        return status::ok;
      }
    }
    return step_impl(layer, q, k, v, o, ex, lse, entropy, 0);
  }

 private:
  // Row i of a view, as a view of one row.
  template <class View>
  static View row_of(View t, std::int64_t i) noexcept {
    using T = std::conditional_t<std::is_same<View, tensor_view>::value, const unsigned char,
                                 unsigned char>;
    t.data = static_cast<T*>(t.data) + std::size_t(i) * std::size_t(t.seq_stride) *
                                           (is_quantized(t.type) ? 1 : dtype_size(t.type));
    t.seq = 1;
    return t;
  }

  // Asks the policy's gate about the step's one token for every KV head (admit_); some_refused:
  // at least one head keeps it out.
  status gate_token(int layer, const tensor_view& k, const tensor_view& v,
                    bool& some_refused) noexcept {
    HEED_RETURN_IF_ERROR(cache_->check_rows(k, v));  // the gate reads the rows
    admission_input in;
    in.cache = cache_;
    in.layer = layer;
    in.n_layers = cache_->layers();
    in.q_heads = q_heads_;
    in.budget = budget(layer);
    in.step = steps_[std::size_t(layer)];
    in.keys = k;
    in.values = v;
    some_refused = false;
    for (int h = 0; h < cache_->kv_heads(); ++h) {
      bool admitted = true;
      HEED_RETURN_IF_ERROR(policy_.admit(in, h, admitted));
      admit_[std::size_t(h)] = admitted ? 1 : 0;
      some_refused = some_refused || !admitted;
    }
    return status::ok;
  }

  // step() of one token or an ungated chunk; row_stride: the callers' lse / entropy head stride
  // (0: the chunk's own length).
  status step_impl(int layer, const tensor_view& q, const tensor_view& k, const tensor_view& v,
                   const mutable_tensor_view& o, executor& ex, float* lse, float* entropy,
                   std::int64_t row_stride) noexcept {
    if (cache_ == nullptr) return status::invalid_argument;
    if (!cache_->valid(layer, 0)) return status::invalid_argument;
    if (q.seq != k.seq || q.heads != q_heads_) return status::shape_mismatch;
    HEED_RETURN_IF_ERROR(check_outputs(q, o));  // before the append changes the cache
    const std::int64_t n = k.seq, b = budget(layer);
    const int heads = cache_->kv_heads();
    const bool prefill_mass = needs_.column_mass && n > 1;
    // Everything this step allocates comes before its first change (the eviction, which also
    // reserves the append's room, or else the append, undone when a later allocation fails).
    HEED_RETURN_IF_ERROR(reserve_chunk(layer, n, prefill_mass && lse == nullptr));
    // 0. The write gate (one token): which heads it enters. Without a gate (known at compile
    // time, or the held policy has none) every head takes every token.
    bool gated = false;
    if constexpr (detail::may_gate<Policy>) {
      if (gates_) HEED_RETURN_IF_ERROR(gate_token(layer, k, v, gated));
    }
    auto incoming = [&](int h) { return gated ? std::int64_t(admit_[std::size_t(h)]) : n; };
    // 1. Evict first when the new tokens would exceed the budget (and fit in it).
    const std::int64_t hb =
        demoting() ? std::min(cfg_.high_budget, b > 0 ? b : cfg_.high_budget) : -1;
    if ((b > 0 && n <= b) || hb >= 0) {
      bool over = false, due = false;
      for (int h = 0; h < heads; ++h) {
        const std::int64_t len = cache_->length(layer, h) + incoming(h);
        const std::int64_t high = len - cache_->low_length(layer, h);
        if (b > 0 && n <= b) {
          over = over || len > b + cfg_.slack;
          due = due || len > b;
        }
        if (hb >= 0) {
          over = over || high > hb + cfg_.slack;
          due = due || high > hb;
        }
      }
      if (cfg_.every > 0 && steps_[std::size_t(layer)] % cfg_.every == 0) over = over || due;
      if (over) {
        // The rows append() would refuse, refused before the eviction changes the cache.
        HEED_RETURN_IF_ERROR(cache_->check_rows(k, v));
        for (int h = 0; h < heads; ++h) {
          const std::int64_t len = cache_->length(layer, h);
          // A chunk longer than the budget is evicted after attending (step 4).
          targets_[std::size_t(h)] = b > 0 && n <= b ? b - incoming(h) : len;
          high_targets_[std::size_t(h)] = std::max<std::int64_t>(0, hb - incoming(h));
        }
        HEED_RETURN_IF_ERROR(evict_now(layer, n));
      }
    }
    // 2. Append and attend.
    HEED_RETURN_IF_ERROR(gated ? cache_->append_admitted(layer, k, v, admit_.data())
                               : cache_->append(layer, k, v));
    cache_attention_params p;
    p.q = q;
    p.o = o;
    p.logits() = cfg_.logits;
    p.lse = lse;
    p.entropy = entropy;
    p.row_head_stride = row_stride;
    // One token: causal or not, its query sees every entry; a head that refused it has no own
    // entry at its end (which the causal checks would look for).
    if (gated) p.causal = false;
    if (needs_.column_mass && n == 1) {
      p.accumulate_channel = 0;
      p.accumulate = needs_.accumulate;
    }
    if (prefill_mass && lse == nullptr) {  // the column mass needs each row's LSE
      p.lse = lse_.data();
      p.row_head_stride = n;
    }
    const std::size_t need = cache_attention_workspace_size(*cache_, layer, p, ex.concurrency());
    status st = need == 0 ? cache_attention_validate(*cache_, layer, p) : status::ok;
    if (st == status::ok && !detail::grow_vector(attn_ws_, need)) st = status::out_of_memory;
    // 4 (prepared). A chunk longer than the budget is evicted after attending: its allocations
    // now, for the policy's view after this step.
    bool evict_after = false;
    if (st == status::ok && (b > 0 || hb >= 0)) {
      for (int h = 0; h < heads; ++h) {
        const std::int64_t len = cache_->length(layer, h);
        evict_after = evict_after || (b > 0 && len > b + cfg_.slack) ||
                      (hb >= 0 && len - cache_->low_length(layer, h) > hb + cfg_.slack);
      }
      if (evict_after) {
        for (int h = 0; h < heads; ++h) {
          targets_[std::size_t(h)] = b > 0 ? b : cache_->length(layer, h);
          high_targets_[std::size_t(h)] = hb;
        }
        st = reserve_eviction(layer, n);
      }
    }
    if (st != status::ok) {
      (void)cache_->unappend(layer, n, gated ? admit_.data() : nullptr);  // cannot fail
      return st;
    }
    HEED_RETURN_IF_ERROR(
        cache_attention(*cache_, layer, p, {attn_ws_.data(), attn_ws_.size()}, ex));
    if (prefill_mass) HEED_RETURN_IF_ERROR(accumulate_chunk(layer, q, p.lse, n));
    // 3. Keep what the policy reads later.
    remember(layer, q, o);
    steps_[std::size_t(layer)] += n;
    // 4. A chunk longer than the budget: evict after attending.
    if (evict_after) HEED_RETURN_IF_ERROR(evict_now(layer));
    return status::ok;
  }

 public:
  // The checks attention makes of step()'s queries and outputs, made before the append (with the
  // check of k and v before an eviction, a step that fails on its inputs changes nothing).
  status check_outputs(const tensor_view& q, const mutable_tensor_view& o) const noexcept {
    if (q.data == nullptr || o.data == nullptr) return status::null_pointer;
    HEED_RETURN_IF_ERROR(validate_view(q));
    HEED_RETURN_IF_ERROR(validate_view(o));
    if (q.type != dtype::f32 || o.type != dtype::f32) return status::unsupported_dtype;
    if (q.dim != cache_->head_dim() || o.dim != q.dim || o.seq != q.seq || o.heads != q.heads)
      return status::shape_mismatch;
    return status::ok;
  }

  // The policy's view of one layer now (ahead > 0: its shape once ahead more tokens of a step
  // are remembered; the rows it points at are not those yet).
  policy_input input(int layer, std::int64_t ahead = 0) const noexcept {
    policy_input in;
    in.cache = cache_;
    in.layer = layer;
    in.n_layers = cache_->layers();
    in.q_heads = q_heads_;
    in.budget = budget(layer);
    in.step = steps_[std::size_t(layer)] + ahead;
    in.seed = cfg_.seed;
    in.logits = cfg_.logits;
    const std::int64_t d = cache_->head_dim(), row = std::int64_t(q_heads_) * d;
    if (needs_.query_window > 0) {
      const std::int64_t w = needs_.query_window, c = q_count_[std::size_t(layer)] + ahead;
      const std::int64_t have = std::min(c, w);
      if (have > 0) {
        const std::int64_t first = (c - have) % w;  // oldest kept query's slot
        const float* base = queries_.data() + std::size_t(layer) * 2 * w * row;
        in.queries = make_view(base + first * row, have, q_heads_, d);
      }
    }
    if (needs_.last_output && steps_[std::size_t(layer)] + ahead > 0)
      in.last_output = make_view(outputs_.data() + std::size_t(layer) * row, 1, q_heads_, d);
    return in;
  }

  // Evicts one layer down to `target` entries per head now (e.g. one-shot after prefill).
  status evict_to(int layer, std::int64_t target) noexcept {
    if (cache_ == nullptr || !cache_->valid(layer, 0) || target < 0)
      return status::invalid_argument;
    for (int h = 0; h < cache_->kv_heads(); ++h) {
      targets_[std::size_t(h)] = target;
      high_targets_[std::size_t(h)] = std::min(cfg_.high_budget, target);
    }
    return evict_now(layer);
  }

 private:
  bool demoting() const noexcept { return cfg_.high_budget >= 0; }
  // append_after: the tokens the step appends after this eviction (their room is reserved).
  status evict_now(int layer, std::int64_t append_after = 0) noexcept {
    const policy_input in = input(layer);
    return evict_layer(*cache_, policy_, in, targets_.data(), scratch_,
                       demoting() ? high_targets_.data() : nullptr, append_after);
  }

  // The allocations of evict_now(layer) once the step's `ahead` tokens are remembered.
  status reserve_eviction(int layer, std::int64_t ahead) noexcept {
    if constexpr (!detail::check_policy<Policy>()) {
      (void)layer, (void)ahead;
      return status::invalid_argument;  // not compiled: a contract static_assert failed
    } else {
      return detail::evict_layer_impl(*cache_, policy_, input(layer, ahead), targets_.data(),
                                      scratch_, demoting() ? high_targets_.data() : nullptr, 0,
                                      /*reserve_only=*/true);
    }
  }

  // The options of the chunk's column-mass pass (accumulate_chunk).
  static observation_window_options chunk_options() noexcept {
    observation_window_options opt;
    opt.pool = pool_kind::none;
    opt.pool_kernel = 1;
    return opt;
  }
  // What a step of n tokens allocates whatever it evicts: the LSE of a chunk (own_lse) and the
  // buffers of its column-mass pass, for heads of at most max_length + n entries.
  status reserve_chunk(int layer, std::int64_t n, bool own_lse) noexcept {
    if (own_lse && !detail::grow_vector(lse_, std::size_t(n) * std::size_t(q_heads_)))
      return status::out_of_memory;
    if (!(needs_.column_mass && n > 1)) return status::ok;
    const std::int64_t len = cache_->max_length(layer) + n;
    const std::size_t group = std::size_t(q_heads_ / cache_->kv_heads());
    if (!detail::grow_vector(window_ws_, observation_window_workspace_size(len, chunk_options())) ||
        !detail::grow_vector(vertical_, group * std::size_t(len)) ||
        ((cache_->paged() || cache_->tiered()) &&
         !detail::grow_vector(scratch_.kv, detail::gather_bytes(*cache_, len))))
      return status::out_of_memory;
    return status::ok;
  }

  // A chunk of n > 1 queries: fold its rows' probabilities into channel 0 as n decode steps
  // would (sum: all rows at once; decay: row by row; last: the last row). One more pass of
  // O(n * len * d) over the keys, from the main pass's LSE.
  status accumulate_chunk(int layer, const tensor_view& q, const float* lse,
                          std::int64_t n) noexcept {
    const int heads = cache_->kv_heads(), group = q_heads_ / heads;
    const accumulate_mode mode = needs_.accumulate.mode;
    // Row by row unless the update is linear in the rows (sum of group means).
    const bool per_row =
        mode != accumulate_mode::sum || needs_.accumulate.reduce != head_reduce::mean;
    observation_window_options opt = chunk_options();
    const std::int64_t len = cache_->max_length(layer);
    const std::size_t ws_bytes = observation_window_workspace_size(len, opt);
    if (!detail::grow_vector(window_ws_, ws_bytes) ||
        !detail::grow_vector(vertical_, std::size_t(group) * std::size_t(len)))
      return status::out_of_memory;
    const float w = needs_.accumulate.reduce == head_reduce::mean ? 1.f / float(group) : 1.f;
    for (int h = 0; h < heads; ++h) {
      const std::int64_t lh = cache_->length(layer, h);
      // A paged head of several pages is read from a contiguous copy (O(len d), against this
      // pass's O(n len d)).
      policy_input keys_of;
      keys_of.cache = cache_;
      keys_of.layer = layer;
      HEED_RETURN_IF_ERROR(detail::gather_head(*cache_, keys_of, h, scratch_));
      const tensor_view keys = keys_of.keys(h);
      float* ch = cache_->scores(layer, h, 0);
      tensor_view qg = q;
      qg.data = static_cast<const float*>(q.data) + std::int64_t(h) * group * q.head_stride;
      qg.heads = group;
      // The probabilities the kernel computed: the same logit settings, for this group's heads.
      opt.logits = cfg_.logits.heads_from(std::int64_t(h) * group);
      const std::int64_t first_row = mode == accumulate_mode::last ? n - 1 : 0;
      for (std::int64_t r0 = first_row; r0 < n; r0 += per_row ? 1 : n) {
        const std::int64_t rows = per_row ? 1 : n;
        tensor_view qr = qg;
        qr.data = static_cast<const float*>(qg.data) + r0 * q.seq_stride;
        qr.seq = rows;
        opt.q_offset = lh - n + r0;
        observation_window_outputs out;
        out.vertical = vertical_.data();
        out.vertical_head_stride = lh;
        const std::int64_t lse_stride = n;  // [Hq][n], ours or the caller's
        HEED_RETURN_IF_ERROR(observation_window_scores(
            qr, keys, lse + std::int64_t(h) * group * lse_stride + r0, lse_stride, opt, out,
            {window_ws_.data(), window_ws_.size()}));
        for (std::int64_t j = 0; j < lh; ++j) {
          float r = 0.f;
          for (int g = 0; g < group; ++g) {
            const float x = vertical_[std::size_t(g) * std::size_t(lh) + std::size_t(j)];
            r = needs_.accumulate.reduce == head_reduce::mean ? r + x * w
                                                              : (g == 0 || x > r ? x : r);
          }
          if (mode == accumulate_mode::sum) ch[j] += r;
          if (mode == accumulate_mode::decay) ch[j] = needs_.accumulate.lambda * ch[j] + r;
          if (mode == accumulate_mode::last) ch[j] = r;
        }
      }
    }
    return status::ok;
  }

  void remember(int layer, const tensor_view& q, const mutable_tensor_view& o) noexcept {
    const std::int64_t d = cache_->head_dim(), row = std::int64_t(q_heads_) * d;
    const std::int64_t n = q.seq;
    if (needs_.query_window > 0) {
      const std::int64_t w = needs_.query_window;
      float* base = queries_.data() + std::size_t(layer) * 2 * w * row;
      std::int64_t& c = q_count_[std::size_t(layer)];
      for (std::int64_t i = std::max<std::int64_t>(0, n - w); i < n; ++i, ++c) {
        // Each query lives at slot s and s + w, so the last w are contiguous from slot c % w.
        const std::int64_t s = c % w;
        for (int h = 0; h < q_heads_; ++h) {
          const float* src = q.row<const float>(i, h);
          std::memcpy(base + s * row + h * d, src, sizeof(float) * std::size_t(d));
          std::memcpy(base + (s + w) * row + h * d, src, sizeof(float) * std::size_t(d));
        }
      }
    }
    if (needs_.last_output) {
      float* out = outputs_.data() + std::size_t(layer) * row;
      for (int h = 0; h < q_heads_; ++h)
        std::memcpy(out + h * d, o.row<const float>(n - 1, h), sizeof(float) * std::size_t(d));
    }
  }

  kv_cache* cache_ = nullptr;
  Policy policy_{};
  eviction_config cfg_{};
  score_needs needs_{};
  int q_heads_ = 0;
  eviction_scratch scratch_;
  std::vector<unsigned char> attn_ws_;
  std::vector<std::int64_t> targets_, high_targets_, steps_, q_count_;
  std::vector<float> queries_, outputs_, lse_, vertical_;
  std::vector<unsigned char> window_ws_;
  std::vector<std::uint8_t> admit_;  // the gate's answers for the step's token, per KV head
  bool gates_ = false;               // the policy has a write gate (detail::policy_gates)
};

using eviction_loop = basic_eviction_loop<any_policy>;

}  // namespace heed
