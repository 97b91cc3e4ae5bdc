// DuoAttention head classes, given by the user per (layer, KV head): retrieval heads keep their
// whole cache (the budget does not apply), streaming heads keep n_sink + n_recent entries (or
// the budget, if smaller). Set the loop's budget to n_sink + n_recent.
#pragma once

#include <cstdint>
#include <vector>

#include "heed/policy/policy.hpp"

namespace heed {

struct duo_attention_policy : policy_base<duo_attention_policy> {
  std::vector<std::uint8_t> retrieval;  // [layers][kv_heads], nonzero = retrieval head
  std::int64_t n_sink = 64;
  std::int64_t n_recent = 256;

  const char* name() const noexcept { return "duo_attention"; }
  bool is_retrieval(const policy_input& in, int head) const noexcept {
    const std::size_t i = std::size_t(in.layer) * std::size_t(in.kv_heads()) + std::size_t(head);
    return i < retrieval.size() && retrieval[i] != 0;
  }
  std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept {
    if (is_retrieval(in, head)) return in.length(head);
    return target < n_sink + n_recent ? target : n_sink + n_recent;
  }
  selection_spec selection(std::int64_t) const noexcept {
    selection_spec s;
    s.protect.n_sink = n_sink;
    return s;
  }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    for (std::int64_t j = 0; j < in.length(head); ++j) out[j] = float(j);
    return status::ok;
  }
};

}  // namespace heed
