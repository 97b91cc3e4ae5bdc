// Consumer of heed::headers alone: the header-only kernel dense_attention_t at the compile-time
// default arch, checked against the consumer's own naive implementation. Links no libheed.
#include <cstdio>
#include <heed/attention/dense.hpp>
#include <vector>

#include "naive.hpp"

int main() {
  const consumer::shape s{33, 33, 4, 2, 64, true, 0};
  consumer::rng r;
  const std::size_t nq = std::size_t(s.lq) * s.hq * s.d, nkv = std::size_t(s.lk) * s.hkv * s.d;
  std::vector<float> q(nq), k(nkv), v(nkv), o(nq, -1.f);
  std::vector<double> qd(nq), kd(nkv), vd(nkv), ref;
  for (std::size_t i = 0; i < nq; ++i) qd[i] = q[i] = float(r.uniform());
  for (std::size_t i = 0; i < nkv; ++i) {
    kd[i] = k[i] = float(r.uniform());
    vd[i] = v[i] = float(r.uniform());
  }
  auto k_at = [&](int j, int h, int c) { return kd[(std::size_t(j) * s.hkv + h) * s.d + c]; };
  auto v_at = [&](int j, int h, int c) { return vd[(std::size_t(j) * s.hkv + h) * s.d + c]; };
  consumer::naive_attention(s, qd, k_at, v_at, ref);

  heed::dense_params p;
  p.q = heed::make_view(q.data(), s.lq, s.hq, s.d);
  p.k = heed::make_view(k.data(), s.lk, s.hkv, s.d);
  p.v = heed::make_view(v.data(), s.lk, s.hkv, s.d);
  p.o = heed::make_mutable_view(o.data(), s.lq, s.hq, s.d);
  std::vector<unsigned char> ws(heed::dense_workspace_size_t(p, 1));
  const heed::status st = heed::dense_attention_t(p, heed::no_variant{}, {ws.data(), ws.size()});
  const double err = consumer::max_abs_diff(o.data(), ref);
  std::printf("consumer_headers: status=%s max|o-ref|=%.3g\n", heed::status_string(st), err);
  return st == heed::status::ok && err < 2e-4 ? 0 : 1;
}
