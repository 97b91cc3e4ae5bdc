// Keep-set selection for KV-cache eviction: turns per-entry scores (higher = keep) into the
// sorted, unique indices of the entries to keep.
//
// Ranking rule (ranks_above): a higher score ranks above; NaN ranks below every number
// (including -inf); equal scores (or both NaN) rank the higher index (more recent) above.
// -0 and +0 are equal scores. This is a strict total order, so every result is deterministic.
//
// Protection (protect_spec): indices [0, n_sink) and [n - n_recent, n) are protected: always
// kept, counted in the budget. When the protected entries alone exceed the count to keep, the
// count still wins: sinks first (lowest index first), then the most recent (highest index first).
//
// All functions are noexcept, never allocate (scratch is the caller's, see *_scratch_size), run
// in O(n) expected time (std::nth_element, then one ordered scan: no sort), write keep[]
// ascending and *n_keep, and return a heed::status. On an error status nothing is written.
// keep must have room for the count kept: min(budget, n) for select_top_k, min(max_keep, n) for
// select_threshold and select_coverage, n[h] for keep[h] of select_global_top_k.
// Lengths are limited to 2^31 - 1 (indices are int32).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "heed/config.hpp"
#include "heed/core/status.hpp"
#include "heed/policy/detail/select_impl.hpp"

namespace heed {

// Indices [0, n_sink) and [n - n_recent, n) are protected (the two ranges may overlap).
struct protect_spec {
  std::int64_t n_sink = 0;
  std::int64_t n_recent = 0;
};

// The ranking rule: true when entry a (score sa, index ia) ranks above entry b.
inline bool ranks_above(float sa, std::int64_t ia, float sb, std::int64_t ib) noexcept {
  const std::uint32_t ka = select_detail::rank_key(sa), kb = select_detail::rank_key(sb);
  if (ka != kb) return ka > kb;
  return ia > ib;
}

// Elements of scratch for select_top_k, select_threshold and select_coverage on n entries.
inline std::int64_t select_scratch_size(std::int64_t n) noexcept { return n > 0 ? n : 0; }

// Elements of scratch for select_global_top_k: sum of n[h] plus 5 * heads + 1 (0 when heads <= 0
// or n is null; negative lengths count as 0).
inline std::int64_t select_global_scratch_size(const std::int64_t* n, int heads) noexcept {
  if (heads <= 0 || n == nullptr) return 0;
  std::int64_t total = 5 * std::int64_t(heads) + 1;
  for (int h = 0; h < heads; ++h)
    if (n[h] > 0) total += std::min(n[h], select_detail::max_len);
  return total;
}

namespace select_detail {

inline status check_head(const float* scores, std::int64_t n, const protect_spec& protect,
                         const std::int32_t* keep, const std::int64_t* n_keep,
                         const std::int32_t* scratch) noexcept {
  if (n < 0 || n > max_len || protect.n_sink < 0 || protect.n_recent < 0)
    return status::invalid_argument;
  if (n_keep == nullptr) return status::null_pointer;
  if (n > 0 && (scores == nullptr || keep == nullptr || scratch == nullptr))
    return status::null_pointer;
  return status::ok;
}

inline std::int64_t clamp_count(std::int64_t c, std::int64_t min_keep, std::int64_t max_keep,
                                std::int64_t n) noexcept {
  return std::min(std::min(std::max(c, min_keep), max_keep), n);
}

}  // namespace select_detail

// Keeps exactly min(budget, n) entries: the protected ones (cut as above when they exceed the
// budget), then the best-ranked others. budget 0 keeps nothing.
inline status select_top_k(const float* scores, std::int64_t n, std::int64_t budget,
                           const protect_spec& protect, std::int32_t* keep, std::int64_t* n_keep,
                           std::int32_t* scratch) noexcept {
  if (budget < 0) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(select_detail::check_head(scores, n, protect, keep, n_keep, scratch));
  const auto l = select_detail::make_layout(n, protect.n_sink, protect.n_recent);
  *n_keep = select_detail::top_k_head(scores, l, std::min(budget, n), keep, scratch);
  HEED_DASSERT(*n_keep == std::min(budget, n));
  return status::ok;
}

// DMS-style threshold: the entries with score >= tau (NaN never passes; a NaN tau passes
// nothing) plus the protected ones, with the count c then clamped to
// min(max(c, min_keep), max_keep, n). Too few: the best-ranked others are added; too many: the
// best-ranked are kept, protected first. (Every passing entry ranks above every failing one, so
// the result is select_top_k with the clamped count.)
inline status select_threshold(const float* scores, std::int64_t n, float tau,
                               std::int64_t min_keep, std::int64_t max_keep,
                               const protect_spec& protect, std::int32_t* keep,
                               std::int64_t* n_keep, std::int32_t* scratch) noexcept {
  if (min_keep < 0 || max_keep < min_keep) return status::invalid_argument;
  HEED_RETURN_IF_ERROR(select_detail::check_head(scores, n, protect, keep, n_keep, scratch));
  const auto l = select_detail::make_layout(n, protect.n_sink, protect.n_recent);
  std::int64_t c = l.n_protected();
  for (std::int64_t i = l.lo; i < l.hi; ++i) c += scores[i] >= tau ? 1 : 0;
  const std::int64_t t = select_detail::clamp_count(c, min_keep, max_keep, n);
  *n_keep = select_detail::top_k_head(scores, l, t, keep, scratch);
  HEED_DASSERT(*n_keep == t && t <= max_keep);
  return status::ok;
}

// Coverage: the mass of an entry is its score when finite and > 0, else 0 (NaN, negative, -inf,
// zero); a +inf score is invalid_argument. Sums are exact (order-independent) and then rounded
// to double once. Keeps the protected entries plus the smallest number j of best-ranked others
// such that round(mass of the set) >= gamma * round(total mass) (one double multiplication);
// gamma 1 means the exact total: every entry with a mass is kept. gamma 0 or a zero total keeps
// only the protected entries. Then the count c = protected + j is clamped to min(max(c, min_keep),
// max_keep, n) as in select_threshold (entries with mass rank above those without, so this is again
// select_top_k with the clamped count).
inline status select_coverage(const float* scores, std::int64_t n, double gamma,
                              std::int64_t min_keep, std::int64_t max_keep,
                              const protect_spec& protect, std::int32_t* keep, std::int64_t* n_keep,
                              std::int32_t* scratch) noexcept {
  if (min_keep < 0 || max_keep < min_keep || !(gamma >= 0.0 && gamma <= 1.0))
    return status::invalid_argument;
  HEED_RETURN_IF_ERROR(select_detail::check_head(scores, n, protect, keep, n_keep, scratch));
  for (std::int64_t i = 0; i < n; ++i)
    if (select_detail::float_bits(scores[i]) == 0x7f800000u) return status::invalid_argument;
  const auto l = select_detail::make_layout(n, protect.n_sink, protect.n_recent);
  select_detail::exact_mass total, acc;
  for (std::int64_t i = 0; i < n; ++i) total.add(scores[i]);
  for (std::int64_t i = 0; i < l.lo; ++i) acc.add(scores[i]);
  for (std::int64_t i = l.hi; i < n; ++i) acc.add(scores[i]);
  const double target = gamma * total.value();
  std::int64_t j = 0;
  if (gamma >= 1.0) {
    for (std::int64_t i = l.lo; i < l.hi; ++i) j += select_detail::has_mass(scores[i]) ? 1 : 0;
  } else if (acc.value() < target) {
    // The middle entries with mass, searched by halving: f(a) < target <= f(b), where f(x) is
    // the rounded mass of the protected set plus the x best-ranked of them, and
    // scratch[a, b) holds the entries ranked a .. b-1 (acc is the mass through rank a-1).
    std::int64_t b = 0;
    for (std::int64_t i = l.lo; i < l.hi; ++i)
      if (select_detail::has_mass(scores[i])) scratch[b++] = static_cast<std::int32_t>(i);
    std::int64_t a = 0;
    const select_detail::ranks_first first{scores};
    while (b - a > 1) {
      const std::int64_t mid = a + (b - a) / 2;
      std::nth_element(scratch + a, scratch + mid, scratch + b, first);
      select_detail::exact_mass sum = acc;
      for (std::int64_t k = a; k < mid; ++k) sum.add(scores[scratch[k]]);
      if (sum.value() >= target) {
        b = mid;
      } else {
        acc = sum;
        a = mid;
      }
    }
    HEED_DASSERT(b <= l.n_middle());  // scratch[0, b) held middle indices
    j = b;
  }
  const std::int64_t t = select_detail::clamp_count(l.n_protected() + j, min_keep, max_keep, n);
  *n_keep = select_detail::top_k_head(scores, l, t, keep, scratch);
  HEED_DASSERT(*n_keep == t && t <= max_keep);
  return status::ok;
}

namespace select_detail {

// select_global_top_k past its checks, step by step (the steps of its comment).
struct global_top_k {
  const float* const* scores;
  const std::int64_t* n;
  int heads;
  protect_spec protect;
  std::int32_t* const* keep;
  std::int64_t* n_keep;  // steps 2 and 3: the protected entries each head keeps so far
  // Scratch: off[heads + 1] (prefix sums of n), pivot[heads] (the floor pivot of each head, or
  // -1), lo/hi/mid[heads] (the state of step 4), then per head h the region cand + off[h]:
  // its middle indices, the floor's best first, then its candidates for step 4, cand[lo[h],
  // hi[h]) undecided.
  std::int32_t* scratch;
  std::int32_t *off = nullptr, *pivot = nullptr, *lo = nullptr, *hi = nullptr, *mid = nullptr,
               *cand = nullptr;  // carved by step 2
  std::int64_t floor = 0;        // f of step 2

  // Step 1: the budget covers everything.
  void keep_all() const noexcept {
    for (int h = 0; h < heads; ++h)
      n_keep[h] = select_detail::emit(
          layout(h), layout(h).n_protected(), [](std::int64_t) { return true; }, keep[h]);
  }

  head_layout layout(int h) const noexcept {
    return make_layout(n[h], protect.n_sink, protect.n_recent);
  }
  // Entry i of head h ranks above (key, key_head): rank key, then the lower head.
  bool above(int h, std::int32_t i, std::uint64_t key, int key_head) const noexcept {
    const std::uint64_t k = rank_key(scores[h][i], i);
    return k > key || (k == key && h < key_head);
  }

  // Step 2: each head's floor (its best, protected first). Returns the slots left.
  std::int64_t take_floors(std::int64_t budget, double floor_fraction) noexcept {
    off = scratch;
    pivot = off + heads + 1;
    lo = pivot + heads;
    hi = lo + heads;
    mid = hi + heads;
    cand = mid + heads;
    off[0] = 0;
    for (int h = 0; h < heads; ++h) off[h + 1] = static_cast<std::int32_t>(off[h] + n[h]);
    const std::int64_t per_head = budget / heads;
    const double fd = std::floor(floor_fraction * double(budget) / double(heads));
    floor = fd >= double(per_head) ? per_head : static_cast<std::int64_t>(fd);
    std::int64_t left = budget;
    HEED_DASSERT(floor >= 0 && floor * heads <= budget);
    for (int h = 0; h < heads; ++h) {
      const head_layout l = layout(h);
      const std::int64_t fh = std::min(n[h], floor), p = l.n_protected();
      left -= fh;
      n_keep[h] = std::min(fh, p);
      pivot[h] = -1;
      std::int32_t* region = cand + off[h];
      std::int64_t from = 0;
      if (fh > p) {
        pivot[h] = choose_middle(scores[h], l, fh - p, region);
        from = fh - p;
      } else {
        for (std::int64_t k = 0; k < l.n_middle(); ++k)
          region[k] = static_cast<std::int32_t>(l.lo + k);
      }
      lo[h] = static_cast<std::int32_t>(off[h] + from);
      hi[h] = static_cast<std::int32_t>(off[h] + l.n_middle());
      HEED_DASSERT(lo[h] <= hi[h] && hi[h] <= off[h + 1]);  // inside head h's scratch region
    }
    HEED_DASSERT(left >= 0);
    return left;
  }

  // Step 3: the protected entries past the floors, level L taking from every head its protected
  // entries of order < L, as many levels as fit (one more entry each from the lower heads of the
  // level that does not). Returns the slots left.
  std::int64_t take_protected(std::int64_t left) noexcept {
    std::int64_t max_prot = 0;
    for (int h = 0; h < heads; ++h) max_prot = std::max(max_prot, layout(h).n_protected());
    auto taken_below = [&](std::int64_t level) {
      std::int64_t c = 0;
      for (int h = 0; h < heads; ++h)
        c += std::max<std::int64_t>(0, std::min(layout(h).n_protected(), level) - n_keep[h]);
      return c;
    };
    std::int64_t level = max_prot;
    if (taken_below(level) > left) {
      std::int64_t a = 0, b = max_prot;  // taken_below(a) <= left < taken_below(b)
      while (b - a > 1) {
        const std::int64_t m = a + (b - a) / 2;
        (taken_below(m) <= left ? a : b) = m;
      }
      level = a;
    }
    std::int64_t extra = left - taken_below(level);
    if (level == max_prot) extra = 0;
    for (int h = 0; h < heads; ++h) {
      const std::int64_t p = layout(h).n_protected();
      std::int64_t kp = std::max(n_keep[h], std::min(p, level));
      if (extra > 0 && kp == level && level < p) {
        ++kp;
        --extra;
      }
      left -= kp - n_keep[h];
      n_keep[h] = kp;
    }
    HEED_DASSERT(left >= 0);  // step 3 never takes more than the slots left
    return left;
  }

  // Step 4: the best `need` candidates across heads, in global order (rank key, then the lower
  // head). A quickselect over the per-head ranges: cand[start_h, lo[h]) are taken,
  // cand[lo[h], hi[h]) undecided, the rest of the candidates rejected.
  void take_best(std::int64_t need) noexcept {
    std::uint32_t rng = 0x2545f491u;  // a fixed pivot sequence: results do not depend on it
    while (need > 0) {
      std::int64_t active = 0;
      for (int h = 0; h < heads; ++h) active += hi[h] - lo[h];
      if (need >= active) {
        for (int h = 0; h < heads; ++h) lo[h] = hi[h];
        break;
      }
      rng = rng * 1664525u + 1013904223u;
      std::int64_t r =
          static_cast<std::int64_t>((std::uint64_t(rng) * std::uint64_t(active)) >> 32);
      int ph = 0;
      for (; r >= hi[ph] - lo[ph]; ++ph) r -= hi[ph] - lo[ph];
      HEED_DASSERT(ph < heads);
      const std::int32_t pi = cand[lo[ph] + r];
      const std::uint64_t pk = rank_key(scores[ph][pi], pi);
      std::int64_t count = 0;
      for (int h = 0; h < heads; ++h) {
        mid[h] = static_cast<std::int32_t>(
            std::partition(cand + lo[h], cand + hi[h],
                           [&](std::int32_t i) { return above(h, i, pk, ph); }) -
            cand);
        count += mid[h] - lo[h];
      }
      if (count > need) {
        for (int h = 0; h < heads; ++h) hi[h] = mid[h];
        continue;
      }
      for (int h = 0; h < heads; ++h) lo[h] = mid[h];
      need -= count;
      if (need > 0) {  // the pivot is the best of what is left: take it
        std::int32_t* at = std::find(cand + lo[ph], cand + hi[ph], pi);
        std::swap(*at, cand[lo[ph]]);
        ++lo[ph];
        --need;
      }
    }
  }

  // Last: each head's kept indices in order: its protected entries kept, its floor (at or above
  // its pivot) and the candidates taken in step 4 (at or above the worst of them).
  void emit_all() const noexcept {
    std::uint64_t gkey = 0;
    int ghead = -1;
    for (int h = 0; h < heads; ++h) {
      const std::int64_t start =
          off[h] + std::max<std::int64_t>(0, std::min(n[h], floor) - layout(h).n_protected());
      for (std::int64_t k = start; k < lo[h]; ++k) {
        const std::int32_t i = cand[k];
        if (ghead < 0 || !above(h, i, gkey, ghead)) {
          gkey = rank_key(scores[h][i], i);
          ghead = h;
        }
      }
    }
    for (int h = 0; h < heads; ++h) {
      const float* s = scores[h];
      const bool has_floor = pivot[h] >= 0;
      const std::uint64_t hkey = has_floor ? rank_key(s[pivot[h]], pivot[h]) : 0;
      n_keep[h] = select_detail::emit(
          layout(h), n_keep[h],
          [&](std::int64_t i) {
            const std::uint64_t k = rank_key(s[i], i);
            if (has_floor && k >= hkey) return true;
            return ghead >= 0 && (k > gkey || (k == gkey && h <= ghead));
          },
          keep[h]);
    }
  }
};

}  // namespace select_detail

// AdaKV: one layer of `heads` KV heads with their own lengths n[h], one total budget B.
//  1. If B >= sum n[h], everything is kept.
//  2. Floors: f = floor(floor_fraction * B / heads) computed in double (capped at B / heads),
//     f_h = min(n[h], f); head h keeps its f_h best as select_top_k would (protected first).
//  3. The remaining slots R = B - sum f_h go first to the protected entries that did not fit in
//     their head's floor; if they do not all fit, they are taken round-robin by protection
//     order (the next protected entry of every head, lower head first, then the next ...).
//  4. The slots left go to the best-ranked remaining entries across all heads (scores compared
//     directly; equal score and index: the lower head wins).
// Exactly min(B, sum n[h]) entries are kept in total. keep[h] (room for n[h]) gets the sorted
// indices of head h and n_keep[h] their count. scores[h] and keep[h] may be null when n[h] is 0.
// sum n[h] must be <= 2^31 - 1.
inline status select_global_top_k(const float* const* scores, const std::int64_t* n, int heads,
                                  std::int64_t budget, double floor_fraction,
                                  const protect_spec& protect, std::int32_t* const* keep,
                                  std::int64_t* n_keep, std::int32_t* scratch) noexcept {
  if (heads < 0 || budget < 0 || !(floor_fraction >= 0.0 && floor_fraction <= 1.0) ||
      protect.n_sink < 0 || protect.n_recent < 0)
    return status::invalid_argument;
  if (heads == 0) return status::ok;
  if (n == nullptr) return status::null_pointer;
  std::int64_t total = 0;
  for (int h = 0; h < heads; ++h) {
    if (n[h] < 0 || n[h] > select_detail::max_len) return status::invalid_argument;
    total += n[h];
  }
  if (total > select_detail::max_len) return status::invalid_argument;
  if (scores == nullptr || keep == nullptr || n_keep == nullptr) return status::null_pointer;
  for (int h = 0; h < heads; ++h)
    if (n[h] > 0 && (scores[h] == nullptr || keep[h] == nullptr)) return status::null_pointer;
  if (total > 0 && scratch == nullptr) return status::null_pointer;

  select_detail::global_top_k g{scores, n, heads, protect, keep, n_keep, scratch};
  if (budget >= total) {
    g.keep_all();
    return status::ok;
  }
  std::int64_t left = g.take_floors(budget, floor_fraction);  // step 2
  left = g.take_protected(left);                              // step 3
  g.take_best(left);                                          // step 4
  g.emit_all();
  HEED_DASSERT(select_detail::sum(n_keep, heads) == budget);  // budget < total here
  return status::ok;
}

}  // namespace heed
