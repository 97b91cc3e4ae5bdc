// Fuzz target: the sparse inputs -- the calibration file reader (include/heed/sparse/
// calibration.hpp) and the block-sparse / vertical-slash index lists (include/heed/attention/
// sparse_layout.hpp) with the compiled sparse kernels that take them.
//
// Calibration: the input as file text, or a generated file (header and head lines, some fields
// broken). Checked: a refused text leaves the output as it was; an accepted one has every head
// once with samples >= 1, votes <= samples, density in [0, 1], a kind agreeing with the votes, and
// parses back from to_text() to the same records.
// Layouts: CSR lists (block-sparse row_ptr / col_idx with block sizes and forced sink / diagonal,
// or vertical-slash columns and diagonals) drawn from the input, valid or with one defect
// (pointer not starting at 0 or decreasing, index out of range, unsorted or repeated, null list),
// over a small valid problem (causal or not, offset, window). Checked: validate() agrees with a
// naive checker written from the format's description; the kernel (automatic ISA, or SSE2 / AVX2
// when the CPU has them) returns the same status, and when valid matches the float64 reference
// (tests/reference/naive_attention.hpp) with the layout's mask.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "heed/attention/sparse_layout.hpp"
#include "heed/sparse/calibration.hpp"
#include "reference/naive_attention.hpp"

namespace {

using heed::status;
using heed_fuzz::fuzz_input;

// ---- calibration ----

std::string generated_calibration(fuzz_input& in) {
  const std::int64_t layers = in.range(1, 3), heads = in.range(1, 3);
  std::ostringstream os;
  os.precision(int(in.range(3, 17)));
  os << (in.byte() >= 250 ? "heed-sparse-calibration 2 " : "heed-sparse-calibration 1 ") << layers
     << ' ' << heads << '\n';
  if (in.flag()) os << "# comment\n";
  for (std::int64_t l = 0; l < layers; ++l)
    for (std::int64_t h = 0; h < heads; ++h) {
      if (in.byte() >= 250) continue;  // a missing head
      const std::int64_t samples = in.range(1, 9), votes = in.range(0, samples);
      const bool qa = 2 * votes > samples;
      double density = double(in.byte()) / 255.0, jsd = double(in.byte()) / 64.0;
      const std::uint8_t defect = in.byte();
      std::string kind = qa ? "query_aware" : "vertical_slash";
      std::int64_t ll = l, hh = h, ss = samples, vv = votes;
      if (defect >= 240) {
        switch (defect % 8) {
          case 0:
            kind = qa ? "vertical_slash" : "query_aware";
            break;
          case 1:
            density = 1.5;
            break;
          case 2:
            jsd = -1.0;
            break;
          case 3:
            vv = samples + 1;
            break;
          case 4:
            ss = 0;
            break;
          case 5:
            ll = layers;
            break;
          case 6:
            hh = -1;
            break;
          default:
            kind = "dense";
            break;
        }
      }
      os << ll << ' ' << hh << ' ' << kind << ' ' << density << ' ' << ss << ' ' << vv << ' ' << jsd
         << '\n';
      if (in.byte() >= 252) os << ll << ' ' << hh << ' ' << kind << " 0.5 1 0 0\n";  // repeated
    }
  return os.str();
}

void calibration(fuzz_input& in) {
  std::string text;
  if (in.flag()) {
    text.resize(in.remaining());
    in.bytes(&text[0], text.size());
  } else {
    text = generated_calibration(in);
  }
  heed::sparse_calibration out;
  HEED_FUZZ_CHECK(out.init(1, 2) == status::ok);
  out.records[1].samples = 7;
  const std::string before = out.to_text();
  const status s = heed::sparse_calibration::parse(text, out);
  if (s != status::ok) {
    HEED_FUZZ_CHECK(s == status::invalid_argument);
    HEED_FUZZ_CHECK(out.to_text() == before);
    return;
  }
  HEED_FUZZ_CHECK(out.layers >= 1 && out.heads >= 1 &&
                  std::int64_t(out.records.size()) == out.layers * out.heads);
  for (const auto& r : out.records) {
    HEED_FUZZ_CHECK(r.samples >= 1 && r.query_aware_votes >= 0 && r.query_aware_votes <= r.samples);
    HEED_FUZZ_CHECK(r.density() >= 0.0 && r.density() <= 1.0 + 1e-12);
    HEED_FUZZ_CHECK(r.mean_sqrt_jsd() >= 0.0);
  }
  heed::sparse_calibration back;
  HEED_FUZZ_CHECK(heed::sparse_calibration::parse(out.to_text(), back) == status::ok);
  HEED_FUZZ_CHECK(back.layers == out.layers && back.heads == out.heads);
  for (std::size_t i = 0; i < out.records.size(); ++i) {
    const auto &a = out.records[i], &b = back.records[i];
    HEED_FUZZ_CHECK(a.samples == b.samples && a.query_aware_votes == b.query_aware_votes);
    HEED_FUZZ_CHECK(a.kind() == b.kind());
    HEED_FUZZ_CHECK(std::fabs(a.density() - b.density()) <= 1e-12);
    HEED_FUZZ_CHECK(std::fabs(a.mean_sqrt_jsd() - b.mean_sqrt_jsd()) <=
                    1e-12 * (1.0 + a.mean_sqrt_jsd()));
  }
}

// ---- layouts ----

// The naive checker: ptr[0] == 0, ptr non-decreasing, every list strictly ascending in [lo, hi).
status naive_csr(const std::vector<std::int32_t>* ptr, const std::vector<std::int32_t>* idx,
                 std::int64_t rows, std::int64_t lo, std::int64_t hi) {
  if (ptr == nullptr) return status::null_pointer;
  const auto& p = *ptr;
  if (p[0] != 0) return status::invalid_argument;
  for (std::int64_t r = 0; r < rows; ++r)
    if (p[std::size_t(r + 1)] < p[std::size_t(r)]) return status::invalid_argument;
  if (p[std::size_t(rows)] > 0 && idx == nullptr) return status::null_pointer;
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t prev = lo - 1;
    for (std::int32_t e = p[std::size_t(r)]; e < p[std::size_t(r + 1)]; ++e) {
      const std::int64_t x = (*idx)[std::size_t(e)];
      if (x < lo || x >= hi || x <= prev) return status::invalid_argument;
      prev = x;
    }
  }
  return status::ok;
}

struct csr {
  std::vector<std::int32_t> ptr, idx;
  // Row r's list, read from ptr / idx (once they are known valid).
  std::vector<std::int64_t> list(std::int64_t r) const {
    return std::vector<std::int64_t>(idx.begin() + ptr[std::size_t(r)],
                                     idx.begin() + ptr[std::size_t(r + 1)]);
  }
};

// rows lists of ascending values in [lo, hi), then at most one defect (an index out of the valid
// range [bad_lo, bad_hi), a pointer not from 0 or decreasing, an unsorted or repeated index, a
// null list). Returns whether there was one.
bool make_csr(fuzz_input& in, csr& c, std::int64_t rows, std::int64_t lo, std::int64_t hi,
              std::int64_t bad_lo, std::int64_t bad_hi, bool& null_ptr, bool& null_idx) {
  c.ptr.assign(1, 0);
  const std::uint8_t density = in.byte();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t x = lo; x < hi; x += 1 + (hi - lo > 64 ? in.range(0, (hi - lo) / 16) : 0))
      if (in.byte() < density) c.idx.push_back(std::int32_t(x));
    c.ptr.push_back(std::int32_t(c.idx.size()));
  }
  null_ptr = null_idx = false;
  const std::uint8_t defect = in.byte();
  if (defect < 224) return false;
  switch (defect % 6) {
    case 0:
      c.ptr[0] = 1;
      break;
    case 1:
      if (rows >= 2 && c.ptr[1] > 0) c.ptr[1] = c.ptr[2] + 1;  // ptr[1] > ptr[2]: decreasing
      break;
    case 2:
      if (!c.idx.empty())
        c.idx[std::size_t(in.range(0, std::int64_t(c.idx.size()) - 1))] =
            std::int32_t(in.flag() ? bad_hi : bad_lo - 1);
      break;
    case 3:
      if (c.idx.size() >= 2) {
        const std::size_t i = std::size_t(in.range(1, std::int64_t(c.idx.size()) - 1));
        c.idx[i] = c.idx[i - 1];
      }
      break;
    case 4:
      null_idx = true;
      break;
    default:
      null_ptr = true;
      break;
  }
  if (c.ptr.back() > std::int32_t(c.idx.size())) c.idx.resize(std::size_t(c.ptr.back()), 0);
  return true;
}

struct problem {
  std::int64_t lq, lk, hq, hkv, d;
  std::vector<float> q, k, v, o;
  heed::dense_params p;
  heed_ref::attention_problem ref;
};

void make_problem(fuzz_input& in, problem& pr) {
  static const std::int64_t dims[] = {8, 16, 32, 64, 5};
  pr.d = in.pick(dims);
  pr.hkv = in.range(1, 2);
  pr.hq = pr.hkv * in.range(1, 2);
  pr.lq = in.range(1, 48);
  pr.lk = in.range(1, 80);
  auto fill = [&](std::vector<float>& x, std::int64_t n, std::vector<double>& r) {
    x.resize(std::size_t(n));
    r.resize(x.size());
    const std::uint32_t seed = in.u32() | 1u;
    std::uint32_t s = seed;
    for (std::size_t i = 0; i < x.size(); ++i) {
      s ^= s << 13, s ^= s >> 17, s ^= s << 5;
      x[i] = float(int(s % 256) - 128) / 32.f;
      r[i] = x[i];
    }
  };
  pr.ref.lq = pr.lq, pr.ref.lk = pr.lk, pr.ref.hq = pr.hq, pr.ref.hkv = pr.hkv, pr.ref.d = pr.d;
  fill(pr.q, pr.lq * pr.hq * pr.d, pr.ref.q);
  fill(pr.k, pr.lk * pr.hkv * pr.d, pr.ref.k);
  fill(pr.v, pr.lk * pr.hkv * pr.d, pr.ref.v);
  pr.o.assign(std::size_t(pr.lq * pr.hq * pr.d), -7.f);
  pr.p.q = heed::make_view(pr.q.data(), pr.lq, pr.hq, pr.d);
  pr.p.k = heed::make_view(pr.k.data(), pr.lk, pr.hkv, pr.d);
  pr.p.v = heed::make_view(pr.v.data(), pr.lk, pr.hkv, pr.d);
  pr.p.o = heed::make_mutable_view(pr.o.data(), pr.lq, pr.hq, pr.d);
  pr.p.causal = pr.ref.causal = !(in.byte() >= 192);
  if (in.flag() || (pr.p.causal && pr.lk < pr.lq))
    pr.p.q_offset = pr.ref.q_offset = in.range(0, 40);
  if (in.byte() >= 200) pr.p.window_left = pr.ref.window_left = in.range(0, 60);
}

void compare(const problem& pr) {
  const heed_ref::attention_result r = heed_ref::naive_attention(pr.ref);
  for (std::int64_t i = 0; i < pr.lq; ++i)
    for (std::int64_t h = 0; h < pr.hq; ++h) {
      const double widen = std::max(1.0, r.max_abs_logit_at(h, i) / 10.0);
      for (std::int64_t c = 0; c < pr.d; ++c) {
        const double want = r.o_at(i, h, c);
        const double got = pr.o[std::size_t((i * pr.hq + h) * pr.d + c)];
        HEED_FUZZ_CHECK(std::fabs(got - want) <= (8e-4 + 2e-4 * std::fabs(want)) * widen);
      }
    }
}

heed::isa pick_isa(fuzz_input& in) {
  const std::uint8_t b = in.byte() % 4;
  if (b == 1 && heed::isa_available(heed::isa::sse2)) return heed::isa::sse2;
  if (b == 2 && heed::isa_available(heed::isa::avx2)) return heed::isa::avx2;
  return heed::isa::automatic;
}

void block_sparse(fuzz_input& in) {
  problem pr;
  make_problem(in, pr);
  static const std::int32_t blocks[] = {32, 64, 128, 256, 32, 64, 16, 0};
  heed::block_sparse_layout l;
  l.block_q = in.pick(blocks);
  l.block_k = in.pick(blocks);
  l.force_sink = in.flag();
  l.force_diagonal = in.flag();
  const bool blocks_ok = heed::valid_sparse_block(l.block_q) && heed::valid_sparse_block(l.block_k);
  const std::int64_t bq = blocks_ok ? l.block_q : 32, bk = blocks_ok ? l.block_k : 32;
  const std::int64_t q_blocks = (pr.lq + bq - 1) / bq, k_blocks = (pr.lk + bk - 1) / bk;
  csr c;
  bool null_ptr, null_idx;
  make_csr(in, c, pr.hq * q_blocks, 0, k_blocks, 0, k_blocks, null_ptr, null_idx);
  l.row_ptr = null_ptr ? nullptr : c.ptr.data();
  l.col_idx = null_idx ? nullptr : c.idx.data();
  status want = !blocks_ok ? status::invalid_argument
                           : naive_csr(null_ptr ? nullptr : &c.ptr, null_idx ? nullptr : &c.idx,
                                       pr.hq * q_blocks, 0, k_blocks);
  HEED_FUZZ_CHECK(heed::validate(pr.p, l) == want);
  const heed::isa isa = pick_isa(in);
  const std::size_t ws_size = heed::block_sparse_workspace_size(pr.p, l, 1, isa);
  if (want != status::ok) HEED_FUZZ_CHECK(ws_size == 0);
  std::vector<unsigned char> ws(std::max<std::size_t>(ws_size, 1));
  const status s =
      heed::block_sparse_attention(pr.p, l, {ws.data(), ws_size}, heed::default_executor(), isa);
  HEED_FUZZ_CHECK(s == want);
  if (s != status::ok) return;
  const std::int64_t off = pr.ref.offset();
  std::vector<std::vector<std::int64_t>> lists;
  for (std::int64_t r = 0; r < pr.hq * q_blocks; ++r) lists.push_back(c.list(r));
  pr.ref.keep = [&](int h, std::int64_t q_pos, std::int64_t k_pos) {
    const std::int64_t i = q_pos - off, qb = i / bq, kb = k_pos / bk;
    const std::vector<std::int64_t>& list = lists[std::size_t(h * q_blocks + qb)];
    if (std::binary_search(list.begin(), list.end(), kb)) return true;
    if (l.force_sink && kb == 0) return true;
    if (l.force_diagonal)
      for (std::int64_t r = qb * bq; r < std::min(pr.lq, (qb + 1) * bq); ++r)
        if ((off + r) / bk == kb) return true;
    return false;
  };
  compare(pr);
}

void vertical_slash(fuzz_input& in) {
  problem pr;
  make_problem(in, pr);
  csr vc, sc;
  bool v_null_ptr, v_null_idx, s_null_ptr, s_null_idx;
  const std::int64_t lim = std::int64_t(1) << 30;
  make_csr(in, vc, pr.hq, 0, pr.lk, 0, pr.lk, v_null_ptr, v_null_idx);
  make_csr(in, sc, pr.hq, -40, 100, -lim + 1, lim, s_null_ptr, s_null_idx);
  heed::vertical_slash_layout l;
  l.v_ptr = v_null_ptr ? nullptr : vc.ptr.data();
  l.v_idx = v_null_idx ? nullptr : vc.idx.data();
  l.s_ptr = s_null_ptr ? nullptr : sc.ptr.data();
  l.s_off = s_null_idx ? nullptr : sc.idx.data();
  status want =
      naive_csr(v_null_ptr ? nullptr : &vc.ptr, v_null_idx ? nullptr : &vc.idx, pr.hq, 0, pr.lk);
  if (want == status::ok)
    want = naive_csr(s_null_ptr ? nullptr : &sc.ptr, s_null_idx ? nullptr : &sc.idx, pr.hq,
                     -lim + 1, lim);
  HEED_FUZZ_CHECK(heed::validate(pr.p, l) == want);
  const heed::isa isa = pick_isa(in);
  const std::size_t ws_size = heed::vertical_slash_workspace_size(pr.p, l, 1, isa);
  if (want != status::ok) HEED_FUZZ_CHECK(ws_size == 0);
  std::vector<unsigned char> ws(std::max<std::size_t>(ws_size, 1));
  const status s =
      heed::vertical_slash_attention(pr.p, l, {ws.data(), ws_size}, heed::default_executor(), isa);
  HEED_FUZZ_CHECK(s == want);
  if (s != status::ok) return;
  std::vector<std::vector<std::int64_t>> cols, diags;
  for (std::int64_t h = 0; h < pr.hq; ++h) cols.push_back(vc.list(h)), diags.push_back(sc.list(h));
  pr.ref.keep = [&](int h, std::int64_t q_pos, std::int64_t k_pos) {
    const auto& col = cols[std::size_t(h)];
    const auto& diag = diags[std::size_t(h)];
    return std::binary_search(col.begin(), col.end(), k_pos) ||
           std::binary_search(diag.begin(), diag.end(), q_pos - k_pos);
  };
  compare(pr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_input in(data, size);
  switch (in.byte() % 3) {
    case 0:
      calibration(in);
      break;
    case 1:
      block_sparse(in);
      break;
    default:
      vertical_slash(in);
      break;
  }
  return 0;
}
