// Naive keep-set selection: the reference heed::select_* are compared with.
//
// Written from the rules, for clarity, not speed: every head is turned into one priority list
// (the protected entries in protection order -- sinks by ascending index, then recent entries
// by descending index -- followed by every other entry, best-ranked first, by a full sort), and
// each policy reads that list. Score comparisons are done in double with explicit NaN checks.
// Coverage sums are exact then rounded once, with Shewchuk's partials (as Python's math.fsum).
// Results are index sets sorted ascending.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace heed_ref {

// The ranking rule: a higher score ranks above; NaN below every number; equal scores (or both
// NaN) rank the higher index above.
inline bool select_ranks_above(float sa, std::int64_t ia, float sb, std::int64_t ib) {
  const double a = sa, b = sb;
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan && b_nan) return ia > ib;
  if (a_nan) return false;
  if (b_nan) return true;
  if (a > b) return true;
  if (a < b) return false;
  return ia > ib;
}

inline bool select_is_protected(std::int64_t i, std::int64_t n, std::int64_t n_sink,
                                std::int64_t n_recent) {
  return i < n_sink || i + n_recent >= n;
}

// The priority list of one head (see above). n_protected gets the number of protected entries.
inline std::vector<std::int64_t> select_priority(const std::vector<float>& s, std::int64_t n_sink,
                                                 std::int64_t n_recent,
                                                 std::int64_t* n_protected = nullptr) {
  const std::int64_t n = static_cast<std::int64_t>(s.size());
  std::vector<std::int64_t> list, others;
  for (std::int64_t i = 0; i < n; ++i)
    if (i < n_sink) list.push_back(i);
  for (std::int64_t i = n - 1; i >= 0; --i)
    if (i >= n_sink && select_is_protected(i, n, n_sink, n_recent)) list.push_back(i);
  if (n_protected) *n_protected = static_cast<std::int64_t>(list.size());
  for (std::int64_t i = 0; i < n; ++i)
    if (!select_is_protected(i, n, n_sink, n_recent)) others.push_back(i);
  std::sort(others.begin(), others.end(), [&](std::int64_t a, std::int64_t b) {
    return select_ranks_above(s[std::size_t(a)], a, s[std::size_t(b)], b);
  });
  list.insert(list.end(), others.begin(), others.end());
  return list;
}

inline std::vector<std::int64_t> select_sorted(std::vector<std::int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

inline std::vector<std::int64_t> select_top_k(const std::vector<float>& s, std::int64_t budget,
                                              std::int64_t n_sink, std::int64_t n_recent) {
  const auto list = select_priority(s, n_sink, n_recent);
  const std::size_t k = std::min(static_cast<std::size_t>(budget), list.size());
  return select_sorted(std::vector<std::int64_t>(list.begin(), list.begin() + std::ptrdiff_t(k)));
}

// Clamps a chosen set (member[i]) to min(max(c, min_keep), max_keep, n) entries: too few adds
// the first non-members of the priority list, too many keeps the first members of it.
inline std::vector<std::int64_t> select_clamp(const std::vector<float>& s,
                                              const std::vector<bool>& member,
                                              std::int64_t min_keep, std::int64_t max_keep,
                                              std::int64_t n_sink, std::int64_t n_recent) {
  const std::int64_t n = static_cast<std::int64_t>(s.size());
  const std::int64_t c = std::count(member.begin(), member.end(), true);
  std::int64_t t = std::max(c, min_keep);
  t = std::min(t, max_keep);
  t = std::min(t, n);
  const auto list = select_priority(s, n_sink, n_recent);
  std::vector<std::int64_t> out;
  if (t >= c) {
    for (std::int64_t i = 0; i < n; ++i)
      if (member[std::size_t(i)]) out.push_back(i);
    for (std::int64_t i : list) {
      if (std::int64_t(out.size()) == t) break;
      if (!member[std::size_t(i)]) out.push_back(i);
    }
  } else {
    for (std::int64_t i : list) {
      if (std::int64_t(out.size()) == t) break;
      if (member[std::size_t(i)]) out.push_back(i);
    }
  }
  return select_sorted(out);
}

inline std::vector<std::int64_t> select_threshold(const std::vector<float>& s, float tau,
                                                  std::int64_t min_keep, std::int64_t max_keep,
                                                  std::int64_t n_sink, std::int64_t n_recent) {
  const std::int64_t n = static_cast<std::int64_t>(s.size());
  std::vector<bool> member(s.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = s[std::size_t(i)];
    member[std::size_t(i)] = select_is_protected(i, n, n_sink, n_recent) ||
                             (!std::isnan(x) && !std::isnan(double(tau)) && x >= double(tau));
  }
  return select_clamp(s, member, min_keep, max_keep, n_sink, n_recent);
}

// An exact sum of doubles rounded once to nearest (Shewchuk's non-overlapping partials).
class select_fsum {
 public:
  void add(double x) {
    std::size_t kept = 0;
    for (std::size_t j = 0; j < p_.size(); ++j) {
      double y = p_[j];
      if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
      const double hi = x + y, lo = y - (hi - x);
      if (lo != 0.0) p_[kept++] = lo;
      x = hi;
    }
    p_.resize(kept);
    p_.push_back(x);
  }
  double value() const {
    std::size_t n = p_.size();
    if (n == 0) return 0.0;
    double hi = p_[--n], lo = 0.0;
    while (n > 0) {
      const double x = hi, y = p_[--n];
      hi = x + y;
      lo = y - (hi - x);
      if (lo != 0.0) break;
    }
    // Half-way cases: the partials below decide the direction.
    if (n > 0 && ((lo < 0.0 && p_[n - 1] < 0.0) || (lo > 0.0 && p_[n - 1] > 0.0))) {
      const double y = lo * 2.0, x = hi + y;
      if (y == x - hi) hi = x;
    }
    return hi;
  }

 private:
  std::vector<double> p_;
};

// The mass of a coverage score: the score when it is a number > 0, else 0 (+inf is an error
// the caller checks).
inline double select_mass(float x) {
  const double d = x;
  return (std::isnan(d) || d <= 0.0) ? 0.0 : d;
}

// Coverage: the protected entries, then the others in priority order until the rounded mass of
// the set reaches gamma * (rounded total mass) -- for gamma 1, until no entry with a mass is
// left; then clamped as select_threshold.
inline std::vector<std::int64_t> select_coverage(const std::vector<float>& s, double gamma,
                                                 std::int64_t min_keep, std::int64_t max_keep,
                                                 std::int64_t n_sink, std::int64_t n_recent) {
  const std::int64_t n = static_cast<std::int64_t>(s.size());
  select_fsum total, got;
  for (float x : s) total.add(select_mass(x));
  const double target = gamma * total.value();
  std::int64_t n_prot = 0;
  const auto list = select_priority(s, n_sink, n_recent, &n_prot);
  std::int64_t massive_left = 0;  // entries with a mass not in the set yet
  for (std::int64_t k = n_prot; k < n; ++k)
    massive_left += select_mass(s[std::size_t(list[std::size_t(k)])]) > 0.0 ? 1 : 0;
  std::vector<bool> member(s.size());
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t i = list[std::size_t(k)];
    if (k >= n_prot && (gamma == 1.0 ? massive_left == 0 : got.value() >= target)) break;
    if (k >= n_prot && select_mass(s[std::size_t(i)]) > 0.0) --massive_left;
    member[std::size_t(i)] = true;
    got.add(select_mass(s[std::size_t(i)]));
  }
  return select_clamp(s, member, min_keep, max_keep, n_sink, n_recent);
}

// AdaKV global top-k (see heed/policy/select.hpp for the rules). Returns one sorted set per head.
inline std::vector<std::vector<std::int64_t>> select_global_top_k(
    const std::vector<std::vector<float>>& s, std::int64_t budget, double floor_fraction,
    std::int64_t n_sink, std::int64_t n_recent) {
  const std::size_t heads = s.size();
  std::vector<std::vector<std::int64_t>> out(heads);
  std::int64_t total = 0;
  for (const auto& v : s) total += static_cast<std::int64_t>(v.size());
  if (budget >= total) {
    for (std::size_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < std::int64_t(s[h].size()); ++i) out[h].push_back(i);
    return out;
  }
  const std::int64_t hd = static_cast<std::int64_t>(heads);
  std::int64_t f =
      static_cast<std::int64_t>(std::floor(floor_fraction * double(budget) / double(hd)));
  f = std::min(f, budget / hd);
  struct entry {
    std::size_t h;
    std::int64_t i;
    bool prot;
    std::int64_t pos;  // position in the head's priority list
  };
  std::vector<entry> rest;
  std::int64_t left = budget;
  for (std::size_t h = 0; h < heads; ++h) {
    std::int64_t n_prot = 0;
    const auto list = select_priority(s[h], n_sink, n_recent, &n_prot);
    const std::int64_t fh = std::min<std::int64_t>(f, std::int64_t(list.size()));
    left -= fh;
    for (std::int64_t k = 0; k < std::int64_t(list.size()); ++k) {
      if (k < fh)
        out[h].push_back(list[std::size_t(k)]);
      else
        rest.push_back({h, list[std::size_t(k)], k < n_prot, k});
    }
  }
  std::sort(rest.begin(), rest.end(), [&](const entry& a, const entry& b) {
    if (a.prot != b.prot) return a.prot;
    if (a.prot) return a.pos != b.pos ? a.pos < b.pos : a.h < b.h;
    const float sa = s[a.h][std::size_t(a.i)], sb = s[b.h][std::size_t(b.i)];
    if (select_ranks_above(sa, a.i, sb, b.i)) return true;
    if (select_ranks_above(sb, b.i, sa, a.i)) return false;
    return a.h < b.h;
  });
  for (std::int64_t k = 0; k < left; ++k)
    out[rest[std::size_t(k)].h].push_back(rest[std::size_t(k)].i);
  for (auto& v : out) v = select_sorted(v);
  return out;
}

}  // namespace heed_ref
