// Consumer of the compiled library heed::heed: runs heed::dense_attention on small random
// problems (prefill, chunked prefill, decode; f32 / bf16 / f16 K/V; 1 and 2 threads) and compares
// with its own naive double-precision implementation. Exits non-zero on mismatch.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <heed/attention/dense_dispatch.hpp>
#include <heed/core/thread_pool.hpp>
#include <heed/version.hpp>
#include <vector>

#include "naive.hpp"

namespace {

int failures = 0;

enum class kv_type { f32, f16, bf16 };

void run(const char* name, const consumer::shape& s, kv_type kt, bool head_major_kv) {
  consumer::rng r;
  const std::size_t nq = std::size_t(s.lq) * s.hq * s.d, nkv = std::size_t(s.lk) * s.hkv * s.d;
  std::vector<float> q(nq);
  std::vector<double> qd(nq), kd(nkv), vd(nkv);
  for (std::size_t i = 0; i < nq; ++i) qd[i] = q[i] = float(r.uniform());
  for (std::size_t i = 0; i < nkv; ++i) {
    if (kt == kv_type::bf16) {
      kd[i] = r.next(-128, 128) / 128.0;
      vd[i] = r.next(-128, 128) / 128.0;
    } else {
      kd[i] = r.uniform();
      vd[i] = r.uniform();
    }
  }
  // K/V storage in the requested layout: element (j, h, c).
  auto index = [&](int j, int h, int c) {
    return head_major_kv ? (std::size_t(h) * s.lk + j) * s.d + c
                         : (std::size_t(j) * s.hkv + h) * s.d + c;
  };
  std::vector<float> kf(nkv), vf(nkv);
  std::vector<std::uint16_t> kh(nkv), vh(nkv);
  for (int j = 0; j < s.lk; ++j)
    for (int h = 0; h < s.hkv; ++h)
      for (int c = 0; c < s.d; ++c) {
        const std::size_t src = (std::size_t(j) * s.hkv + h) * s.d + c, dst = index(j, h, c);
        kf[dst] = float(kd[src]);
        vf[dst] = float(vd[src]);
        kh[dst] = kt == kv_type::f16 ? consumer::f16_bits(kd[src]) : consumer::bf16_bits(kd[src]);
        vh[dst] = kt == kv_type::f16 ? consumer::f16_bits(vd[src]) : consumer::bf16_bits(vd[src]);
      }

  const heed::layout kv_layout =
      head_major_kv ? heed::layout::head_seq_dim : heed::layout::seq_head_dim;
  const heed::dtype kv_dtype = kt == kv_type::f32   ? heed::dtype::f32
                               : kt == kv_type::f16 ? heed::dtype::f16
                                                    : heed::dtype::bf16;
  const void* kp = kt == kv_type::f32 ? static_cast<const void*>(kf.data()) : kh.data();
  const void* vp = kt == kv_type::f32 ? static_cast<const void*>(vf.data()) : vh.data();

  std::vector<double> ref, ref_lse;
  auto k_at = [&](int j, int h, int c) { return kd[(std::size_t(j) * s.hkv + h) * s.d + c]; };
  auto v_at = [&](int j, int h, int c) { return vd[(std::size_t(j) * s.hkv + h) * s.d + c]; };
  consumer::naive_attention(s, qd, k_at, v_at, ref, &ref_lse);

  std::vector<float> out_1thread;
  for (int threads : {1, 2}) {
    std::vector<float> o(nq, -1.f), lse(std::size_t(s.hq) * s.lq, -1.f);
    heed::dense_params p;
    p.q = heed::make_view(q.data(), s.lq, s.hq, s.d);
    p.k = heed::make_view<const void*>(kp, kv_dtype, s.lk, s.hkv, s.d, kv_layout);
    p.v = heed::make_view<const void*>(vp, kv_dtype, s.lk, s.hkv, s.d, kv_layout);
    p.o = heed::make_mutable_view(o.data(), s.lq, s.hq, s.d);
    p.causal = s.causal;
    p.q_offset = s.q_offset;
    p.lse = lse.data();

    heed::thread_pool_executor pool(threads);
    std::vector<unsigned char> ws(heed::dense_workspace_size(p, pool.concurrency()));
    const heed::status st = heed::dense_attention(p, {ws.data(), ws.size()}, pool);
    const double err = consumer::max_abs_diff(o.data(), ref);
    const double err_lse = consumer::max_abs_diff(lse.data(), ref_lse);
    const bool same = threads == 1 || std::memcmp(o.data(), out_1thread.data(), nq * 4) == 0;
    const bool ok = st == heed::status::ok && err < 2e-4 && err_lse < 2e-4 && same;
    std::printf("%-34s threads=%d status=%s max|o-ref|=%.3g max|lse-ref|=%.3g%s %s\n", name,
                threads, heed::status_string(st), err, err_lse,
                same ? "" : " (differs from 1 thread)", ok ? "ok" : "FAIL");
    if (!ok) ++failures;
    if (threads == 1) out_1thread = o;
  }
}

}  // namespace

int main() {
  std::printf("heed %d.%d.%d, best isa %s\n", heed::version_major, heed::version_minor,
              heed::version_patch, heed::isa_name(heed::best_isa()));
  //             lq  lk  hq hkv  d  causal q_offset
  run("prefill causal f32 GQA d=128", {45, 45, 8, 2, 128, true, 0}, kv_type::f32, false);
  run("prefill non-causal f32 d=64", {20, 31, 4, 4, 64, false, 0}, kv_type::f32, true);
  run("chunked prefill bf16 [h,s,d] d=96", {16, 70, 4, 2, 96, true, 54}, kv_type::bf16, true);
  run("decode f16 MQA d=64", {1, 257, 4, 1, 64, true, 256}, kv_type::f16, false);
  run("decode f16 GQA d=40 (generic)", {1, 100, 6, 3, 40, true, 99}, kv_type::f16, true);

  // Bad input gets a status, not a crash.
  heed::dense_params bad;
  if (heed::dense_attention(bad, {}) != heed::status::null_pointer) {
    std::printf("bad input: expected null_pointer\n");
    ++failures;
  }
  if (failures) {
    std::printf("consumer_dense: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("consumer_dense: ok\n");
  return 0;
}
