// The compiled sparse kernels (block-sparse, vertical-slash) against the float64 reference
// restricted to the same mask, for every ISA this machine can run: dtypes (q8 / q4 against the
// reference on their dequantized values), head dims (specialized
// and generic), causal / non-causal / chunked offsets, GQA, block sizes, forced blocks, built-in
// variants, 1 and 2 threads; bad lists give a status. Tolerances: see dense_harness.hpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "attention/dense_harness.hpp"
#include "heed/attention/sparse.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "heed/core/thread_pool.hpp"
#include "heed/scoring/observer.hpp"

namespace heed_test {
namespace {

using heed::dtype;
using heed::isa;

const std::vector<isa> kIsas(std::begin(heed::platform_isas), std::end(heed::platform_isas));

// A block list: per (head, query block) a random subset of the key blocks, kept with
// probability `density`.
struct block_lists {
  std::int32_t bq = 64, bk = 64;
  bool sink = true, diag = true;
  std::int64_t q_blocks = 0, k_blocks = 0, hq = 0, offset = 0;
  std::vector<std::int32_t> row_ptr, col_idx;

  heed::block_sparse_layout layout() const {
    heed::block_sparse_layout l;
    l.block_q = bq;
    l.block_k = bk;
    l.row_ptr = row_ptr.data();
    l.col_idx = col_idx.data();
    l.force_sink = sink;
    l.force_diagonal = diag;
    return l;
  }
  // Written from the layout's definition, independently of the kernel's merge.
  bool keeps(const dense_case& c, int h, std::int64_t q_pos, std::int64_t k_pos) const {
    const std::int64_t i = q_pos - offset;
    const std::int64_t qb = i / bq, kb = k_pos / bk;
    if (sink && kb == 0) return true;
    if (diag) {
      const std::int64_t first = offset + qb * bq;
      const std::int64_t last = offset + std::min<std::int64_t>(c.lq, (qb + 1) * bq) - 1;
      if (kb >= first / bk && kb <= last / bk) return true;
    }
    const std::int64_t r = h * q_blocks + qb;
    return std::binary_search(col_idx.begin() + row_ptr[r], col_idx.begin() + row_ptr[r + 1],
                              static_cast<std::int32_t>(kb));
  }
};

block_lists random_blocks(const dense_case& c, std::int32_t bq, std::int32_t bk, double density,
                          bool sink, bool diag, std::uint32_t seed) {
  block_lists b;
  b.bq = bq;
  b.bk = bk;
  b.sink = sink;
  b.diag = diag;
  b.hq = c.hq;
  b.q_blocks = (c.lq + bq - 1) / bq;
  b.k_blocks = (c.lk + bk - 1) / bk;
  b.offset = c.q_offset >= 0 ? c.q_offset : c.lk - c.lq;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  b.row_ptr.push_back(0);
  for (std::int64_t r = 0; r < c.hq * b.q_blocks; ++r) {
    for (std::int64_t kb = 0; kb < b.k_blocks; ++kb)
      if (u(rng) < density) b.col_idx.push_back(static_cast<std::int32_t>(kb));
    b.row_ptr.push_back(static_cast<std::int32_t>(b.col_idx.size()));
  }
  return b;
}

struct vs_lists {
  std::vector<std::int32_t> v_ptr, v_idx, s_ptr, s_off;
  heed::vertical_slash_layout layout() const {
    heed::vertical_slash_layout l;
    l.v_ptr = v_ptr.data();
    l.v_idx = v_idx.data();
    l.s_ptr = s_ptr.data();
    l.s_off = s_off.data();
    return l;
  }
  bool keeps(int h, std::int64_t q_pos, std::int64_t k_pos) const {
    const auto vb = v_idx.begin() + v_ptr[h], ve = v_idx.begin() + v_ptr[h + 1];
    const auto sb = s_off.begin() + s_ptr[h], se = s_off.begin() + s_ptr[h + 1];
    return std::binary_search(vb, ve, static_cast<std::int32_t>(k_pos)) ||
           std::binary_search(sb, se, static_cast<std::int32_t>(q_pos - k_pos));
  }
};

// Random columns and offsets; offsets may be negative (meaningful without the causal mask) and
// may exceed every position (then they select nothing).
vs_lists random_vs(const dense_case& c, int n_cols, int n_offs, std::uint32_t seed) {
  vs_lists l;
  std::mt19937 rng(seed);
  l.v_ptr.push_back(0);
  l.s_ptr.push_back(0);
  for (std::int64_t h = 0; h < c.hq; ++h) {
    std::set<std::int32_t> cols, offs;
    std::uniform_int_distribution<std::int32_t> col(0, static_cast<std::int32_t>(c.lk - 1));
    std::uniform_int_distribution<std::int32_t> off(c.causal ? 0 : -static_cast<int>(c.lk),
                                                    static_cast<std::int32_t>(c.lk + 3));
    for (int e = 0; e < n_cols; ++e) cols.insert(col(rng));
    for (int e = 0; e < n_offs; ++e) offs.insert(off(rng));
    if (h % 2 == 0) offs.insert(0);  // the main diagonal on half of the heads
    l.v_idx.insert(l.v_idx.end(), cols.begin(), cols.end());
    l.s_off.insert(l.s_off.end(), offs.begin(), offs.end());
    l.v_ptr.push_back(static_cast<std::int32_t>(l.v_idx.size()));
    l.s_ptr.push_back(static_cast<std::int32_t>(l.s_off.size()));
  }
  return l;
}

heed::status run_blocks(dense_setup& s, const heed::block_sparse_layout& l, isa i,
                        heed::executor& ex) {
  const std::size_t need = heed::block_sparse_workspace_size(s.params, l, ex.concurrency(), i);
  if (need == 0) return heed::status::invalid_argument;
  exact_workspace w(need, static_cast<std::size_t>(s.c.seed % 61));
  return heed::block_sparse_attention(s.params, l, w.ws, ex, i);
}

heed::status run_vs(dense_setup& s, const heed::vertical_slash_layout& l, isa i,
                    heed::executor& ex) {
  const std::size_t need = heed::vertical_slash_workspace_size(s.params, l, ex.concurrency(), i);
  if (need == 0) return heed::status::invalid_argument;
  exact_workspace w(need, static_cast<std::size_t>(s.c.seed % 61));
  return heed::vertical_slash_attention(s.params, l, w.ws, ex, i);
}

// Cases shared by both kernels: shapes, dtypes, offsets, GQA, variants.
std::vector<dense_case> sparse_cases() {
  std::vector<dense_case> v;
  auto add = [&](dense_case c) {
    c.seed = 5000 + static_cast<std::uint32_t>(v.size()) * 13;
    v.push_back(c);
  };
  dense_case c;
  c.hq = 4;
  c.hkv = 2;
  c.d = 64;
  c.name = "causal_square_f32";
  c.lq = c.lk = 300;
  add(c);
  c.name = "causal_square_f16_d128";
  c.kv = dtype::f16;
  c.d = 128;
  add(c);
  c.name = "causal_square_bf16_generic_d50";
  c.kv = dtype::bf16;
  c.d = 50;
  add(c);
  c.kv = dtype::f32;
  c.d = 64;
  c.name = "noncausal";
  c.causal = false;
  c.lq = 150;
  c.lk = 333;
  add(c);
  c.causal = true;
  c.name = "chunked_prefill";
  c.lq = 100;
  c.lk = 420;
  add(c);
  c.name = "explicit_offset";
  c.q_offset = 77;
  add(c);
  c.q_offset = -1;
  c.name = "mqa_layout_head_seq_padded";
  c.hq = 6;
  c.hkv = 1;
  c.q_layout = c.kv_layout = c.o_layout = heed::layout::head_seq_dim;
  c.pad = 3;
  add(c);
  c.q_layout = c.kv_layout = c.o_layout = heed::layout::seq_head_dim;
  c.pad = 0;
  c.hq = 4;
  c.hkv = 2;
  c.name = "window_softcap_alibi_sinks";
  c.lq = c.lk = 260;
  c.window_left = 90;
  c.softcap = 20.f;
  c.alibi = true;
  c.sinks = true;
  add(c);
  c.window_left = -1;
  c.softcap = 0.f;
  c.alibi = false;
  c.sinks = false;
  c.name = "quantized_q8_d128_chunked";
  c.kv = dtype::q8;
  c.d = 128;
  c.lq = 130;
  c.lk = 400;
  add(c);
  c.name = "quantized_q4_generic_d32_head_seq_padded";
  c.kv = dtype::q4;
  c.d = 32;
  c.lq = c.lk = 200;
  c.kv_layout = heed::layout::head_seq_dim;
  c.pad = 5;
  add(c);
  c.kv = dtype::f32;
  c.d = 64;
  c.kv_layout = heed::layout::seq_head_dim;
  c.pad = 0;
  c.name = "decode_row";
  c.lq = 1;
  c.lk = 500;
  add(c);
  c.name = "large_logits";
  c.lq = c.lk = 200;
  c.q_amp = 40.f;
  add(c);
  return v;
}

// Runs `run(setup, isa, executor)` for every available ISA with 1 and 2 threads and compares
// each result with the one reference.
template <class Run>
void for_each_isa_and_threads(const dense_case& c, const heed_ref::attention_result& r,
                              const std::function<void(heed_ref::attention_problem&)>& mask,
                              Run&& run) {
  heed::thread_pool_executor p1(1), p2(2);
  for (isa i : kIsas) {
    if (!heed::isa_available(i)) continue;
    for (heed::executor* ex :
         {static_cast<heed::executor*>(&p1), static_cast<heed::executor*>(&p2)}) {
      SCOPED_TRACE(std::string(heed::isa_name(i)) + " threads " +
                   std::to_string(ex->concurrency()));
      dense_setup s(c);
      mask(s.ref);
      ASSERT_EQ(run(s, i, *ex), heed::status::ok);
      expect_matches_reference(s, r);
    }
  }
}

TEST(BlockSparse, MatchesMaskedReference) {
  const std::int32_t sizes[][2] = {{64, 64}, {128, 128}, {64, 128}, {128, 32}, {32, 256}};
  int variant = 0;
  for (const dense_case& c : sparse_cases()) {
    for (const auto& bs : sizes) {
      for (double density : {0.0, 0.3, 1.0}) {
        const bool sink = variant % 2 == 0, diag = variant % 3 != 1;
        ++variant;
        SCOPED_TRACE(c.name + " bq " + std::to_string(bs[0]) + " bk " + std::to_string(bs[1]) +
                     " density " + std::to_string(density) + (sink ? " sink" : "") +
                     (diag ? " diag" : ""));
        const block_lists b = random_blocks(c, bs[0], bs[1], density, sink, diag,
                                            c.seed + static_cast<std::uint32_t>(variant));
        auto mask = [&](heed_ref::attention_problem& ref) {
          ref.keep = [&](int h, std::int64_t qp, std::int64_t kp) { return b.keeps(c, h, qp, kp); };
        };
        dense_setup s(c);
        mask(s.ref);
        const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
        for_each_isa_and_threads(c, r, mask, [&](dense_setup& x, isa i, heed::executor& ex) {
          return run_blocks(x, b.layout(), i, ex);
        });
      }
    }
  }
}

TEST(VerticalSlash, MatchesMaskedReference) {
  const int counts[][2] = {{0, 0}, {5, 3}, {40, 20}, {0, 60}, {200, 0}};
  for (const dense_case& c : sparse_cases()) {
    for (const auto& n : counts) {
      SCOPED_TRACE(c.name + " columns " + std::to_string(n[0]) + " offsets " +
                   std::to_string(n[1]));
      const vs_lists l = random_vs(c, n[0], n[1], c.seed + static_cast<std::uint32_t>(n[0] + n[1]));
      auto mask = [&](heed_ref::attention_problem& ref) {
        ref.keep = [&](int h, std::int64_t qp, std::int64_t kp) { return l.keeps(h, qp, kp); };
      };
      dense_setup s(c);
      mask(s.ref);
      const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
      for_each_isa_and_threads(c, r, mask, [&](dense_setup& x, isa i, heed::executor& ex) {
        return run_vs(x, l.layout(), i, ex);
      });
    }
  }
}

// A full block list equals the dense kernel bit for bit (same tiles, same key order), and the
// result does not depend on the number of threads.
TEST(BlockSparse, FullListEqualsDenseAndIsDeterministic) {
  dense_case c;
  c.lq = c.lk = 333;
  c.hq = 4;
  c.hkv = 2;
  c.d = 128;
  c.kv = dtype::f16;
  const block_lists b = random_blocks(c, 64, 64, 1.0, false, false, 1);
  dense_setup dense(c), one(c), two(c);
  ASSERT_EQ(run_dense(dense, isa::automatic, heed::default_executor()), heed::status::ok);
  heed::thread_pool_executor p1(1), p2(2);
  ASSERT_EQ(run_blocks(one, b.layout(), isa::automatic, p1), heed::status::ok);
  ASSERT_EQ(run_blocks(two, b.layout(), isa::automatic, p2), heed::status::ok);
  EXPECT_EQ(one.result_bytes(), dense.result_bytes());
  EXPECT_EQ(one.result_bytes(), two.result_bytes());
}

TEST(VerticalSlash, DeterministicAcrossThreads) {
  dense_case c;
  c.lq = c.lk = 400;
  c.hq = 4;
  c.hkv = 1;
  const vs_lists l = random_vs(c, 50, 40, 3);
  dense_setup one(c), two(c);
  heed::thread_pool_executor p1(1), p2(2);
  ASSERT_EQ(run_vs(one, l.layout(), isa::automatic, p1), heed::status::ok);
  ASSERT_EQ(run_vs(two, l.layout(), isa::automatic, p2), heed::status::ok);
  EXPECT_EQ(one.result_bytes(), two.result_bytes());
}

// ---------------------------------------------------------------------------------------------
// Bad input.

TEST(BlockSparse, BadListsGiveStatus) {
  dense_case c;
  c.lq = c.lk = 200;  // 4 query blocks, 4 key blocks of 64
  c.hq = 1;
  dense_setup s(c);
  std::vector<char> ws(1 << 22);
  const heed::workspace w{ws.data(), ws.size()};
  auto run = [&](std::vector<std::int32_t> ptr, std::vector<std::int32_t> idx, std::int32_t bq = 64,
                 std::int32_t bk = 64) {
    heed::block_sparse_layout l;
    l.block_q = bq;
    l.block_k = bk;
    l.row_ptr = ptr.empty() ? nullptr : ptr.data();
    l.col_idx = idx.empty() ? nullptr : idx.data();
    return heed::block_sparse_attention(s.params, l, w);
  };
  EXPECT_EQ(run({0, 1, 2, 3, 4}, {0, 1, 2, 3}), heed::status::ok);
  EXPECT_EQ(run({0, 1, 2, 3, 4}, {0, 1, 2, 4}), heed::status::invalid_argument);   // range
  EXPECT_EQ(run({0, 1, 2, 3, 4}, {0, 1, 2, -1}), heed::status::invalid_argument);  // negative
  EXPECT_EQ(run({0, 0, 0, 0, 2}, {2, 1}), heed::status::invalid_argument);         // unsorted
  EXPECT_EQ(run({0, 0, 0, 0, 2}, {1, 1}), heed::status::invalid_argument);         // duplicate
  EXPECT_EQ(run({0, 2, 1, 3, 4}, {0, 1, 2, 3}), heed::status::invalid_argument);   // row_ptr
  EXPECT_EQ(run({1, 1, 2, 3, 4}, {0, 1, 2, 3}), heed::status::invalid_argument);   // row_ptr[0]
  EXPECT_EQ(run({}, {}), heed::status::null_pointer);
  EXPECT_EQ(run({0, 1, 1, 1, 1}, {}), heed::status::null_pointer);
  EXPECT_EQ(run({0, 0, 0, 0, 0}, {}), heed::status::ok);
  EXPECT_EQ(run({0, 0, 0, 0, 0}, {}, 48), heed::status::invalid_argument);  // block size
  EXPECT_EQ(run({0, 0, 0, 0, 0}, {}, 64, 512), heed::status::invalid_argument);
  {
    std::vector<std::int32_t> ptr = {0, 0, 0, 0, 0};
    heed::block_sparse_layout l;
    l.row_ptr = ptr.data();
    EXPECT_EQ(heed::block_sparse_attention(s.params, l, {ws.data(), 16}),
              heed::status::workspace_too_small);
    EXPECT_EQ(heed::block_sparse_workspace_size(s.params, heed::block_sparse_layout{}, 1), 0u);
    prob_recorder rec(1, c.lk);
    rec.attach(s.params);
    EXPECT_EQ(heed::block_sparse_attention(s.params, l, w), heed::status::invalid_argument);
  }
}

TEST(VerticalSlash, BadListsGiveStatus) {
  dense_case c;
  c.lq = c.lk = 100;
  c.hq = 2;
  c.hkv = 1;
  dense_setup s(c);
  std::vector<char> ws(1 << 22);
  const heed::workspace w{ws.data(), ws.size()};
  auto run = [&](std::vector<std::int32_t> vp, std::vector<std::int32_t> vi,
                 std::vector<std::int32_t> sp, std::vector<std::int32_t> so) {
    heed::vertical_slash_layout l;
    l.v_ptr = vp.data();
    l.v_idx = vi.empty() ? nullptr : vi.data();
    l.s_ptr = sp.data();
    l.s_off = so.empty() ? nullptr : so.data();
    return heed::vertical_slash_attention(s.params, l, w);
  };
  EXPECT_EQ(run({0, 1, 2}, {0, 99}, {0, 1, 1}, {0}), heed::status::ok);
  EXPECT_EQ(run({0, 1, 2}, {0, 100}, {0, 1, 1}, {0}), heed::status::invalid_argument);
  EXPECT_EQ(run({0, 2, 2}, {5, 5}, {0, 1, 1}, {0}), heed::status::invalid_argument);
  EXPECT_EQ(run({0, 1, 2}, {0, 9}, {0, 2, 2}, {3, 1}), heed::status::invalid_argument);
  EXPECT_EQ(run({0, 1, 2}, {0, 9}, {0, 1, 2}, {1 << 30, 0}), heed::status::invalid_argument);
  EXPECT_EQ(run({0, 1, 2}, {0, 9}, {0, 2, 1}, {0, 1}), heed::status::invalid_argument);
  EXPECT_EQ(run({0, 1, 1}, {}, {0, 0, 0}, {}), heed::status::null_pointer);
}

// ---------------------------------------------------------------------------------------------
// Header-only entry points with a user variant and a row observer (baseline arch of this TU).

// transform: s + 0.3 (h + 1) (k_pos & 3); mask: (k_pos & 3) != 1.
struct low_bits_variant : heed::variant_base {
  static constexpr bool has_logits_transform = true;
  static constexpr bool has_logits_mask = true;
  template <class A>
  xsimd::batch<float, A> transform_logits(xsimd::batch<float, A> s,
                                          const heed::lane_ctx<A>& c) const noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    return xsimd::fma(xsimd::batch<float, A>(0.3f * float(c.q_head + 1)),
                      xsimd::to_float(c.k_pos & I(3)), s);
  }
  template <class A>
  xsimd::batch_bool<float, A> keep(const heed::lane_ctx<A>& c) const noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    return xsimd::bool_cast((c.k_pos & I(3)) != I(1));
  }
};

void add_low_bits(heed_ref::attention_problem& ref) {
  ref.transform = [](int h, std::int64_t, std::int64_t kp, double s) {
    return s + 0.3 * double(h + 1) * double(kp & 3);
  };
}

TEST(SparseHeaderOnly, UserVariantAndObserver) {
  dense_case c;
  c.lq = 200;
  c.lk = 260;
  c.hq = 4;
  c.hkv = 2;
  c.kv = dtype::bf16;
  c.want_entropy = false;  // the observer reports entropy instead
  const block_lists b = random_blocks(c, 64, 32, 0.4, true, true, 11);
  const vs_lists l = random_vs(c, 30, 12, 12);
  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which == 0 ? "block-sparse" : "vertical-slash");
    dense_setup s(c);
    add_low_bits(s.ref);
    s.ref.keep = [&](int h, std::int64_t qp, std::int64_t kp) {
      const bool in = which == 0 ? b.keeps(c, h, qp, kp) : l.keeps(h, qp, kp);
      return in && (kp & 3) != 1;
    };
    const heed_ref::attention_result r = heed_ref::naive_attention(s.ref);
    std::vector<float> ent(std::size_t(c.hq * c.lq), kOutSentinel);
    heed::row_stats_observer obs;
    obs.entropy = ent.data();
    obs.head_stride = c.lq;
    heed::thread_pool_executor ex(2);
    heed::status st;
    if (which == 0) {
      std::vector<char> ws(heed::block_sparse_workspace_size_t(s.params, b.layout(), 2));
      st = heed::block_sparse_attention_t(s.params, b.layout(), low_bits_variant{}, obs,
                                          {ws.data(), ws.size()}, ex);
    } else {
      std::vector<char> ws(heed::vertical_slash_workspace_size_t(s.params, l.layout(), 2));
      st = heed::vertical_slash_attention_t(s.params, l.layout(), low_bits_variant{}, obs,
                                            {ws.data(), ws.size()}, ex);
    }
    ASSERT_EQ(st, heed::status::ok);
    expect_matches_reference(s, r);
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t i = 0; i < c.lq; ++i) {
        const double lse = r.lse_at(h, i);
        EXPECT_NEAR(ent[std::size_t(h * c.lq + i)], r.entropy_at(h, i),
                    kEntropyTol * (1.0 + (std::isinf(lse) ? 0.0 : std::fabs(lse))))
            << "head " << h << " row " << i;
      }
  }
}

}  // namespace
}  // namespace heed_test
