// Fuzz target: sequences of heed::kv_cache operations (include/heed/cache/kv_cache.hpp).
//
// The input is a program: init (any configuration: contiguous or paged, f32 / f16 / bf16 / q8 /
// q4, groups, reserve, capacity, score channels, invalid ones too), append, append_head, keep,
// gather, set_limit, check_rows, shrink_to_fit, clear_layer, clear and score writes, each with
// its arguments and, sometimes, one defect (a wrong shape, layer, head, dtype or group, a null
// pointer, non-ascending positions or keep indices, rows a quantized cache cannot store, a
// short gather buffer, ...).
// A plain model (a std::vector of entries per slot: position, expected K and V row bytes, score
// values) says what the cache must hold. Checked after every operation: the status (ok exactly
// when the model says so, the documented status otherwise), and the whole cache against the model
// -- lengths, appended counts, limits, positions, score channels, gather()'s bytes, the pages
// (ordered, contiguous, within page_rows, their bytes) and bytes_used. A failed call must leave
// the cache exactly as the model (unchanged).
// The expected row bytes of a converted row come from heed's public conversions
// (from_float / quant::quantize_row), which the quantization tests check on their own.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_input.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/dtype.hpp"
#include "heed/quant/quantize.hpp"

namespace {

using heed::dtype;
using heed::status;
using heed_fuzz::fuzz_input;
using bytes = std::vector<std::uint8_t>;

struct entry {
  std::int64_t pos;
  bytes k, v;
  std::vector<float> scores;
};

struct slot_model {
  std::vector<entry> e;
  std::int64_t appended = 0, limit = 0;
};

struct model {
  bool ready = false;
  heed::kv_cache_config cfg;
  std::vector<slot_model> slots;
  slot_model& at(int l, int h) { return slots[std::size_t(l * cfg.kv_heads + h)]; }
  int group() const { return cfg.group ? cfg.group : heed::quant::default_group; }
  std::size_t row_bytes() const {
    return heed::is_quantized(cfg.type) ? heed::quant::row_bytes(cfg.type, cfg.head_dim, group())
                                        : std::size_t(cfg.head_dim) * heed::dtype_size(cfg.type);
  }
};

// The documented configuration rules (kv_cache_config, kv_cache::init).
status expected_init(const heed::kv_cache_config& c) {
  if (c.layers <= 0 || c.kv_heads <= 0 || c.head_dim <= 0 || c.head_dim > 65536 || c.reserve < 0 ||
      c.score_channels < 0 || c.score_channels > 64 || c.capacity < 0 || c.page_rows < 0 ||
      (c.page_rows > 0 && c.page_rows < 16) || c.page_rows > (1 << 20) ||
      (c.capacity > 0 && c.reserve > c.capacity))
    return status::invalid_argument;
  if (heed::is_quantized(c.type))
    return c.group >= 0 && heed::quant::valid_group(c.head_dim, c.group ? c.group : 32)
               ? status::ok
               : status::invalid_argument;
  if (c.type != dtype::f32 && c.type != dtype::f16 && c.type != dtype::bf16)
    return status::unsupported_dtype;
  return c.group == 0 ? status::ok : status::invalid_argument;
}

// Input rows for append: [n, heads, d] seq-major or head-major, in `type` (the cache's own
// quantized type and group, or f32 / f16 / bf16), with the float values they were made from.
struct rows {
  dtype type = dtype::f32;
  int group = 0;
  std::int64_t n = 0, heads = 0, d = 0;
  std::vector<float> values;  // [n][heads][d]
  bytes data;
  heed::tensor_view view;
  bool finite = true;
};

std::size_t elem_or_row(const rows& r) {
  return heed::is_quantized(r.type) ? heed::quant::row_bytes(r.type, r.d, r.group ? r.group : 32)
                                    : std::size_t(r.d) * heed::dtype_size(r.type);
}

void make_rows(fuzz_input& in, rows& r, bool allow_nonfinite) {
  r.values.resize(std::size_t(r.n * r.heads * r.d));
  for (auto& x : r.values) x = in.small_float();
  if (allow_nonfinite && !r.values.empty() && in.byte() >= 240) {
    r.values[std::size_t(in.range(0, std::int64_t(r.values.size()) - 1))] =
        in.flag() ? __builtin_nanf("") : __builtin_inff();
    r.finite = false;
  }
  const std::size_t row = elem_or_row(r);
  const bool head_major = in.flag();
  const std::int64_t unit = std::int64_t(heed::dtype_size(r.type));
  const std::int64_t extent = std::int64_t(row) / unit;  // stride units of one row
  r.view = heed::tensor_view{};
  r.view.type = r.type;
  r.view.group = heed::is_quantized(r.type) ? r.group : 0;
  r.view.seq = r.n;
  r.view.heads = r.heads;
  r.view.dim = r.d;
  r.view.seq_stride = head_major ? extent : r.heads * extent;
  r.view.head_stride = head_major ? r.n * extent : extent;
  r.data.assign(std::max<std::size_t>(1, std::size_t(r.n * r.heads) * row), 0);
  for (std::int64_t s = 0; s < r.n; ++s)
    for (std::int64_t h = 0; h < r.heads; ++h) {
      const float* x = &r.values[std::size_t((s * r.heads + h) * r.d)];
      std::uint8_t* dst = r.data.data() + std::size_t(r.view.offset(s, h) * unit);
      if (r.type == dtype::f32) {
        std::memcpy(dst, x, row);
      } else if (r.type == dtype::f16 || r.type == dtype::bf16) {
        for (std::int64_t c = 0; c < r.d; ++c) {
          std::uint16_t b;
          if (r.type == dtype::f16) {
            const heed::f16 y = heed::from_float<heed::f16>(x[c]);
            std::memcpy(&b, &y, 2);
          } else {
            const heed::bf16 y = heed::from_float<heed::bf16>(x[c]);
            std::memcpy(&b, &y, 2);
          }
          std::memcpy(dst + 2 * c, &b, 2);
        }
      } else {
        HEED_FUZZ_CHECK(heed::quant::quantize_row(r.type, x, r.d, r.group ? r.group : 32, dst) ==
                        status::ok);
      }
    }
  r.view.data = r.data.data();
}

// The bytes the cache must store for row (s, h) of r.
bytes stored_row(const model& m, const rows& r, std::int64_t s, std::int64_t h) {
  const std::size_t row = m.row_bytes();
  bytes out(row);
  const std::uint8_t* src =
      r.data.data() + std::size_t(r.view.offset(s, h)) * heed::dtype_size(r.type);
  if (r.type == m.cfg.type) {
    std::memcpy(out.data(), src, row);
    return out;
  }
  const std::int64_t d = m.cfg.head_dim;
  std::vector<float> x(static_cast<std::size_t>(d));
  for (std::int64_t c = 0; c < d; ++c) {
    if (r.type == dtype::f32) {
      std::memcpy(&x[std::size_t(c)], src + 4 * c, 4);
    } else if (r.type == dtype::f16) {
      heed::f16 y;
      std::memcpy(&y, src + 2 * c, 2);
      x[std::size_t(c)] = heed::to_float(y);
    } else {
      heed::bf16 y;
      std::memcpy(&y, src + 2 * c, 2);
      x[std::size_t(c)] = heed::to_float(y);
    }
  }
  switch (m.cfg.type) {
    case dtype::f32:
      std::memcpy(out.data(), x.data(), row);
      break;
    case dtype::f16:
      for (std::int64_t c = 0; c < d; ++c) {
        const heed::f16 y = heed::from_float<heed::f16>(x[std::size_t(c)]);
        std::memcpy(out.data() + 2 * c, &y, 2);
      }
      break;
    case dtype::bf16:
      for (std::int64_t c = 0; c < d; ++c) {
        const heed::bf16 y = heed::from_float<heed::bf16>(x[std::size_t(c)]);
        std::memcpy(out.data() + 2 * c, &y, 2);
      }
      break;
    default:
      HEED_FUZZ_CHECK(heed::quant::quantize_row(m.cfg.type, x.data(), d, m.group(), out.data()) ==
                      status::ok);
  }
  return out;
}

// The whole cache against the model.
void check_state(const heed::kv_cache& cache, const model& m) {
  if (!m.ready) {
    HEED_FUZZ_CHECK(!cache.valid(0, 0));
    return;
  }
  const auto& c = m.cfg;
  HEED_FUZZ_CHECK(cache.layers() == c.layers && cache.kv_heads() == c.kv_heads &&
                  cache.head_dim() == c.head_dim && cache.type() == c.type);
  HEED_FUZZ_CHECK(cache.row_bytes() == m.row_bytes());
  HEED_FUZZ_CHECK(!cache.valid(c.layers, 0) && !cache.valid(0, c.kv_heads) && !cache.valid(-1, 0));
  const std::size_t row = m.row_bytes();
  std::int64_t total = 0;
  bytes got;
  for (int l = 0; l < c.layers; ++l)
    for (int h = 0; h < c.kv_heads; ++h) {
      const slot_model& s = m.slots[std::size_t(l * c.kv_heads + h)];
      const std::int64_t len = std::int64_t(s.e.size());
      total += len;
      HEED_FUZZ_CHECK(cache.valid(l, h));
      HEED_FUZZ_CHECK(cache.length(l, h) == len);
      HEED_FUZZ_CHECK(cache.appended(l, h) == s.appended);
      HEED_FUZZ_CHECK(cache.limit(l, h) == s.limit);
      HEED_FUZZ_CHECK(cache.capacity(l, h) >= len);
      for (std::int64_t i = 0; i < len; ++i) {
        HEED_FUZZ_CHECK(cache.positions(l, h)[i] == s.e[std::size_t(i)].pos);
        for (int ch = 0; ch < c.score_channels; ++ch)
          HEED_FUZZ_CHECK(std::memcmp(&cache.scores(l, h, ch)[i],
                                      &s.e[std::size_t(i)].scores[std::size_t(ch)], 4) == 0);
      }
      // gather(): the rows, in order.
      for (int which = 0; which < 2; ++which) {
        got.assign(std::max<std::size_t>(1, std::size_t(len) * row), 0xA5);
        HEED_FUZZ_CHECK(cache.gather(l, h, which, got.data(), std::size_t(len) * row) ==
                        status::ok);
        for (std::int64_t i = 0; i < len; ++i) {
          const bytes& want = which == 0 ? s.e[std::size_t(i)].k : s.e[std::size_t(i)].v;
          HEED_FUZZ_CHECK(std::memcmp(got.data() + std::size_t(i) * row, want.data(), row) == 0);
        }
      }
      // Pages: in order, contiguous, non-empty, within page_rows, holding the same rows.
      const int pages = cache.page_count(l, h);
      if (!cache.paged()) HEED_FUZZ_CHECK(pages == (len > 0 ? 1 : 0));
      std::int64_t next = 0;
      for (int p = 0; p < pages; ++p) {
        const heed::kv_page pg = cache.page(l, h, p);
        HEED_FUZZ_CHECK(pg.begin == next && pg.len > 0);
        if (cache.paged()) HEED_FUZZ_CHECK(pg.len <= c.page_rows);
        for (std::int64_t i = 0; i < pg.len; ++i) {
          const entry& e = s.e[std::size_t(pg.begin + i)];
          HEED_FUZZ_CHECK(
              std::memcmp(static_cast<const std::uint8_t*>(pg.k) + i * row, e.k.data(), row) == 0);
          HEED_FUZZ_CHECK(
              std::memcmp(static_cast<const std::uint8_t*>(pg.v) + i * row, e.v.data(), row) == 0);
        }
        next += pg.len;
      }
      HEED_FUZZ_CHECK(next == len);
      const heed::tensor_view keys = cache.keys(l, h);
      HEED_FUZZ_CHECK(keys.seq == len && keys.dim == c.head_dim);
      if (len > 0 && pages == 1) HEED_FUZZ_CHECK(keys.data == cache.page(l, h, 0).k);
      if (pages > 1) HEED_FUZZ_CHECK(keys.data == nullptr);
    }
  HEED_FUZZ_CHECK(cache.total_length() == total);
  HEED_FUZZ_CHECK(cache.bytes_used() == std::size_t(total) * cache.entry_bytes());
}

heed::kv_cache_config random_config(fuzz_input& in) {
  static const std::int64_t dims[] = {8, 16, 32, 64, 24, 48, 3, 5};
  static const dtype types[] = {dtype::f32, dtype::f16, dtype::bf16, dtype::q8, dtype::q4};
  static const std::int64_t page_rows[] = {0, 0, 16, 17, 32, 8, -1};
  static const int groups[] = {0, 0, 8, 16, 32, 6, -8};
  heed::kv_cache_config c;
  c.layers = int(in.range(1, 3));
  c.kv_heads = int(in.range(1, 3));
  c.head_dim = in.pick(dims);
  c.type = in.pick(types);
  c.reserve = in.range(0, 40);
  c.score_channels = int(in.range(0, 3));
  c.capacity = in.flag() ? 0 : in.range(0, 80);
  c.page_rows = in.pick(page_rows);
  c.group = heed::is_quantized(c.type) ? in.pick(groups) : 0;
  if (in.byte() >= 240) {  // one more defect
    switch (in.byte() % 6) {
      case 0:
        c.layers = 0;
        break;
      case 1:
        c.kv_heads = -1;
        break;
      case 2:
        c.score_channels = 65;
        break;
      case 3:
        c.group = 8;
        break;
      case 4:
        c.type = static_cast<dtype>(7);
        break;
      default:
        c.head_dim = 0;
        break;
    }
  }
  return c;
}

struct fuzzer {
  fuzz_input in;
  heed::kv_cache cache;
  model m;

  int layer_arg() {  // a valid layer mostly, sometimes out of range
    const std::uint8_t b = in.byte();
    if (b >= 248) return b & 1 ? -1 : m.cfg.layers;
    return int(b % std::uint8_t(std::max(1, m.cfg.layers)));
  }
  int head_arg() {
    const std::uint8_t b = in.byte();
    if (b >= 248) return b & 1 ? -1 : m.cfg.kv_heads;
    return int(b % std::uint8_t(std::max(1, m.cfg.kv_heads)));
  }
  bool valid_slot(int l, int h) const {
    return m.ready && l >= 0 && l < m.cfg.layers && h >= 0 && h < m.cfg.kv_heads;
  }

  void op_init() {
    const heed::kv_cache_config c = random_config(in);
    const status want = expected_init(c);
    const status s = cache.init(c);
    HEED_FUZZ_CHECK(s == want);
    if (s != status::ok) return;
    m.ready = true;
    m.cfg = c;
    m.slots.assign(std::size_t(c.layers * c.kv_heads), slot_model{});
    for (auto& sl : m.slots) sl.limit = c.capacity;
  }

  // Rows for an append of `heads` view heads; returns the status the input checks must give
  // (ok, or the one defect's status) and sets `nonfinite` when a quantized cache must refuse
  // the values.
  status make_input(rows& k, rows& v, std::int64_t heads, bool& quant_refuses) {
    static const dtype plain[] = {dtype::f32, dtype::f16, dtype::bf16};
    const std::int64_t n = in.range(1, 6);
    k.n = v.n = n;
    k.heads = v.heads = heads;
    k.d = v.d = m.cfg.head_dim;
    const bool own = heed::is_quantized(m.cfg.type) && in.flag();
    k.type = v.type = own ? m.cfg.type : in.pick(plain);
    k.group = v.group = own ? m.cfg.group : 0;
    status want = status::ok;
    const std::uint8_t defect = in.byte();
    if (defect >= 230) {
      switch (defect % 5) {
        case 0:
          v.n = n + 1, want = status::shape_mismatch;
          break;
        case 1:  // plain rows of another head dim
          k.type = v.type = dtype::f32;
          k.group = v.group = 0;
          k.d = v.d = m.cfg.head_dim + 1;
          want = status::shape_mismatch;
          break;
        case 2:
          v.heads = heads + 1, want = status::shape_mismatch;
          break;
        case 3:  // a quantized view of another group (or a quantized view into a plain cache)
          if (heed::is_quantized(m.cfg.type) && m.cfg.group != 16 && m.cfg.head_dim % 16 == 0) {
            k.type = v.type = m.cfg.type;
            k.group = v.group = 16;
            want = status::unsupported_dtype;
          } else if (!heed::is_quantized(m.cfg.type) && m.cfg.head_dim % 32 == 0) {
            k.type = v.type = dtype::q8;
            k.group = v.group = 0;
            want = status::unsupported_dtype;
          }
          break;
        default:
          k.n = v.n = 0, want = status::invalid_argument;
          break;  // no rows
      }
    }
    const bool rows_exist = k.n > 0 && v.n > 0 && k.d > 0;
    if (rows_exist) {
      const bool q_in = heed::is_quantized(k.type);
      make_rows(in, k, !q_in);
      make_rows(in, v, !q_in);
    } else {
      k.view = v.view = heed::tensor_view{};
      k.data.assign(64, 0), v.data.assign(64, 0);
      for (rows* r : {&k, &v}) {
        r->view.data = r->data.data();
        r->view.type = r->type;
        r->view.seq = r->n;
        r->view.heads = r->heads;
        r->view.dim = r->d;
        r->view.seq_stride = r->view.head_stride = r->d;
      }
    }
    quant_refuses =
        heed::is_quantized(m.cfg.type) && !heed::is_quantized(k.type) && (!k.finite || !v.finite);
    if (in.byte() >= 250) {
      (in.flag() ? k : v).view.data = nullptr;
      want = status::null_pointer;
    }
    return want;
  }

  // Positions for n new entries of the given slots: null (continue the count), explicit
  // ascending ones, or (sometimes) ones that are not ascending after some slot's last.
  std::vector<std::int64_t> make_positions(std::int64_t n, bool& use) {
    use = in.flag();
    std::vector<std::int64_t> p;
    if (!use) return p;
    std::int64_t at = in.range(0, 60);
    for (std::int64_t i = 0; i < n; ++i) {
      p.push_back(at);
      at += in.byte() >= 240 ? -1 : 1 + in.range(0, 3);
    }
    return p;
  }

  bool positions_ok(const slot_model& s, const std::vector<std::int64_t>& p, bool use,
                    std::int64_t n) {
    std::int64_t last = s.e.empty() ? -1 : s.e.back().pos;
    if (!use) return s.appended > last;
    for (std::int64_t i = 0; i < n; ++i) {
      if (p[std::size_t(i)] <= last || p[std::size_t(i)] < 0) return false;
      last = p[std::size_t(i)];
    }
    return true;
  }

  void push_rows(slot_model& s, const rows& k, const rows& v, std::int64_t src_head,
                 const std::vector<std::int64_t>& p, bool use) {
    for (std::int64_t i = 0; i < k.n; ++i) {
      entry e;
      e.pos = use ? p[std::size_t(i)] : s.appended + i;
      e.k = stored_row(m, k, i, src_head);
      e.v = stored_row(m, v, i, src_head);
      e.scores.assign(std::size_t(m.cfg.score_channels), 0.f);
      s.e.push_back(std::move(e));
    }
    s.appended = use ? p.back() + 1 : s.appended + k.n;
  }

  void op_append() {
    if (!m.ready) {
      rows k, v;
      k.n = v.n = 1;
      const float x[1] = {0.f};
      const heed::tensor_view t = heed::make_view(x, 1, 1, 1);
      HEED_FUZZ_CHECK(cache.append(0, t, t) == status::invalid_argument);
      return;
    }
    const int l = layer_arg();
    rows k, v;
    bool quant_refuses = false;
    const status want_input = make_input(k, v, m.cfg.kv_heads, quant_refuses);
    bool use = false;
    const std::vector<std::int64_t> p = make_positions(k.n, use);
    status want = status::ok;
    if (l < 0 || l >= m.cfg.layers) {
      want = status::invalid_argument;
    } else if (want_input != status::ok) {
      want = want_input;
    } else if (quant_refuses) {
      want = status::invalid_argument;
    } else {
      for (int h = 0; h < m.cfg.kv_heads; ++h) {
        const slot_model& s = m.at(l, h);
        if ((s.limit > 0 && std::int64_t(s.e.size()) + k.n > s.limit) ||
            !positions_ok(s, p, use, k.n))
          want = status::invalid_argument;
      }
    }
    const status s = cache.append(l, k.view, v.view, use ? p.data() : nullptr);
    HEED_FUZZ_CHECK(s == want);
    if (s != status::ok) return;
    for (int h = 0; h < m.cfg.kv_heads; ++h) push_rows(m.at(l, h), k, v, h, p, use);
  }

  void op_check_rows() {
    if (!m.ready) return;
    rows k, v;
    bool quant_refuses = false;
    const status want_input = make_input(k, v, m.cfg.kv_heads, quant_refuses);
    const status want = want_input != status::ok ? want_input
                        : quant_refuses          ? status::invalid_argument
                                                 : status::ok;
    HEED_FUZZ_CHECK(cache.check_rows(k.view, v.view) == want);
  }

  void op_append_head() {
    if (!m.ready) return;
    const int l = layer_arg(), h = head_arg();
    const std::int64_t heads = in.range(1, 3);
    std::int64_t src = in.range(0, heads - 1);
    if (in.byte() >= 245) src = in.flag() ? -1 : heads;
    rows k, v;
    bool quant_refuses = false;
    status want_input = make_input(k, v, heads, quant_refuses);
    // Only the source head's rows are checked for quantization.
    if (quant_refuses && src >= 0 && src < heads && k.n > 0) {
      quant_refuses = false;
      for (const rows* r : {&k, &v})
        for (std::int64_t s = 0; s < r->n; ++s)
          for (std::int64_t c = 0; c < r->d; ++c)
            if (!std::isfinite(r->values[std::size_t((s * r->heads + src) * r->d + c)]))
              quant_refuses = true;
    }
    bool use = false;
    const std::vector<std::int64_t> p = make_positions(k.n, use);
    status want = status::ok;
    const bool src_bad = src < 0 || (k.view.data != nullptr && src >= k.heads);
    if (!valid_slot(l, h) || src_bad) {
      want = status::invalid_argument;
    } else if (want_input != status::ok) {
      want = want_input;
    } else if (quant_refuses) {
      want = status::invalid_argument;
    } else {
      const slot_model& s = m.at(l, h);
      if ((s.limit > 0 && std::int64_t(s.e.size()) + k.n > s.limit) ||
          !positions_ok(s, p, use, k.n))
        want = status::invalid_argument;
    }
    const status s = cache.append_head(l, h, k.view, v.view, int(src), use ? p.data() : nullptr);
    HEED_FUZZ_CHECK(s == want);
    if (s != status::ok) return;
    push_rows(m.at(l, h), k, v, src, p, use);
  }

  void op_keep() {
    if (!m.ready) return;
    const int l = layer_arg(), h = head_arg();
    const std::int64_t len = valid_slot(l, h) ? std::int64_t(m.at(l, h).e.size()) : 0;
    std::vector<std::int32_t> keep;
    const std::uint8_t density = in.byte();
    for (std::int64_t i = 0; i < len; ++i)
      if (in.byte() < density) keep.push_back(std::int32_t(i));
    status want = valid_slot(l, h) ? status::ok : status::invalid_argument;
    std::int64_t n_keep = std::int64_t(keep.size());
    bool null_keep = false;
    const std::uint8_t defect = in.byte();
    if (defect >= 225 && want == status::ok) {
      switch (defect % 6) {
        case 0:
          if (keep.size() >= 2) std::swap(keep[0], keep[1]), want = status::invalid_argument;
          break;
        case 1:
          if (keep.size() >= 2) keep[1] = keep[0], want = status::invalid_argument;
          break;
        case 2:
          keep.push_back(std::int32_t(len)), ++n_keep, want = status::invalid_argument;
          break;
        case 3:
          n_keep = len + 1, want = status::invalid_argument;
          break;
        case 4:
          n_keep = -1, want = status::invalid_argument;
          break;
        default:
          if (n_keep > 0) null_keep = true, want = status::null_pointer;
          break;
      }
    }
    if (n_keep > std::int64_t(keep.size())) keep.resize(std::size_t(n_keep), 0);  // readable
    const std::int32_t* kp = null_keep ? nullptr : keep.data();
    const status s = cache.keep(l, h, kp, n_keep);
    if (s != want) {
      std::fprintf(stderr, "keep(%d, %d, n_keep %lld of len %lld, defect %d): status %d\n", l, h,
                   (long long)n_keep, (long long)len, int(defect), int(s));
      for (std::int64_t i = 0; i < n_keep && kp; ++i) std::fprintf(stderr, " %d", kp[i]);
      std::fprintf(stderr, "\n");
    }
    HEED_FUZZ_CHECK(s == want);
    if (s != status::ok) return;
    slot_model& sl = m.at(l, h);
    std::vector<entry> kept;
    for (std::int64_t i = 0; i < n_keep; ++i)
      kept.push_back(sl.e[std::size_t(keep[std::size_t(i)])]);
    sl.e = std::move(kept);
  }

  void op_gather_defect() {
    if (!m.ready) return;
    const int l = layer_arg(), h = head_arg();
    int which = int(in.range(0, 2));
    const std::int64_t len = valid_slot(l, h) ? std::int64_t(m.at(l, h).e.size()) : 0;
    const std::size_t need = std::size_t(len) * m.row_bytes();
    bytes buf(need + 1, 0x5A);
    const std::uint8_t mode = in.byte() % 3;
    std::size_t size = mode == 0 ? need : need > 0 ? need - 1 : 0;
    void* dst = mode == 2 ? nullptr : buf.data();
    status want = status::ok;
    if (!valid_slot(l, h) || which == 2) {
      want = status::invalid_argument;
    } else if (len > 0 && dst == nullptr) {
      want = status::null_pointer;
    } else if (len > 0 && size < need) {
      want = status::workspace_too_small;
    }
    const std::vector<std::uint8_t> before = buf;
    const status s = cache.gather(l, h, which, dst, size);
    HEED_FUZZ_CHECK(s == want);
    if (s != status::ok || dst == nullptr) {
      HEED_FUZZ_CHECK(buf == before);
      return;
    }
    HEED_FUZZ_CHECK(buf[need] == 0x5A);  // nothing past the rows
  }

  void op_set_limit() {
    if (!m.ready) return;
    const int l = layer_arg(), h = head_arg();
    std::int64_t limit = in.range(0, 40);
    if (in.byte() >= 240) limit = -1;
    status want = status::ok;
    if (!valid_slot(l, h) || limit < 0 || (limit > 0 && limit < std::int64_t(m.at(l, h).e.size())))
      want = status::invalid_argument;
    HEED_FUZZ_CHECK(cache.set_limit(l, h, limit) == want);
    if (want == status::ok) m.at(l, h).limit = limit;
  }

  void op_shrink() {
    if (!m.ready) return;
    const std::int64_t slack = in.byte() >= 240 ? -1 : in.range(0, 20);
    HEED_FUZZ_CHECK(cache.shrink_to_fit(slack) ==
                    (slack < 0 ? status::invalid_argument : status::ok));
  }

  void op_clear_layer() {
    if (!m.ready) return;
    const int l = int(in.range(0, m.cfg.layers - 1));
    cache.clear_layer(l);
    for (int h = 0; h < m.cfg.kv_heads; ++h) m.at(l, h).e.clear(), m.at(l, h).appended = 0;
  }

  void op_clear() {
    if (!m.ready) return;
    cache.clear();
    for (auto& s : m.slots) s.e.clear(), s.appended = 0;
  }

  void op_write_scores() {
    if (!m.ready || m.cfg.score_channels == 0) return;
    const int l = int(in.range(0, m.cfg.layers - 1)), h = int(in.range(0, m.cfg.kv_heads - 1));
    const int ch = int(in.range(0, m.cfg.score_channels - 1));
    slot_model& s = m.at(l, h);
    for (std::size_t i = 0; i < s.e.size(); ++i) {
      const float x = float(in.byte()) + float(i) / 64.f;
      cache.scores(l, h, ch)[i] = x;
      s.e[i].scores[std::size_t(ch)] = x;
    }
  }

  void run() {
    int ops = 0;
    while (!in.empty() && ops++ < 64) {
      switch (in.byte() % 12) {
        case 0:
          op_init();
          break;
        case 1:
        case 2:
        case 3:
          op_append();
          break;
        case 4:
          op_append_head();
          break;
        case 5:
        case 6:
          op_keep();
          break;
        case 7:
          op_gather_defect();
          break;
        case 8:
          op_set_limit();
          break;
        case 9:
          op_shrink();
          break;
        case 10:
          in.flag() ? op_clear_layer() : op_clear();
          break;
        default:
          in.flag() ? op_write_scores() : op_check_rows();
          break;
      }
      check_state(cache, m);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzzer f{fuzz_input(data, size), {}, {}};
  // Most programs start from a valid cache: the first bytes choose its configuration.
  if (f.in.byte() < 200) f.op_init();
  f.run();
  return 0;
}
