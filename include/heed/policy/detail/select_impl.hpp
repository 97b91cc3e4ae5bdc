// Internals of heed/policy/select.hpp: the rank key, the protected layout of one head, the
// exact mass accumulator and the per-head selection core. Not a public header. Their
// preconditions (index ranges, counts, scratch) are HEED_DASSERTs: checked in debug builds, the
// public functions of select.hpp having validated their arguments.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "heed/config.hpp"

namespace heed {

namespace select_detail {

// Longest head the selection functions accept (kept indices are int32).
constexpr std::int64_t max_len = 2147483647;

inline std::uint32_t float_bits(float x) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// A key whose unsigned order is the score order of the ranking rule: NaN (any sign, any
// payload) maps to 0, below -inf; -0 and +0 map to the same key.
inline std::uint32_t rank_key(float x) noexcept {
  std::uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0;
  if (u == 0x80000000u) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The full ranking key of entry i (0 <= i < 2^31): higher key = ranks above.
inline std::uint64_t rank_key(float x, std::int64_t i) noexcept {
  return (std::uint64_t(rank_key(x)) << 32) | std::uint64_t(std::uint32_t(i));
}

// n[0] + ... + n[count - 1] (for the debug checks of select_global_top_k).
inline std::int64_t sum(const std::int64_t* n, int count) noexcept {
  std::int64_t s = 0;
  for (int i = 0; i < count; ++i) s += n[i];
  return s;
}

// Orders indices best-ranked first (a "less than" for std::nth_element).
struct ranks_first {
  const float* s;
  bool operator()(std::int32_t a, std::int32_t b) const noexcept {
    return rank_key(s[a], a) > rank_key(s[b], b);
  }
};

// The protected layout of one head: protected [0, lo) and [hi, n), the middle [lo, hi) is
// selected by rank. Protection order (who goes first when the budget is short): sinks by
// ascending index, then recent entries by descending index.
struct head_layout {
  std::int64_t n = 0, lo = 0, hi = 0;
  std::int64_t n_protected() const noexcept { return lo + (n - hi); }
  std::int64_t n_middle() const noexcept { return hi - lo; }
};

inline head_layout make_layout(std::int64_t n, std::int64_t n_sink,
                               std::int64_t n_recent) noexcept {
  HEED_DASSERT(n >= 0 && n <= max_len && n_sink >= 0 && n_recent >= 0);
  head_layout l;
  l.n = n;
  l.lo = std::min(n_sink, n);
  l.hi = std::max(l.lo, n - std::min(n_recent, n));
  return l;
}

// Writes, ascending, the first n_prot protected entries (in protection order) and the middle
// entries i for which keep_mid(i) holds. Returns the count written.
template <class KeepMid>
std::int64_t emit(const head_layout& l, std::int64_t n_prot, const KeepMid& keep_mid,
                  std::int32_t* keep) noexcept {
  HEED_DASSERT(n_prot >= 0 && n_prot <= l.n_protected());
  HEED_DASSERT(keep != nullptr || l.n == 0);
  std::int64_t c = 0;
  const std::int64_t sinks = std::min(n_prot, l.lo), recent = n_prot - sinks;
  for (std::int64_t i = 0; i < sinks; ++i) keep[c++] = static_cast<std::int32_t>(i);
  for (std::int64_t i = l.lo; i < l.hi; ++i)
    if (keep_mid(i)) keep[c++] = static_cast<std::int32_t>(i);
  for (std::int64_t i = l.n - recent; i < l.n; ++i) keep[c++] = static_cast<std::int32_t>(i);
  return c;
}

// Puts the middle indices of l into idx[0, n_middle) and moves the m best-ranked to the front
// (1 <= m <= n_middle). Returns the m-th best (the pivot): the m best are exactly the middle
// entries whose rank key is >= the pivot's.
inline std::int32_t choose_middle(const float* s, const head_layout& l, std::int64_t m,
                                  std::int32_t* idx) noexcept {
  const std::int64_t mid = l.n_middle();
  HEED_DASSERT(m >= 1 && m <= mid && idx != nullptr);  // idx: scratch of n_middle elements
  for (std::int64_t k = 0; k < mid; ++k) idx[k] = static_cast<std::int32_t>(l.lo + k);
  std::nth_element(idx, idx + (m - 1), idx + mid, ranks_first{s});
  return idx[m - 1];
}

// Most middle entries a selection drops through drop_few (one scan) instead of choose_middle.
constexpr int few_drops = 16;

// rank_key(x) without branches (the scans below vectorize it).
inline std::uint32_t rank_key_bits(std::uint32_t u) noexcept {
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  u = u == 0x80000000u ? 0u : u;
  const std::uint32_t key = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return nan ? 0u : key;
}

// Writes first, first + 1, ..., last - 1 at keep[c...]; returns the new count.
inline std::int64_t emit_run(std::int32_t* keep, std::int64_t c, std::int64_t first,
                             std::int64_t last) noexcept {
  for (std::int64_t i = first; i < last; ++i) keep[c + (i - first)] = static_cast<std::int32_t>(i);
  return c + (last > first ? last - first : 0);
}

// Keeps every middle entry except the `drop` lowest-ranked (0 <= drop <= few_drops, drop <
// n_middle), for the steady state of an exact budget (one entry out per step) without a
// selection over the head. The 32-bit rank keys go to `keys` (n_middle) in one vectorized pass;
// a scan then holds the lowest full keys seen in a small sorted array, skipping every block of 16
// with no key below the array's largest (rank keys are distinct with the index, and a later
// index with an equal 32-bit key ranks above). Same keep-set as choose_middle's pivot.
inline std::int64_t drop_few(const float* s, const head_layout& l, std::int64_t n_prot, int drop,
                             std::int32_t* keep, std::uint32_t* keys) noexcept {
  const std::int64_t mid = l.n_middle();
  HEED_DASSERT(drop >= 0 && drop <= few_drops && drop < mid);
  HEED_DASSERT(n_prot >= 0 && n_prot <= l.n_protected() && keys != nullptr);
  const float* sm = s + l.lo;
  for (std::int64_t k = 0; k < mid; ++k) keys[k] = rank_key_bits(float_bits(sm[k]));
  std::uint64_t low[few_drops];
  int c = 0;
  auto insert = [&](std::int64_t k) {
    const std::uint64_t key = (std::uint64_t(keys[k]) << 32) | std::uint64_t(l.lo + k);
    if (c == drop && (drop == 0 || key >= low[drop - 1])) return;
    int at = c < drop ? c++ : drop - 1;  // the largest kept low key falls out when full
    while (at > 0 && low[at - 1] > key) {
      low[at] = low[at - 1];
      --at;
    }
    low[at] = key;
  };
  constexpr std::int64_t block = 16;
  std::int64_t k = 0;
  for (; k < mid && c < drop; ++k) insert(k);
  for (; k + block <= mid; k += block) {
    if (drop == 0) break;
    const std::uint32_t thr = static_cast<std::uint32_t>(low[drop - 1] >> 32);
    bool any = false;
    for (std::int64_t j = 0; j < block; ++j) any |= keys[k + j] < thr;
    if (!any) continue;
    for (std::int64_t j = 0; j < block; ++j) insert(k + j);
  }
  for (; k < mid; ++k) insert(k);
  std::int32_t out[few_drops];
  for (int j = 0; j < drop; ++j) out[j] = static_cast<std::int32_t>(low[j] & 0xffffffffu);
  std::sort(out, out + drop);
  // Sinks (as emit: the first min(n_prot, lo)), the middle around the dropped entries, recent.
  const std::int64_t sinks = std::min(n_prot, l.lo), recent = n_prot - sinks;
  std::int64_t n = emit_run(keep, 0, 0, sinks), from = l.lo;
  for (int j = 0; j < drop; ++j) {
    n = emit_run(keep, n, from, out[j]);
    from = std::int64_t(out[j]) + 1;
  }
  n = emit_run(keep, n, from, l.hi);
  return emit_run(keep, n, l.n - recent, l.n);
}

// Keeps exactly k (0 <= k <= n) entries of one head: protected first, then the best-ranked
// middle entries. scratch holds n_middle elements. Returns k.
inline std::int64_t top_k_head(const float* s, const head_layout& l, std::int64_t k,
                               std::int32_t* keep, std::int32_t* scratch) noexcept {
  const std::int64_t p = l.n_protected();
  HEED_DASSERT(k >= 0 && k <= l.n);
  HEED_DASSERT(k <= p || scratch != nullptr);  // scratch: n_middle elements
  if (k <= p)
    return emit(
        l, k, [](std::int64_t) { return false; }, keep);
  if (l.n_middle() - (k - p) <= few_drops)
    return drop_few(s, l, p, static_cast<int>(l.n_middle() - (k - p)), keep,
                    reinterpret_cast<std::uint32_t*>(scratch));
  const std::int32_t pivot = choose_middle(s, l, k - p, scratch);
  const std::uint64_t kp = rank_key(s[pivot], pivot);
  return emit(
      l, p, [&](std::int64_t i) { return rank_key(s[i], i) >= kp; }, keep);
}

// True when x has a positive mass for select_coverage (finite and > 0; +inf is rejected before).
inline bool has_mass(float x) noexcept {
  const std::uint32_t u = float_bits(x);
  return (u >> 31) == 0 && u != 0 && (u >> 23) != 0xffu;
}

// An exact sum of float masses (negative, NaN and zero add nothing; +inf must not be added):
// a fixed-point number in units of 2^-149 (the smallest float), in 32-bit digits held in
// 64-bit words so that up to 2^31 additions never carry out of a word. value() rounds the exact
// sum to the nearest double (ties to even), so it does not depend on the order of additions.
class exact_mass {
 public:
  void add(float x) noexcept {
    if (!has_mass(x)) return;
    const std::uint32_t u = float_bits(x), e = u >> 23, f = u & 0x7fffffu;
    const std::uint64_t mant = e != 0 ? (f | 0x800000u) : f;
    const std::uint32_t pos = (e != 0 ? e : 1u) - 1u;  // value = mant * 2^pos units
    const std::uint64_t v = mant << (pos & 31u);
    d_[pos >> 5] += v & 0xffffffffu;
    d_[(pos >> 5) + 1] += v >> 32;
  }

  double value() const noexcept {
    std::uint64_t u[kDigits];
    for (int k = 0; k < kDigits; ++k) u[k] = d_[k];
    for (int k = 0; k + 1 < kDigits; ++k) {
      u[k + 1] += u[k] >> 32;
      u[k] &= 0xffffffffu;
    }
    int top = kDigits - 1;
    while (top >= 0 && u[top] == 0) --top;
    if (top < 0) return 0.0;
    const std::uint64_t x2 = u[top], x1 = top >= 1 ? u[top - 1] : 0, x0 = top >= 2 ? u[top - 2] : 0;
    bool sticky = false;
    for (int k = 0; k < top - 2; ++k) sticky = sticky || u[k] != 0;
    int lz = 0;
    while ((x2 & (0x80000000u >> lz)) == 0) ++lz;
    std::uint64_t w = ((x2 << 32) | x1) << lz;
    if (lz > 0) w |= x0 >> (32 - lz);
    const std::uint64_t rest = lz > 0 ? ((x0 << lz) & 0xffffffffu) : x0;
    if (sticky || rest != 0) w |= 1u;  // below the rounding bit: only breaks exact ties
    return std::ldexp(static_cast<double>(w), 32 * (top - 1) - lz - 149);
  }

 private:
  static constexpr int kDigits = 10;  // 320 bits >= 2^31 * (largest float / 2^-149)
  std::uint64_t d_[kDigits] = {};
};

}  // namespace select_detail
}  // namespace heed
