// Fuzz target: keep-set selection (include/heed/policy/select.hpp).
//
// The input picks one of select_top_k, select_threshold, select_coverage and select_global_top_k,
// the scores (NaN, +-inf, +-0, many ties, any bit pattern), lengths up to 64 per head, protection,
// budgets, clamps, gamma and floor fractions, including out-of-range values and null pointers.
// keep[] and scratch have exactly the documented sizes (ASan sees any write beyond them).
// Checked: a bad argument gives its status and writes nothing; otherwise the kept set equals the
// naive reference (tests/reference/naive_select.hpp) exactly, and has the documented count.
#include "heed/policy/select.hpp"

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "fuzz_input.hpp"
#include "reference/naive_select.hpp"

namespace {

using heed_fuzz::fuzz_input;

constexpr std::int32_t kUnwritten = -7;

// An array of exactly n elements (n may be 0: still a distinct non-null allocation).
struct exact_array {
  explicit exact_array(std::int64_t n) : n_(n > 0 ? n : 0), p_(new std::int32_t[std::size_t(n_)]) {
    for (std::int64_t i = 0; i < n_; ++i) p_[std::size_t(i)] = kUnwritten;
  }
  std::int32_t* get() { return p_.get(); }
  bool untouched() const {
    for (std::int64_t i = 0; i < n_; ++i)
      if (p_[std::size_t(i)] != kUnwritten) return false;
    return true;
  }
  std::vector<std::int64_t> first(std::int64_t k) const {
    return std::vector<std::int64_t>(p_.get(), p_.get() + k);
  }

 private:
  std::int64_t n_;
  std::unique_ptr<std::int32_t[]> p_;
};

std::vector<float> make_scores(fuzz_input& in, std::int64_t n) {
  std::vector<float> s(static_cast<std::size_t>(n));
  const int style = in.byte() % 4;
  for (auto& x : s) {
    if (style == 0)
      x = in.any_float();
    else if (style == 1)
      x = float(in.byte() % 3);  // mostly ties
    else if (style == 2)
      x = in.small_float();
    else
      x = in.any_float() * in.small_float();
  }
  return s;
}

void single_head(fuzz_input& in, int mode) {
  const std::int64_t n = in.range(0, 64);
  std::vector<float> scores = make_scores(in, n);
  heed::protect_spec protect;
  protect.n_sink = in.range(0, 70);
  protect.n_recent = in.range(0, 70);
  const std::uint8_t defect = in.byte();
  std::int64_t budget = in.range(0, 70);
  std::int64_t min_keep = in.range(0, 70), max_keep = min_keep + in.range(0, 70);
  float tau = in.any_float();
  double gamma = double(in.range(0, 64)) / 64.0;
  if (in.flag()) gamma = double(in.u32()) / 4294967295.0;

  bool want_invalid = false, want_null = false;
  bool null_scores = false, null_keep = false, null_n_keep = false, null_scratch = false;
  if (defect >= 200) {
    switch (defect % 8) {
      case 0:
        budget = -1 - defect % 3, want_invalid = mode == 0;
        break;
      case 1:
        protect.n_sink = -1, want_invalid = true;
        break;
      case 2:
        protect.n_recent = -2, want_invalid = true;
        break;
      case 3:
        min_keep = -1, want_invalid = mode != 0;
        break;
      case 4:
        max_keep = min_keep - 1, want_invalid = mode != 0 && max_keep >= -1;
        break;
      case 5:
        gamma = defect & 1 ? -0.5 : 1.5, want_invalid = mode == 2;
        break;
      case 6:
        gamma = __builtin_nan(""), want_invalid = mode == 2;
        break;
      default: {
        const int which = defect % 4;
        null_scores = which == 0;
        null_keep = which == 1;
        null_n_keep = which == 2;
        null_scratch = which == 3;
        want_null = null_n_keep || n > 0;
        break;
      }
    }
  }
  if (mode == 2 && !want_null && !want_invalid)
    for (float x : scores)
      if (std::isinf(x) && x > 0) want_invalid = true;

  const std::int64_t room = mode == 0 ? std::min(std::max<std::int64_t>(budget, 0), n)
                                      : std::min(std::max<std::int64_t>(max_keep, 0), n);
  exact_array keep(room);
  exact_array scratch(heed::select_scratch_size(n));
  std::int64_t n_keep = -99;
  const float* sp = null_scores ? nullptr : scores.data();
  std::int32_t* kp = null_keep ? nullptr : keep.get();
  std::int64_t* nkp = null_n_keep ? nullptr : &n_keep;
  std::int32_t* scp = null_scratch ? nullptr : scratch.get();
  if (n == 0 && !null_scores && in.flag()) sp = nullptr;  // allowed when there is nothing

  heed::status s;
  if (mode == 0)
    s = heed::select_top_k(sp, n, budget, protect, kp, nkp, scp);
  else if (mode == 1)
    s = heed::select_threshold(sp, n, tau, min_keep, max_keep, protect, kp, nkp, scp);
  else
    s = heed::select_coverage(sp, n, gamma, min_keep, max_keep, protect, kp, nkp, scp);

  if (want_invalid) HEED_FUZZ_CHECK(s == heed::status::invalid_argument);
  if (!want_invalid && want_null) HEED_FUZZ_CHECK(s == heed::status::null_pointer);
  if (s != heed::status::ok) {
    HEED_FUZZ_CHECK(want_invalid || want_null);
    HEED_FUZZ_CHECK(n_keep == -99 && keep.untouched());
    return;
  }
  HEED_FUZZ_CHECK(!want_invalid && !want_null);
  std::vector<std::int64_t> want;
  if (mode == 0)
    want = heed_ref::select_top_k(scores, budget, protect.n_sink, protect.n_recent);
  else if (mode == 1)
    want = heed_ref::select_threshold(scores, tau, min_keep, max_keep, protect.n_sink,
                                      protect.n_recent);
  else
    want = heed_ref::select_coverage(scores, gamma, min_keep, max_keep, protect.n_sink,
                                     protect.n_recent);
  HEED_FUZZ_CHECK(n_keep >= 0 && n_keep <= room);
  if (mode == 0) HEED_FUZZ_CHECK(n_keep == std::min(budget, n));
  HEED_FUZZ_CHECK(keep.first(n_keep) == want);
}

void global(fuzz_input& in) {
  const int heads = int(in.range(0, 4));
  std::vector<std::int64_t> n(static_cast<std::size_t>(heads));
  std::vector<std::vector<float>> scores(static_cast<std::size_t>(heads));
  for (int h = 0; h < heads; ++h) {
    n[std::size_t(h)] = in.range(0, 32);
    scores[std::size_t(h)] = make_scores(in, n[std::size_t(h)]);
  }
  heed::protect_spec protect;
  protect.n_sink = in.range(0, 20);
  protect.n_recent = in.range(0, 20);
  std::int64_t budget = in.range(0, 140);
  double floor_fraction = double(in.range(0, 16)) / 16.0;
  const std::uint8_t defect = in.byte();
  bool want_invalid = false;
  if (defect >= 220) {
    switch (defect % 4) {
      case 0:
        budget = -1;
        break;
      case 1:
        floor_fraction = defect & 1 ? 1.25 : __builtin_nan("");
        break;
      case 2:
        protect.n_sink = -1;
        break;
      default:
        protect.n_recent = -3;
        break;
    }
    want_invalid = true;
  }

  std::vector<exact_array> keep;
  std::vector<std::int32_t*> keep_ptr;
  std::vector<const float*> score_ptr;
  for (int h = 0; h < heads; ++h) {
    keep.emplace_back(n[std::size_t(h)]);
    keep_ptr.push_back(n[std::size_t(h)] == 0 && in.flag() ? nullptr : keep.back().get());
    score_ptr.push_back(n[std::size_t(h)] == 0 ? nullptr : scores[std::size_t(h)].data());
  }
  exact_array scratch(heed::select_global_scratch_size(n.data(), heads));
  std::vector<std::int64_t> n_keep(std::size_t(heads), -99);
  const heed::status s =
      heed::select_global_top_k(score_ptr.data(), n.data(), heads, budget, floor_fraction, protect,
                                keep_ptr.data(), n_keep.data(), scratch.get());
  if (want_invalid) {
    HEED_FUZZ_CHECK(s == heed::status::invalid_argument);
    for (int h = 0; h < heads; ++h)
      HEED_FUZZ_CHECK(n_keep[std::size_t(h)] == -99 && keep[std::size_t(h)].untouched());
    return;
  }
  HEED_FUZZ_CHECK(s == heed::status::ok);
  const auto want = heed_ref::select_global_top_k(scores, budget, floor_fraction, protect.n_sink,
                                                  protect.n_recent);
  std::int64_t total = 0, kept = 0;
  for (int h = 0; h < heads; ++h) {
    total += n[std::size_t(h)];
    kept += n_keep[std::size_t(h)];
    HEED_FUZZ_CHECK(keep[std::size_t(h)].first(n_keep[std::size_t(h)]) == want[std::size_t(h)]);
  }
  HEED_FUZZ_CHECK(kept == std::min(budget, total));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_input in(data, size);
  const int mode = int(in.byte() % 4);
  if (mode == 3)
    global(in);
  else
    single_head(in, mode);
  return 0;
}
