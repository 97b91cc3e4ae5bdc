// Fuzz target: the C API's dense attention (include/heed/c/heed.h).
//
// The input picks a small problem (Lq, Lk <= 32, Hq <= 4, head dims 1 .. 128 with odd ones, every
// K/V dtype, seq- or head-major layouts with padding), the built-in variants, the row outputs, a
// decode probability tap, an executor, and one deliberate defect (a null pointer, a negative or
// overlapping stride, a shape or dtype mismatch, an invalid enum, a short workspace, an option
// out of range) or none. Each tensor lives in a buffer of exactly its extent (so ASan sees any
// read or write outside it), O's padding holds a sentinel.
// Checked: a defect gives a non-ok status (the right one where the API names it) and leaves O
// as it was; a valid call returns ok and matches the float64 reference
// (tests/reference/naive_attention.hpp) in O, LSE, entropy and the tapped probabilities;
// heed_dense_can_implement and heed_dense_workspace_size agree with the call.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_input.hpp"
#include "heed/c/heed.h"
#include "heed/core/dtype.hpp"
#include "heed/quant/quantize.hpp"
#include "reference/naive_attention.hpp"

namespace {

using heed_fuzz::fuzz_input;

constexpr float kSentinel = -12345.f;

// A tensor in a buffer of exactly its extent (elements of its dtype; bytes for q8 / q4).
struct buffer {
  std::vector<float> f32;
  std::vector<std::uint16_t> half;  // f16 / bf16
  std::vector<unsigned char> quant;
  heed_tensor t{};
  void* data() {
    if (!f32.empty()) return f32.data();
    if (!half.empty()) return half.data();
    return quant.data();
  }
};

std::int64_t row_extent(heed_dtype type, std::int64_t dim) {
  if (type == HEED_DTYPE_Q8 || type == HEED_DTYPE_Q4)
    return std::int64_t(heed::quant::row_bytes(heed::dtype(type), dim, heed::quant::default_group));
  return dim;
}

// Layout: seq-major ([seq, heads, dim]) or head-major, with up to 3 elements of padding per row
// and per outer stride.
void choose_layout(fuzz_input& in, heed_tensor& t) {
  const std::int64_t e = row_extent(t.dtype, t.dim);
  const std::int64_t pad_row = in.range(0, 3), pad_outer = in.range(0, 3);
  if (in.flag()) {
    t.head_stride = e + pad_row;
    t.seq_stride = t.heads * t.head_stride + pad_outer;
  } else {
    t.seq_stride = e + pad_row;
    t.head_stride = t.seq * t.seq_stride + pad_outer;
  }
}

std::int64_t extent(const heed_tensor& t) {
  return (t.seq - 1) * t.seq_stride + (t.heads - 1) * t.head_stride + row_extent(t.dtype, t.dim);
}

struct value_source {
  std::uint32_t state;
  int style;
  float next() {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    const float x = float(int(state % 256) - 128) / 32.f;  // exact in f16 and bf16
    switch (style) {
      case 0:
        return 0.f;
      case 1:
        return 1.f;
      case 2:
        return x * 4.f;
      default:
        return x;
    }
  }
};

// Fills a K/V/Q tensor with values and returns the values it holds as double ([seq][heads][dim]),
// as the kernel reads them (dequantized for q8 / q4).
std::vector<double> fill(buffer& b, value_source& vs) {
  const heed_tensor& t = b.t;
  const std::int64_t n = extent(t);
  if (t.dtype == HEED_DTYPE_F32)
    b.f32.assign(std::size_t(n), kSentinel);
  else if (t.dtype == HEED_DTYPE_F16 || t.dtype == HEED_DTYPE_BF16)
    b.half.assign(std::size_t(n), 0);
  else
    b.quant.assign(std::size_t(n), 0);
  std::vector<double> out(std::size_t(t.seq * t.heads * t.dim));
  std::vector<float> row(std::size_t(t.dim));
  for (std::int64_t s = 0; s < t.seq; ++s)
    for (std::int64_t h = 0; h < t.heads; ++h) {
      for (auto& x : row) x = vs.next();
      const std::int64_t at = s * t.seq_stride + h * t.head_stride;
      double* o = &out[std::size_t((s * t.heads + h) * t.dim)];
      if (t.dtype == HEED_DTYPE_F32) {
        std::copy(row.begin(), row.end(), b.f32.begin() + at);
        std::copy(row.begin(), row.end(), o);
      } else if (t.dtype == HEED_DTYPE_F16 || t.dtype == HEED_DTYPE_BF16) {
        for (std::int64_t c = 0; c < t.dim; ++c) {
          const float x = row[std::size_t(c)];
          if (t.dtype == HEED_DTYPE_F16) {
            const heed::f16 v = heed::from_float<heed::f16>(x);
            std::memcpy(&b.half[std::size_t(at + c)], &v, 2);
            o[c] = heed::to_float(v);
          } else {
            const heed::bf16 v = heed::from_float<heed::bf16>(x);
            std::memcpy(&b.half[std::size_t(at + c)], &v, 2);
            o[c] = heed::to_float(v);
          }
        }
      } else {
        const auto f = heed::dtype(t.dtype);
        const int g = heed::quant::default_group;
        HEED_FUZZ_CHECK(heed::quant::quantize_row(f, row.data(), t.dim, g,
                                                  &b.quant[std::size_t(at)]) == heed::status::ok);
        std::vector<float> back(std::size_t(t.dim));
        HEED_FUZZ_CHECK(heed::quant::dequantize_row(f, &b.quant[std::size_t(at)], t.dim, g,
                                                    back.data()) == heed::status::ok);
        std::copy(back.begin(), back.end(), o);
      }
    }
  b.t.data = b.data();
  return out;
}

// A serial executor that reports `concurrency` threads (task i on thread i % concurrency) and
// checks that each task runs exactly once.
struct serial_executor {
  int concurrency;
  static void parallel_for(void* ctx, std::int64_t n, void (*task)(void*, std::int64_t, int),
                           void* arg) {
    const auto* self = static_cast<const serial_executor*>(ctx);
    for (std::int64_t i = n - 1; i >= 0; --i) task(arg, i, int(i % self->concurrency));
  }
};

struct tap_record {
  std::int64_t hq = 0, lk = 0;
  std::vector<double> p;  // [hq][lk], NaN until reported
  bool bad = false;
  static void call(void* user, int q_head, std::int64_t key_begin, const float* p, std::int64_t n) {
    auto* r = static_cast<tap_record*>(user);
    if (q_head < 0 || q_head >= r->hq || key_begin < 0 || n < 0 || key_begin + n > r->lk) {
      r->bad = true;
      return;
    }
    for (std::int64_t j = 0; j < n; ++j) {
      double& slot = r->p[std::size_t(q_head * r->lk + key_begin + j)];
      if (!std::isnan(slot)) r->bad = true;  // reported twice
      slot = p[j];
    }
  }
};

enum defect {
  none,
  null_pointer,
  negative_stride,
  overlapping_stride,
  shape_mismatch,
  wrong_dtype,
  invalid_enum,
  short_workspace,
  option_out_of_range,
  defect_count
};

bool close(double got, double want, double tol) { return std::fabs(got - want) <= tol; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_input in(data, size);
  static const std::int64_t dims[] = {8, 16, 32, 64, 128, 1, 3, 5, 7, 13, 33, 96};
  static const heed_dtype kv_types[] = {HEED_DTYPE_F32, HEED_DTYPE_F16, HEED_DTYPE_BF16,
                                        HEED_DTYPE_Q8, HEED_DTYPE_Q4};
  const std::int64_t d = in.pick(dims);
  const std::int64_t hkv = in.range(1, 4);
  const std::int64_t hq = hkv * in.range(1, 4 / hkv);
  const std::int64_t lq = in.flag() ? 1 : in.range(1, 32);
  const std::int64_t lk = in.range(1, 32);
  const heed_dtype kv_type = in.pick(kv_types);
  const int defect_byte = int(in.byte());
  const defect bad = defect_byte < 128 ? none : defect(1 + defect_byte % (defect_count - 1));
  const int defect_arg = int(in.byte());

  heed_dense_params p;
  heed_dense_params_init(&p);
  buffer q, k, v;
  q.t = {nullptr, HEED_DTYPE_F32, lq, hq, d, 0, 0};
  k.t = {nullptr, kv_type, lk, hkv, d, 0, 0};
  v.t = {nullptr, kv_type, lk, hkv, d, 0, 0};
  choose_layout(in, q.t);
  choose_layout(in, k.t);
  choose_layout(in, v.t);
  heed_tensor ot{nullptr, HEED_DTYPE_F32, lq, hq, d, 0, 0};
  choose_layout(in, ot);
  std::vector<float> o(std::size_t(extent(ot)), kSentinel);

  value_source vs{in.u32() | 1u, int(in.byte() % 8)};
  heed_ref::attention_problem ref;
  ref.lq = lq;
  ref.lk = lk;
  ref.hq = hq;
  ref.hkv = hkv;
  ref.d = d;
  const bool quantized = kv_type == HEED_DTYPE_Q8 || kv_type == HEED_DTYPE_Q4;
  const bool quant_ok = !quantized || heed::quant::valid_group(d, heed::quant::default_group);
  if (quant_ok) {
    ref.q = fill(q, vs);
    ref.k = fill(k, vs);
    ref.v = fill(v, vs);
    // Decode over q8 keys reads the query quantized to q8 (the keys' group): the reference too.
    if (kv_type == HEED_DTYPE_Q8 && lq == 1) {
      const int g = heed::quant::default_group;
      std::vector<float> row(static_cast<std::size_t>(d));
      std::vector<unsigned char> bytes(heed::quant::row_bytes(heed::dtype::q8, d, g));
      for (std::int64_t h = 0; h < hq; ++h) {
        double* r = &ref.q[std::size_t(h * d)];
        for (std::int64_t c = 0; c < d; ++c) row[std::size_t(c)] = float(r[c]);
        HEED_FUZZ_CHECK(heed::quant::quantize_row(heed::dtype::q8, row.data(), d, g,
                                                  bytes.data()) == heed::status::ok);
        HEED_FUZZ_CHECK(heed::quant::dequantize_row(heed::dtype::q8, bytes.data(), d, g,
                                                    row.data()) == heed::status::ok);
        for (std::int64_t c = 0; c < d; ++c) r[c] = row[std::size_t(c)];
      }
    }
  } else {  // q8 / q4 rows of this dim do not exist: any bytes, the call must refuse them
    q.t.dtype = HEED_DTYPE_F32;
    ref.q = fill(q, vs);
    for (buffer* b : {&k, &v}) {
      b->quant.assign(std::size_t(std::max<std::int64_t>(1, (lk + 1) * hkv * (d + 8))), 0);
      b->t.data = b->quant.data();
    }
  }
  p.q = q.t;
  p.k = k.t;
  p.v = v.t;
  p.o = {o.data(), ot.dtype, ot.seq, ot.heads, ot.dim, ot.seq_stride, ot.head_stride};

  // Variants.
  const std::uint8_t variants = in.byte();
  p.causal = (variants & 1) ? 0 : 1;
  ref.causal = p.causal != 0;
  if (in.flag()) {
    p.q_offset = in.range(0, 40);
    ref.q_offset = p.q_offset;
  }
  if (in.flag()) p.scale = ref.scale = float(in.range(1, 64)) / 32.f;
  if (variants & 2) {
    p.window_left = in.range(0, 40);
    ref.window_left = p.window_left;
  }
  if (variants & 4) {
    p.softcap = float(in.range(1, 64));
    ref.softcap = p.softcap;
  }
  std::vector<float> alibi, sinks, ssmax, key_bias, sigmoid_bias;
  auto per_head = [&](std::vector<float>& vals, std::vector<double>& ref_vals, float lo,
                      float step) {
    for (std::int64_t h = 0; h < hq; ++h) vals.push_back(lo + step * float(in.byte() % 64));
    ref_vals.assign(vals.begin(), vals.end());
  };
  if (variants & 8) {
    per_head(alibi, ref.alibi_slopes, 0.f, 1.f / 64.f);
    p.alibi_slopes = alibi.data();
  }
  const bool sigmoid = (variants & 0x30) == 0x30;
  if (sigmoid) {
    p.sigmoid = 1;
    ref.sigmoid = true;
    if (in.flag()) {
      per_head(sigmoid_bias, ref.sigmoid_bias, -4.f, 1.f / 8.f);
      p.sigmoid_bias = sigmoid_bias.data();
    }
  } else if (variants & 0x10) {
    per_head(sinks, ref.sink_logits, -4.f, 1.f / 8.f);
    p.sink_logits = sinks.data();
  }
  if (variants & 0x40) {
    if (in.flag()) {
      per_head(ssmax, ref.ssmax, 0.f, 1.f / 32.f);
      p.ssmax = ssmax.data();
    } else {
      p.length_scale_base = in.range(2, 64);
      p.length_scale_floor = float(in.range(0, 8)) / 4.f;
      ref.length_scale_base = p.length_scale_base;
      ref.length_scale_floor = p.length_scale_floor;
    }
  }
  if (variants & 0x80) {
    p.key_bias_len = in.range(1, 40);
    key_bias.resize(std::size_t(hq * p.key_bias_len));
    for (auto& x : key_bias) x = float(int(in.byte() % 64) - 32) / 8.f;
    p.key_bias = key_bias.data();
    ref.key_bias.assign(key_bias.begin(), key_bias.end());
    ref.key_bias_len = p.key_bias_len;
  }

  // Row outputs, with a sentinel in their padding.
  std::vector<float> lse, entropy;
  const std::uint8_t rows = in.byte();
  const std::int64_t row_pad = (rows & 4) ? in.range(0, 3) : 0;
  const std::int64_t row_stride = lq + row_pad;
  if (rows & 3) {
    p.row_head_stride = row_pad ? row_stride : (in.flag() ? 0 : lq);
    if (rows & 1) lse.assign(std::size_t(hq * row_stride), kSentinel), p.lse = lse.data();
    if (rows & 2)
      entropy.assign(std::size_t(hq * row_stride), kSentinel), p.entropy = entropy.data();
  }

  tap_record tap;
  if (lq == 1 && in.flag()) {
    tap.hq = hq;
    tap.lk = lk;
    tap.p.assign(std::size_t(hq * lk), __builtin_nan(""));
    p.prob_tap = &tap_record::call;
    p.prob_tap_user = &tap;
  }

  // Read-only buffers may be shared: V reads K's buffer (same layout, same values).
  if (quant_ok && in.flag() && k.t.seq_stride == v.t.seq_stride &&
      k.t.head_stride == v.t.head_stride) {
    p.v.data = p.k.data;
    ref.v = ref.k;
  }

  // The expected outcome without a defect.
  bool valid = quant_ok;
  if (p.causal && p.q_offset == -1 && lk < lq) valid = false;
  heed_status want = HEED_STATUS_OK;  // for the defects whose status the API names
  bool want_any_error = false;

  std::size_t ws_extra = 0;
  bool null_ws = false;
  switch (bad) {
    case none:
      break;
    case null_pointer: {
      const int which = defect_arg % 5;
      if (which == 0) p.q.data = nullptr;
      if (which == 1) p.k.data = nullptr;
      if (which == 2) p.v.data = nullptr;
      if (which == 3) p.o.data = nullptr;
      if (which == 4) {
        p.key_bias = nullptr;
        p.key_bias_len = 1 + defect_arg / 8;
      }
      want = HEED_STATUS_NULL_POINTER;
      break;
    }
    case negative_stride: {
      heed_tensor* ts[] = {&p.q, &p.k, &p.v};
      heed_tensor* t = ts[defect_arg % 3];
      if (defect_arg & 4)
        t->seq_stride = -t->seq_stride - 1;
      else
        t->head_stride = -t->head_stride - 1;
      if (defect_arg & 8) p.o.seq_stride = -1;
      want_any_error = true;
      break;
    }
    case overlapping_stride: {
      // Rows that overlap: both strides below the row, or the outer one below heads * inner.
      heed_tensor* ts[] = {&p.q, &p.k, &p.v};
      heed_tensor* t = ts[defect_arg % 3];
      const std::int64_t e = row_extent(t->dtype, t->dim);
      if (t->seq > 1 || t->heads > 1) {
        if (t->seq > 1 && t->heads > 1) {
          t->seq_stride = e;
          t->head_stride = e;
        } else if (t->seq > 1) {
          t->seq_stride = e - 1;
        } else {
          t->head_stride = e - 1;
        }
        want_any_error = true;
      } else if (lq > 1 && hq > 1) {
        p.o.seq_stride = p.o.head_stride = d;
        want_any_error = true;
      }
      break;
    }
    case shape_mismatch: {
      switch (defect_arg % 6) {
        case 0:
          p.k.dim += 1;
          break;
        case 1:
          p.v.seq = lk > 1 ? lk - 1 : 2;
          break;
        case 2:
          p.o.heads = hq > 1 ? hq - 1 : 2;
          break;
        case 3:
          p.o.seq = lq > 1 ? lq - 1 : 2;
          break;
        case 4:
          p.v.heads = hkv > 1 ? hkv - 1 : 2;
          break;
        default:
          p.o.dim = d > 1 ? d - 1 : 2;
          break;
      }
      want_any_error = true;  // the dims also change strides' validity: any error
      break;
    }
    case wrong_dtype: {
      const heed_dtype others[] = {HEED_DTYPE_F16, HEED_DTYPE_BF16, HEED_DTYPE_Q8};
      if (defect_arg % 3 == 0) p.q.dtype = others[(defect_arg / 3) % 3];
      if (defect_arg % 3 == 1) p.o.dtype = others[(defect_arg / 3) % 3];
      if (defect_arg % 3 == 2)
        p.v.dtype = p.k.dtype == HEED_DTYPE_F32 ? HEED_DTYPE_F16 : HEED_DTYPE_F32;
      want_any_error = true;
      break;
    }
    case invalid_enum: {
      // Stored as a C caller would (an int outside the enum; not a C++ enum value).
      const int odd[] = {5, 6, 7, 100, -1, 0x7fffffff};
      heed_dtype* fields[] = {&p.q.dtype, &p.k.dtype, &p.v.dtype, &p.o.dtype};
      std::memcpy(fields[defect_arg % 4], &odd[(defect_arg / 4) % 6], sizeof(int));
      want_any_error = true;
      break;
    }
    case short_workspace:
      null_ws = (defect_arg & 1) != 0;
      ws_extra = 1 + defect_arg / 2;
      break;
    case option_out_of_range: {
      switch (defect_arg % 9) {
        case 0:
          p.scale = -1.f;
          break;
        case 1:
          p.scale = __builtin_nanf("");
          break;
        case 2:
          p.softcap = -__builtin_inff();
          break;
        case 3:
          p.q_offset = -2 - defect_arg;
          break;
        case 4:
          p.window_left = -2;
          break;
        case 5:
          p.length_scale_base = 1;
          break;
        case 6:
          p.length_scale_floor = __builtin_inff();
          break;
        case 7:
          p.sigmoid = 1;
          sinks.assign(std::size_t(hq), 0.f);
          p.sink_logits = sinks.data();
          break;
        default:
          lse.assign(std::size_t(hq * lq), kSentinel);
          p.lse = lse.data();
          p.row_head_stride = lq - 1 > 0 ? lq - 1 : -1;
          break;
      }
      want_any_error = true;
      break;
    }
    default:
      break;
  }
  const bool expect_ok = valid && bad == none;

  serial_executor sx{1 + int(in.byte() % 3)};
  heed_executor ex{sx.concurrency, &serial_executor::parallel_for, &sx};
  const bool use_ex = in.flag();
  const int threads = use_ex ? sx.concurrency : 1;

  const heed_status can = heed_dense_can_implement(&p);
  const std::size_t need = heed_dense_workspace_size(&p, threads);
  if (can != HEED_STATUS_OK) HEED_FUZZ_CHECK(need == 0);
  std::vector<unsigned char> ws;
  std::size_t ws_size = need;
  if (bad == short_workspace) {
    if (need == 0) return 0;  // nothing to shorten
    ws_size = ws_extra >= need ? 0 : need - ws_extra;
  }
  ws.resize(std::max<std::size_t>(ws_size, 1));
  void* ws_ptr = null_ws ? nullptr : ws.data();
  if (null_ws) ws_size = 0;
  const std::vector<float> o_before = o;
  const heed_status s = heed_dense_attention(&p, ws_ptr, ws_size, use_ex ? &ex : nullptr);
  HEED_FUZZ_CHECK(heed_status_string(s) != nullptr);

  if (bad == short_workspace) {
    HEED_FUZZ_CHECK(s == (can == HEED_STATUS_OK ? HEED_STATUS_WORKSPACE_TOO_SMALL : can));
  } else {
    HEED_FUZZ_CHECK(s == can);  // can_implement tells the call's outcome
  }
  if (want != HEED_STATUS_OK && valid) HEED_FUZZ_CHECK(s == want);
  if (want_any_error || !valid) HEED_FUZZ_CHECK(s != HEED_STATUS_OK);
  if (expect_ok) HEED_FUZZ_CHECK(s == HEED_STATUS_OK);
  if (s != HEED_STATUS_OK) {
    HEED_FUZZ_CHECK(std::memcmp(o.data(), o_before.data(), o.size() * sizeof(float)) == 0);
    return 0;
  }
  if (!expect_ok) return 0;  // a defect that changes nothing (an overlap check of a 1-row view)

  const heed_ref::attention_result r = heed_ref::naive_attention(ref);
  const double vmax = vs.style == 2 ? 16.0 : 4.0;
  // O: within tolerance of the reference, padding untouched.
  std::vector<char> logical(o.size(), 0);
  for (std::int64_t i = 0; i < lq; ++i)
    for (std::int64_t h = 0; h < hq; ++h) {
      const double widen = std::max(1.0, r.max_abs_logit_at(h, i) / 10.0);
      const double mass = sigmoid ? double(lk) : 1.0;
      for (std::int64_t c = 0; c < d; ++c) {
        const std::size_t at = std::size_t(i * ot.seq_stride + h * ot.head_stride + c);
        logical[at] = 1;
        const double want_o = r.o_at(i, h, c);
        HEED_FUZZ_CHECK(
            close(o[at], want_o, (2e-4 * vmax * mass + 2e-4 * std::fabs(want_o)) * widen));
      }
    }
  for (std::size_t e = 0; e < o.size(); ++e)
    if (!logical[e]) HEED_FUZZ_CHECK(o[e] == kSentinel);
  // LSE and entropy rows.
  const std::int64_t rs = p.row_head_stride ? p.row_head_stride : lq;
  for (int which = 0; which < 2; ++which) {
    const std::vector<float>& buf = which == 0 ? lse : entropy;
    if (buf.empty()) continue;
    for (std::int64_t h = 0; h < hq; ++h)
      for (std::int64_t i = 0; i < std::int64_t(buf.size()) / hq; ++i) {
        const float got = buf[std::size_t(h * rs + i)];
        if (i >= lq) {
          HEED_FUZZ_CHECK(got == kSentinel);
          continue;
        }
        const double l = r.lse_at(h, i);
        const double widen = std::max(1.0, r.max_abs_logit_at(h, i) / 10.0);
        if (which == 0) {
          if (std::isinf(l))
            HEED_FUZZ_CHECK(std::isinf(got) && got < 0);
          else
            HEED_FUZZ_CHECK(close(got, l, 1e-4 * (1.0 + std::fabs(l)) * widen));
        } else {
          const double tol = 1e-3 * (1.0 + (std::isinf(l) ? 0.0 : std::fabs(l))) * widen;
          HEED_FUZZ_CHECK(close(got, r.entropy_at(h, i), tol));
        }
      }
  }
  // The tap: each (head, key) at most once, every key with weight reported, values right.
  if (p.prob_tap != nullptr) {
    HEED_FUZZ_CHECK(!tap.bad);
    for (std::int64_t h = 0; h < hq; ++h)
      for (std::int64_t j = 0; j < lk; ++j) {
        const double got = tap.p[std::size_t(h * lk + j)];
        const double want_p = r.prob_at(h, 0, j);
        const double widen = std::max(1.0, r.max_abs_logit_at(h, 0) / 10.0);
        if (std::isnan(got)) {
          HEED_FUZZ_CHECK(want_p <= 1e-6);
          continue;
        }
        HEED_FUZZ_CHECK(close(got, want_p, (1e-5 + 2e-4 * want_p) * widen));
      }
  }
  return 0;
}
