// wants_probs set with probs_active() but no on_probs(): refused at dense_attention_t.
// clang-format off
// expect-error: heed observer: wants_probs is set but there is no on_probs(int, std::int64_t, const float*, std::int64_t) member
// clang-format on
#include "heed/attention/dense.hpp"

struct bad_observer {
  static constexpr bool wants_probs = true;
  bool probs_active() const noexcept { return true; }
};

heed::status run(const heed::dense_params& p, heed::workspace ws) {
  bad_observer obs;
  return heed::dense_attention_t(p, heed::no_variant{}, obs, ws);
}
