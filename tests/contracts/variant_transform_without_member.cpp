// has_logits_transform set, but no transform_logits(): refused at dense_attention_t.
// clang-format off
// expect-error: heed variant: has_logits_transform is set but there is no transform_logits(batch<float, A>, const lane_ctx<A>&) const member returning batch<float, A>
// clang-format on
#include "heed/attention/dense.hpp"

struct bad_variant : heed::variant_base {
  static constexpr bool has_logits_transform = true;
};

heed::status run(const heed::dense_params& p, heed::workspace ws) {
  return heed::dense_attention_t(p, bad_variant{}, ws);
}
