// on_row() under a misspelled flag (want_row_stats): the kernel would never call it; refused at
// vertical_slash_attention_t.
// clang-format off
// expect-error: heed observer: defines on_row() but wants_row_stats is false or missing: misspelled flag?
// clang-format on
#include "heed/attention/sparse.hpp"

struct bad_observer {
  static constexpr bool want_row_stats = true;
  void on_row(int, std::int64_t, float, float) noexcept {}
};

heed::status run(const heed::dense_params& p, const heed::vertical_slash_layout& l,
                 heed::workspace ws) {
  bad_observer obs;
  return heed::vertical_slash_attention_t(p, l, heed::no_variant{}, obs, ws);
}
