// has_key_range set, but no key_range(): refused at block_sparse_attention_t.
// clang-format off
// expect-error: heed variant: has_key_range is set but there is no key_range(std::int64_t, std::int64_t, std::int64_t&, std::int64_t&) const member
// clang-format on
#include "heed/attention/sparse.hpp"

struct bad_variant : heed::variant_base {
  static constexpr bool has_key_range = true;
};

heed::status run(const heed::dense_params& p, const heed::block_sparse_layout& l,
                 heed::workspace ws) {
  heed::null_observer obs;
  return heed::block_sparse_attention_t(p, l, bad_variant{}, obs, ws);
}
