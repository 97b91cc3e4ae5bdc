// Reading single elements of tensor views and KV-cache entries in tests, for any storage type.
#pragma once

#include <cstdint>

#include "heed/cache/kv_cache.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/quant/quantize.hpp"

namespace heed_ref {

// Element c of row s (head 0) of a view, as float.
inline float read_element(const heed::tensor_view& t, std::int64_t s, std::int64_t c) {
  switch (t.type) {
    case heed::dtype::f32:
      return t.row<const float>(s, 0)[c];
    case heed::dtype::f16:
      return heed::to_float(t.row<const heed::f16>(s, 0)[c]);
    case heed::dtype::bf16:
      return heed::to_float(t.row<const heed::bf16>(s, 0)[c]);
    case heed::dtype::q8:
    case heed::dtype::q4:
      return heed::quant::dequantize_value(t.type, t.row<const unsigned char>(s, 0), t.dim,
                                           t.quant_group(), c);
  }
  return 0.f;
}

// Element c of entry i of (layer, head): keys (which 0) or values (1), found through the pages
// (a contiguous cache is one page). NaN when i is in no page.
inline float read_entry(const heed::kv_cache& cache, int layer, int head, int which, std::int64_t i,
                        std::int64_t c) {
  for (int pg = 0; pg < cache.page_count(layer, head); ++pg) {
    const heed::kv_page page = cache.page(layer, head, pg);
    if (i >= page.begin && i < page.begin + page.len)
      return read_element(
          which == 0 ? cache.page_keys(layer, head, pg) : cache.page_values(layer, head, pg),
          i - page.begin, c);
  }
  return __builtin_nanf("");
}

}  // namespace heed_ref
