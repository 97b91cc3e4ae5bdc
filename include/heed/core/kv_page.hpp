// A page of K/V rows: the unit of a paged KV cache and of the dense decode kernel's paged input.
#pragma once

#include <cstdint>

namespace heed {

// Rows [begin, begin + len) of a paged sequence, laid out at k and v with the strides of the
// kernel's K/V views (dense_params::k / v); the KV cache's pages are [len, d] rows.
struct kv_page {
  const void* k = nullptr;
  const void* v = nullptr;
  std::int64_t begin = 0;
  std::int64_t len = 0;
};

}  // namespace heed
