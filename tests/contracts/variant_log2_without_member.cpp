// has_log2_transform set with transform_logits() only: refused at dense_attention_t.
// clang-format off
// expect-error: heed variant: has_log2_transform is set but there is no transform_logits_log2(batch<float, A>, const lane_ctx<A>&) const member returning batch<float, A>
// clang-format on
#include "heed/attention/dense.hpp"

struct bad_variant : heed::variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_log2_transform = true;
  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const heed::lane_ctx<A>&) const noexcept {
    return s;
  }
};

heed::status run(const heed::dense_params& p, heed::workspace ws) {
  return heed::dense_attention_t(p, bad_variant{}, ws);
}
