// A variant that does not derive from variant_base: refused at observation_window_scores.
// expect-error: heed variant: a variant must derive from heed::variant_base
#include "heed/scoring/observation_window.hpp"

struct bad_variant {
  static constexpr bool has_logits_mask = false;
};

heed::status run(const heed::tensor_view& q, const heed::tensor_view& k, float* out,
                 heed::workspace ws) {
  heed::observation_window_options opt;
  heed::observation_window_outputs o{};
  o.window = out;
  return heed::observation_window_scores(q, k, nullptr, 0, opt, o, ws, bad_variant{});
}
