// Shared vocabulary of the score functions: how query-head scores reduce to KV heads.
//
// Scores land per KV head in [kv_heads, kv_len] buffers, higher = keep. Query head h belongs to
// KV head h / (Hq / Hkv).
#pragma once

namespace heed {

enum class head_reduce : int {
  mean = 0,  // average over the query heads of the group (default)
  max = 1,   // maximum over the query heads of the group
};

constexpr bool valid_head_reduce(head_reduce r) noexcept {
  return r == head_reduce::mean || r == head_reduce::max;
}

}  // namespace heed
