// The consumer's own reference: naive attention in double precision, written independently of
// heed (no heed headers), plus exact f16 / bf16 encoders for values on a coarse grid.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace consumer {

struct shape {
  int lq, lk, hq, hkv, d;
  bool causal;
  int q_offset;  // position of query row 0 among the keys
};

// q, o: [lq, hq, d]. k(j, h, c) and v(j, h, c) give the K/V elements. Also returns the LSE
// [hq, lq] when lse is non-null.
template <class K, class V>
void naive_attention(const shape& s, const std::vector<double>& q, K k, V v, std::vector<double>& o,
                     std::vector<double>* lse = nullptr) {
  const double scale = 1.0 / std::sqrt(double(s.d));
  o.assign(std::size_t(s.lq) * s.hq * s.d, 0.0);
  if (lse) lse->assign(std::size_t(s.hq) * s.lq, 0.0);
  std::vector<double> logit(s.lk);
  for (int h = 0; h < s.hq; ++h) {
    const int kh = h / (s.hq / s.hkv);
    for (int i = 0; i < s.lq; ++i) {
      const int last = s.causal ? s.q_offset + i : s.lk - 1;
      double m = -INFINITY;
      for (int j = 0; j <= last; ++j) {
        double dot = 0;
        for (int c = 0; c < s.d; ++c) dot += q[(std::size_t(i) * s.hq + h) * s.d + c] * k(j, kh, c);
        logit[j] = dot * scale;
        m = std::max(m, logit[j]);
      }
      double den = 0;
      for (int j = 0; j <= last; ++j) den += std::exp(logit[j] - m);
      for (int j = 0; j <= last; ++j) {
        const double p = std::exp(logit[j] - m) / den;
        for (int c = 0; c < s.d; ++c) o[(std::size_t(i) * s.hq + h) * s.d + c] += p * v(j, kh, c);
      }
      if (lse) (*lse)[std::size_t(h) * s.lq + i] = m + std::log(den);
    }
  }
}

// Deterministic pseudo-random integers.
struct rng {
  std::uint64_t x = 0x2545f4914f6cdd1dull;
  int next(int lo, int hi) {  // in [lo, hi]
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return lo + int(x % std::uint64_t(hi - lo + 1));
  }
  // A value on the grid k / 1024, |k| <= 1024: exact in f32, f16 and (for k % 8 == 0) bf16.
  double uniform() { return next(-1024, 1024) / 1024.0; }
};

// IEEE binary16 bits of x, exact for the grid values above (normal range, <= 11 significant bits).
inline std::uint16_t f16_bits(double x) {
  if (x == 0) return 0;
  const std::uint16_t sign = x < 0 ? 0x8000 : 0;
  int e;
  const double f = std::frexp(std::fabs(x), &e);  // |x| = f * 2^e, f in [0.5, 1)
  const int mant = int((f * 2 - 1) * 1024 + 0.5);
  return std::uint16_t(sign | ((e - 1 + 15) << 10) | mant);
}

// bfloat16 bits of x: the upper half of the f32 bits (exact for values with <= 8 significant bits).
inline std::uint16_t bf16_bits(double x) {
  const float f = float(x);
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return std::uint16_t(u >> 16);
}

inline double max_abs_diff(const float* a, const std::vector<double>& b) {
  double e = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double x = std::fabs(double(a[i]) - b[i]);
    if (!(x <= e)) e = x;  // NaN sticks
  }
  return e;
}

}  // namespace consumer
