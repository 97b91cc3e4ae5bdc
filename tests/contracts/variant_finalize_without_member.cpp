// has_row_finalize set, but finalize_row() is not const: refused at materialize_attention_t.
// clang-format off
// expect-error: heed variant: has_row_finalize is set but there is no finalize_row(int, std::int64_t, row_state&) const member
// clang-format on
#include "heed/scoring/materialize.hpp"

struct bad_variant : heed::variant_base {
  static constexpr bool has_row_finalize = true;
  void finalize_row(int, std::int64_t, heed::row_state&) noexcept {}
};

heed::status run(const heed::dense_params& p, float* out) {
  const int head = 0;
  const std::int64_t row = 0;
  return heed::materialize_attention_t(p, bad_variant{}, &head, 1, &row, 1,
                                       heed::attention_values::probs, out);
}
