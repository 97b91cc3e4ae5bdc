// keep() under a misspelled flag (has_logit_mask): variant_base's has_logits_mask = false would
// silently drop the mask; refused at dense_attention_t.
// expect-error: heed variant: defines keep() but has_logits_mask is false: misspelled flag?
#include "heed/attention/dense.hpp"

struct bad_variant : heed::variant_base {
  static constexpr bool has_logit_mask = true;
  template <class A>
  xsimd::batch_bool<float, A> keep(const heed::lane_ctx<A>& c) const noexcept {
    return xsimd::bool_cast(c.k_pos <= c.q_pos);
  }
};

heed::status run(const heed::dense_params& p, heed::workspace ws) {
  return heed::dense_attention_t(p, bad_variant{}, ws);
}
