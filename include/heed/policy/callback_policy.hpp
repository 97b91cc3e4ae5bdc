// A policy whose score comes from a C callback (include/heed/c/heed_policy.h): plug-ins loaded
// at run time, or policies written in another language.
#pragma once

#include <cstdint>

#include "heed/c/heed_policy.h"
#include "heed/policy/policy.hpp"

namespace heed {

struct callback_policy : policy_base<callback_policy> {
  heed_policy_score_fn fn = nullptr;
  heed_policy_admit_fn admit_fn = nullptr;  // optional write gate (null: every token enters)
  void* user = nullptr;
  score_needs wants{};      // what the callback reads (column mass, recent queries, kv_rows)
  selection_spec select{};  // how its scores become keep-sets
  const char* label = "callback";

  const char* name() const noexcept { return label; }
  score_needs needs() const noexcept { return wants; }
  selection_spec selection(std::int64_t) const noexcept { return select; }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    if (fn == nullptr) return status::null_pointer;
    heed_policy_head h{};
    h.layer = in.layer;
    h.head = head;
    h.n_layers = in.n_layers;
    h.kv_heads = in.kv_heads();
    h.q_heads = in.q_heads;
    h.length = in.length(head);
    h.budget = in.budget;
    h.step = in.step;
    h.head_dim = in.cache->head_dim();
    // The rows' own type: a tiered head holding low entries is handed over as f32 copies.
    const tensor_view keys = in.keys(head);
    h.dtype = static_cast<heed_dtype>(
        static_cast<int>(keys.data != nullptr ? keys.type : in.cache->type()));
    h.keys = keys.data;
    h.values = in.values(head).data;
    h.positions = in.positions(head);
    h.accumulated = wants.column_mass ? in.channel(head, 0) : nullptr;
    h.queries = in.queries.seq > 0 ? static_cast<const float*>(in.queries.data) : nullptr;
    h.n_queries = in.queries.seq;
    const int r = static_cast<int>(fn(user, &h, out));
    if (r < 0 || r > static_cast<int>(status::out_of_memory)) return status::invalid_argument;
    return static_cast<status>(r);
  }

  bool gates() const noexcept { return admit_fn != nullptr; }
  status admit(const admission_input& in, int head, bool& admitted) noexcept {
    admitted = true;
    if (admit_fn == nullptr) return status::ok;
    heed_admit_head h{};
    h.layer = in.layer;
    h.head = head;
    h.n_layers = in.n_layers;
    h.kv_heads = in.kv_heads();
    h.q_heads = in.q_heads;
    h.length = in.length(head);
    h.budget = in.budget;
    h.step = in.step;
    h.position = in.position(head);
    h.head_dim = in.cache->head_dim();
    h.dtype = static_cast<heed_dtype>(static_cast<int>(in.keys.type));
    const std::size_t unit = is_quantized(in.keys.type) ? 1 : dtype_size(in.keys.type);
    h.key = static_cast<const unsigned char*>(in.keys.data) +
            std::size_t(in.keys.offset(0, head)) * unit;
    h.value = static_cast<const unsigned char*>(in.values.data) +
              std::size_t(in.values.offset(0, head)) * unit;
    int a = 1;
    const int r = static_cast<int>(admit_fn(user, &h, &a));
    if (r < 0 || r > static_cast<int>(status::out_of_memory)) return status::invalid_argument;
    admitted = a != 0;
    return static_cast<status>(r);
  }
};

}  // namespace heed
