// The query heads of one KV head's group, for policies that read the recent queries.
#pragma once

#include "heed/policy/policy.hpp"

namespace heed {

namespace detail {
// The query heads of KV head h's group, as a [n, G, d] view.
inline tensor_view group_queries(const policy_input& in, int head) noexcept {
  tensor_view q = in.queries;
  const std::int64_t g = in.group();
  q.data = static_cast<const float*>(q.data) + std::int64_t(head) * g * q.head_stride;
  q.heads = g;
  return q;
}
}  // namespace detail

}  // namespace heed
