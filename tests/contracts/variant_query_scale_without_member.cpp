// has_query_scale set, but no query_scale(): refused at dense_attention_t.
// clang-format off
// expect-error: heed variant: has_query_scale is set but there is no query_scale(int, std::int64_t, std::int64_t) const member returning float
// clang-format on
#include "heed/attention/dense.hpp"

struct bad_variant : heed::variant_base {
  static constexpr bool has_query_scale = true;
};

heed::status run(const heed::dense_params& p, heed::workspace ws) {
  return heed::dense_attention_t(p, bad_variant{}, ws);
}
