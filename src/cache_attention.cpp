// Attention over the ragged KV cache: one dense_attention call per KV head (per page of a paged
// head in prefill, per tier of a tiered head, merged in log-sum-exp form).
#include "heed/cache/cache_attention.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "heed/attention/params.hpp"

namespace heed {
namespace {

// The probability tap of one KV head: column accumulation and/or a copy of the row.
struct head_tap {
  column_accumulator acc;
  bool accumulate = false;
  float* probs = nullptr;  // row of query head 0 of this group; rows probs_stride apart
  std::int64_t probs_stride = 0;

  static void call(void* self, int q_head, std::int64_t key_begin, const float* p,
                   std::int64_t n) noexcept {
    auto* t = static_cast<head_tap*>(self);
    if (t->probs)
      std::memcpy(t->probs + q_head * t->probs_stride + key_begin, p, n * sizeof(float));
    if (t->accumulate) t->acc.on_probs(q_head, key_begin, p, n);
  }
};

// The dense parameters of KV head h: the group's query heads over the head's entries.
dense_params head_params(const kv_cache& c, int layer, int h, const cache_attention_params& p,
                         int group) {
  dense_params d;
  const std::int64_t h0 = std::int64_t(h) * group;
  d.logits() = p.heads_from(h0);
  d.q = p.q;
  d.q.data = static_cast<const float*>(p.q.data) + h0 * p.q.head_stride;
  d.q.heads = group;
  d.o = p.o;
  d.o.data = static_cast<float*>(p.o.data) + h0 * p.o.head_stride;
  d.o.heads = group;
  d.k = c.keys(layer, h);
  d.v = c.values(layer, h);
  if (c.paged() && c.page_count(layer, h) > 0) {
    // The head's rows live in pages: decode takes the page table (every page a partition);
    // prefill runs page by page (run_paged_prefill), so the views are of page 0.
    d.k = c.page_keys(layer, h, 0);
    d.v = c.page_values(layer, h, 0);
    d.k.seq = d.v.seq = c.length(layer, h);
    if (p.q.seq == 1) {
      d.pages = c.pages(layer, h);
      d.n_pages = c.page_count(layer, h);
    }
  }
  d.causal = p.causal;
  d.q_offset = p.causal ? d.k.seq - p.q.seq : 0;
  const std::int64_t rs = p.row_head_stride > 0 ? p.row_head_stride : p.q.seq;
  d.row_head_stride = rs;
  if (p.lse) d.lse = p.lse + h0 * rs;
  if (p.entropy) d.entropy = p.entropy + h0 * rs;
  return d;
}

bool wants_tap(const cache_attention_params& p) {
  return p.accumulate_channel >= 0 || p.probs != nullptr;
}

// Prefill over a head of more than one page goes page by page.
bool paged_prefill(const kv_cache& c, int layer, int h, const cache_attention_params& p) {
  return p.q.seq > 1 && c.paged() && c.page_count(layer, h) > 1;
}

// The first query row that sees any key of page `page` (causal: the row at the page's first key).
std::int64_t first_row(const kv_cache& c, int layer, int h, const cache_attention_params& p,
                       int page) {
  if (!p.causal) return 0;
  const std::int64_t first_q = c.length(layer, h) - p.q.seq;
  return std::max<std::int64_t>(0, c.page(layer, h, page).begin - first_q);
}

// The dense parameters of one page of KV head h in a paged prefill: the query rows from i0 on
// (the first that sees any key of the page), no sink (folded in by the merge), outputs elsewhere.
dense_params page_params(const kv_cache& c, int layer, int h, const cache_attention_params& p,
                         int group, int page, std::int64_t i0) {
  dense_params d = head_params(c, layer, h, p, group);
  const kv_page pg = c.page(layer, h, page);
  const std::int64_t first_q = p.causal ? c.length(layer, h) - p.q.seq : 0;
  d.k = c.page_keys(layer, h, page);
  d.v = c.page_values(layer, h, page);
  d.q.data = static_cast<const float*>(d.q.data) + i0 * p.q.seq_stride;
  d.q.seq = p.q.seq - i0;
  d.o.seq = d.q.seq;
  d.q_offset = p.causal ? first_q + i0 - pg.begin : 0;
  d.row_head_stride = p.q.seq;
  d.sink_logits = nullptr;
  d.lse = d.entropy = nullptr;
  return d;
}

// A head attended in parts (the pages of a paged prefill, the two tiers of a tiered head), each
// part one kernel call over some of the query rows, merged row by row in log-sum-exp form.
// Scratch: [Lq][G][d] part output, then [G][Lq] floats for the running LSE and mean logit and the
// part's LSE and entropy.
std::size_t merged_bytes(const cache_attention_params& p, int group) {
  const std::size_t rows = std::size_t(p.q.seq) * std::size_t(group);
  return align_up(rows * std::size_t(p.q.dim) * sizeof(float)) +
         align_up(4 * rows * sizeof(float)) + 2 * workspace_alignment;
}

// The prefill page of a paged head: its dense parameters and first query row (false: it and the
// later pages hold only keys after every query).
bool paged_part(const kv_cache& c, int layer, int h, const cache_attention_params& p, int group,
                int page, dense_params& dp, std::int64_t& i0) {
  if (page >= c.page_count(layer, h)) return false;
  i0 = first_row(c, layer, h, p, page);
  if (i0 >= p.q.seq) return false;
  dp = page_params(c, layer, h, p, group, page, i0);
  return true;
}

// A tier of a tiered head: the high tier (part 0) holds the queries' own tokens at its end and is
// attended with the caller's causal flag; the low tier (part 1) is older than every query.
bool tier_part(const kv_cache& c, int layer, int h, const cache_attention_params& p, int group,
               int tier, dense_params& dp, std::int64_t& i0) {
  if (tier > 1) return false;
  dp = head_params(c, layer, h, p, group);
  dp.k = c.tier_keys(layer, h, tier);
  dp.v = c.tier_values(layer, h, tier);
  dp.causal = p.causal && tier == 0;
  dp.q_offset = dp.causal ? dp.k.seq - p.q.seq : 0;
  dp.row_head_stride = p.q.seq;
  dp.sink_logits = nullptr;
  dp.lse = dp.entropy = nullptr;
  dp.prob_tap = nullptr;
  dp.prob_tap_user = nullptr;
  i0 = 0;
  return true;
}

// Runs part(k, dp, i0) for k = 0, 1, ... until it returns false and merges the parts in order:
// with L the running LSE and M the running mean logit (L - entropy), a part's (l, m, o_p) gives
// L' = log(e^L + e^l), o = o e^(L - L') + o_p e^(l - L'), M' = M e^(L - L') + m e^(l - L'). A
// sink logit s is one more such part with a zero output and m = s. Part 0 must cover every query
// row; an empty part (no keys) is skipped. part_lse ([parts][G][Lq]) and final_lse ([G][Lq]), when
// not null, receive each part's LSE and the merged one.
template <class Part>
status run_merged(const cache_attention_params& p, int group, int h, Part&& part, void* slot,
                  std::size_t bytes, executor& ex, isa i, float* part_lse = nullptr,
                  float* final_lse = nullptr) noexcept {
  const std::int64_t lq = p.q.seq, d = p.q.dim;
  const std::size_t rows = std::size_t(lq) * std::size_t(group);
  const std::size_t scratch = merged_bytes(p, group);
  if (bytes < scratch + workspace_alignment) return status::workspace_too_small;
  workspace_carver carve(workspace_carver::align_base(slot));
  float* o_part = carve.take<float>(rows * std::size_t(d));
  float* run_l = carve.take<float>(4 * rows);  // [G][Lq] running LSE
  float* run_m = run_l + rows;                 // running mean logit
  float* page_l = run_m + rows;                // this part's LSE
  float* page_h = page_l + rows;               // this part's entropy
  const workspace kernel_ws{static_cast<char*>(slot) + scratch + workspace_alignment,
                            bytes - scratch - workspace_alignment};
  const bool entropy = p.entropy != nullptr;
  const std::int64_t h0 = std::int64_t(h) * group;
  dense_params dp;
  std::int64_t i0 = 0;
  bool first = true;
  for (int k = 0; part(k, dp, i0); ++k) {
    if (dp.k.seq == 0) {
      if (part_lse)
        for (std::size_t r = 0; r < rows; ++r)
          part_lse[std::size_t(k) * rows + r] = -std::numeric_limits<float>::infinity();
      continue;
    }
    if (first && i0 != 0) return status::invalid_argument;  // part 0 covers every row
    if (!first) dp.o = make_mutable_view(o_part, lq - i0, group, d);
    dp.lse = first ? run_l : page_l;
    dp.entropy = entropy ? page_h : nullptr;
    HEED_RETURN_IF_ERROR(dense_attention(dp, kernel_ws, ex, i));
    if (part_lse)
      for (std::size_t r = 0; r < rows; ++r)
        part_lse[std::size_t(k) * rows + r] = (first ? run_l : page_l)[r];
    for (int g = 0; g < group; ++g) {
      for (std::int64_t r = i0; r < lq; ++r) {
        const std::size_t at = std::size_t(g) * std::size_t(lq) + std::size_t(r);
        const std::size_t pr = std::size_t(g) * std::size_t(lq) + std::size_t(r - i0);
        if (first) {
          run_m[at] = entropy ? run_l[at] - page_h[pr] : 0.f;
          continue;
        }
        const float l = page_l[pr], big = std::max(run_l[at], l);
        const float wa = std::exp(run_l[at] - big), wb = std::exp(l - big);
        const float sum = wa + wb, fa = wa / sum, fb = wb / sum;
        float* orow = p.o.row<float>(r, int(h0 + g));
        const float* prow = o_part + (std::size_t(r - i0) * group + g) * std::size_t(d);
        for (std::int64_t e = 0; e < d; ++e) orow[e] = orow[e] * fa + prow[e] * fb;
        if (entropy) run_m[at] = run_m[at] * fa + (l - page_h[pr]) * fb;
        run_l[at] = big + std::log(sum);
      }
    }
    first = false;
  }
  if (first) return status::invalid_argument;  // no part had keys (run_head handles empty heads)
  const std::int64_t rs = p.row_head_stride > 0 ? p.row_head_stride : lq;
  for (int g = 0; g < group; ++g) {
    const std::int64_t qh = h0 + g;
    for (std::int64_t r = 0; r < lq; ++r) {
      const std::size_t at = std::size_t(g) * std::size_t(lq) + std::size_t(r);
      float l = run_l[at], m = run_m[at];
      if (p.sink_logits) {
        const float s = p.sink_logits[qh], big = std::max(l, s);
        const float wa = std::exp(l - big), wb = std::exp(s - big);
        const float sum = wa + wb, fa = wa / sum;
        float* orow = p.o.row<float>(r, int(qh));
        for (std::int64_t e = 0; e < d; ++e) orow[e] *= fa;
        m = m * fa + s * (wb / sum);
        l = big + std::log(sum);
      }
      if (final_lse) final_lse[at] = l;
      if (p.lse) p.lse[qh * rs + r] = l;
      if (entropy) p.entropy[qh * rs + r] = std::max(0.f, l - m);
    }
  }
  return status::ok;
}

// Prefill over a paged head: the kernel once per page, over the query rows that see any of its
// keys.
status run_paged_prefill(kv_cache& c, int layer, int h, const cache_attention_params& p, int group,
                         void* slot, std::size_t bytes, executor& ex, isa i) noexcept {
  return run_merged(
      p, group, h,
      [&](int k, dense_params& dp, std::int64_t& i0) {
        return paged_part(c, layer, h, p, group, k, dp, i0);
      },
      slot, bytes, ex, i);
}

// The probabilities of one tier, captured from the kernel's tap ([G][n] rows).
struct tier_capture {
  float* rows = nullptr;
  std::int64_t n = 0;
  static void call(void* self, int q_head, std::int64_t key_begin, const float* p,
                   std::int64_t count) noexcept {
    auto* t = static_cast<tier_capture*>(self);
    std::memcpy(t->rows + q_head * t->n + key_begin, p, std::size_t(count) * sizeof(float));
  }
};

// Scratch of a tiered head's tap (decode): both tiers' captured rows ([G][len] in all), the
// reassembled row in entry order ([len]) and the LSEs ([2][G] parts, [G] merged).
std::size_t tier_tap_bytes(std::int64_t len, int group) {
  return align_up((std::size_t(group) + 1) * std::size_t(len) * sizeof(float)) +
         align_up(3 * std::size_t(group) * sizeof(float)) + workspace_alignment;
}

status run_tiered(kv_cache& c, int layer, int h, const cache_attention_params& p, int group,
                  head_tap* tap, void* slot, std::size_t bytes, executor& ex, isa i) noexcept {
  const std::int64_t len = c.length(layer, h), n_low = c.low_length(layer, h);
  const std::int64_t n_high = len - n_low;
  tier_capture cap[2];
  float *part_lse = nullptr, *final_lse = nullptr, *row = nullptr;
  if (tap) {
    const std::size_t tb = tier_tap_bytes(len, group);
    if (bytes < tb) return status::workspace_too_small;
    workspace_carver carve(workspace_carver::align_base(slot));
    float* rows = carve.take<float>((std::size_t(group) + 1) * std::size_t(len));
    part_lse = carve.take<float>(3 * std::size_t(group));
    final_lse = part_lse + 2 * group;
    cap[0] = {rows, n_high};
    cap[1] = {rows + std::size_t(group) * std::size_t(n_high), n_low};
    row = rows + std::size_t(group) * std::size_t(len);
    slot = static_cast<char*>(slot) + tb;
    bytes -= tb;
  }
  HEED_RETURN_IF_ERROR(run_merged(
      p, group, h,
      [&](int k, dense_params& dp, std::int64_t& i0) {
        if (!tier_part(c, layer, h, p, group, k, dp, i0)) return false;
        if (tap) {
          dp.prob_tap = tier_capture::call;
          dp.prob_tap_user = &cap[k];
        }
        return true;
      },
      slot, bytes, ex, i, part_lse, final_lse));
  if (!tap) return status::ok;
  // Each tier's probabilities were normalized over that tier: rescaled by e^(l_tier - L) and put
  // back in entry order, they are the probabilities of the whole head.
  const std::uint8_t* tier = c.tiers(layer, h);
  for (int g = 0; g < group; ++g) {
    float f[2];
    for (int t = 0; t < 2; ++t) {
      const float l = part_lse[t * group + g];
      f[t] = std::isinf(l) ? 0.f : std::exp(l - final_lse[g]);
    }
    std::int64_t r[2] = {0, 0};
    for (std::int64_t j = 0; j < len; ++j) {
      const int t = tier[j];
      row[j] = cap[t].rows[g * cap[t].n + r[t]++] * f[t];
    }
    head_tap::call(tap, g, 0, row, len);
  }
  return status::ok;
}

// A tiered head with entries in its low tier is attended tier by tier (merged); otherwise the
// kernel reads the head's single run of rows.
bool tiered_head(const kv_cache& c, int layer, int h) { return c.low_length(layer, h) > 0; }

}  // namespace

status cache_attention_validate(const kv_cache& c, int layer,
                                const cache_attention_params& p) noexcept {
  if (!c.valid(layer, 0)) return status::invalid_argument;
  if (p.q.data == nullptr || p.o.data == nullptr) return status::null_pointer;
  HEED_RETURN_IF_ERROR(validate_view(p.q));
  HEED_RETURN_IF_ERROR(validate_view(p.o));
  if (p.q.type != dtype::f32 || p.o.type != dtype::f32) return status::unsupported_dtype;
  if (p.q.dim != c.head_dim() || p.o.dim != c.head_dim()) return status::shape_mismatch;
  HEED_RETURN_IF_ERROR(validate_cache_logits(p));
  if (p.o.seq != p.q.seq || p.o.heads != p.q.heads) return status::shape_mismatch;
  if (p.q.heads % c.kv_heads() != 0) return status::shape_mismatch;
  if (p.row_head_stride < 0 || (p.row_head_stride > 0 && p.row_head_stride < p.q.seq))
    return status::invalid_stride;
  if (p.accumulate_channel >= c.config().score_channels) return status::invalid_argument;
  if (p.accumulate_channel < -1) return status::invalid_argument;
  if (wants_tap(p) && p.q.seq != 1) return status::invalid_argument;  // decode only
  if (p.accumulate_channel >= 0) HEED_RETURN_IF_ERROR(p.accumulate.validate());
  if (p.probs && p.probs_stride < c.max_length(layer)) return status::invalid_stride;
  for (int h = 0; h < c.kv_heads(); ++h) {
    const std::int64_t len = c.length(layer, h);
    if (p.causal && len != 0 && len < p.q.seq)
      return status::invalid_argument;  // the queries' own tokens must be in the cache
    // ... and, in a tiered cache, of its high tier (they are the newest entries).
    if (p.causal && len != 0 && c.tiers(layer, h))
      for (std::int64_t j = len - p.q.seq; j < len; ++j)
        if (c.tiers(layer, h)[j] != 0) return status::invalid_argument;
  }
  return status::ok;
}

namespace {

// Decode with at least two KV heads per thread runs whole heads in parallel, each head's kernel
// on one thread (tiny per-head calls would otherwise pay the executor's dispatch three times per
// head). Every head computes the same partitions and merge order either way, so the results do
// not depend on the thread count.
bool heads_in_parallel(const kv_cache& c, const cache_attention_params& p, int threads) {
  return p.q.seq == 1 && threads > 1 && c.kv_heads() >= 2 * threads;
}

// Workspace of one head run: the kernel's (for `threads`) and the accumulator's reduced row.
std::size_t slot_bytes(const kv_cache& c, int layer, const cache_attention_params& p, int threads,
                       isa i) {
  const int group = static_cast<int>(p.q.heads / c.kv_heads());
  std::size_t most = 0;
  for (int h = 0; h < c.kv_heads(); ++h) {
    if (c.length(layer, h) == 0) continue;
    dense_params d = head_params(c, layer, h, p, group);
    if (wants_tap(p)) d.prob_tap = head_tap::call;
    const bool tiered = tiered_head(c, layer, h);
    if (tiered || paged_prefill(c, layer, h, p)) {
      const std::size_t tap =
          tiered && wants_tap(p) ? tier_tap_bytes(c.length(layer, h), group) : 0;
      dense_params dp;
      std::int64_t i0 = 0;
      for (int k = 0; tiered ? tier_part(c, layer, h, p, group, k, dp, i0)
                             : paged_part(c, layer, h, p, group, k, dp, i0);
           ++k) {
        if (tap) dp.prob_tap = head_tap::call;
        most = std::max(most, dense_workspace_size(dp, threads, i) + merged_bytes(p, group) +
                                  workspace_alignment + tap);
      }
      continue;
    }
    most = std::max(most, dense_workspace_size(d, threads, i));
  }
  std::size_t bytes = align_up(most) + workspace_alignment;
  if (p.accumulate_channel >= 0)
    bytes += align_up(std::size_t(c.max_length(layer)) * sizeof(float)) + workspace_alignment;
  return bytes;
}

// One KV head: the dense kernel over its entries, the tap folding into its score channel.
status run_head(kv_cache& c, int layer, int h, const cache_attention_params& p, int group,
                void* slot, std::size_t bytes, executor& ex, isa i) noexcept {
  const std::int64_t rs = p.row_head_stride > 0 ? p.row_head_stride : p.q.seq;
  const std::int64_t len = c.length(layer, h);
  if (len == 0) {
    // No keys: the output is zero (a sink adds only to the denominator).
    for (int g = 0; g < group; ++g) {
      const std::int64_t qh = std::int64_t(h) * group + g;
      for (std::int64_t r = 0; r < p.q.seq; ++r) {
        std::memset(p.o.row<float>(r, qh), 0, sizeof(float) * p.o.dim);
        const float sink =
            p.sink_logits ? p.sink_logits[qh] : -std::numeric_limits<float>::infinity();
        if (p.lse) p.lse[qh * rs + r] = sink;
        if (p.entropy) p.entropy[qh * rs + r] = 0.f;
      }
    }
    return status::ok;
  }
  if (paged_prefill(c, layer, h, p))
    return run_paged_prefill(c, layer, h, p, group, slot, bytes, ex, i);
  workspace kernel_ws{slot, bytes};
  float* row = nullptr;
  if (p.accumulate_channel >= 0) {  // the reduced row lives at the end of the slot
    const std::size_t rb =
        align_up(std::size_t(c.max_length(layer)) * sizeof(float)) + workspace_alignment;
    kernel_ws.size = bytes - rb;
    row = static_cast<float*>(
        workspace_carver::align_base(static_cast<char*>(slot) + kernel_ws.size));
  }
  dense_params d = head_params(c, layer, h, p, group);
  head_tap tap;
  if (wants_tap(p)) {
    if (p.accumulate_channel >= 0) {
      tap.accumulate = true;
      tap.acc.channel = c.scores(layer, h, p.accumulate_channel);
      tap.acc.scratch = row;
      tap.acc.group = group;
      tap.acc.spec = p.accumulate;
    }
    if (p.probs) {
      tap.probs = p.probs + std::int64_t(h) * group * p.probs_stride;
      tap.probs_stride = p.probs_stride;
    }
    d.prob_tap = head_tap::call;
    d.prob_tap_user = &tap;
  }
  if (tiered_head(c, layer, h))
    return run_tiered(c, layer, h, p, group, wants_tap(p) ? &tap : nullptr, kernel_ws.data,
                      kernel_ws.size, ex, i);
  return dense_attention(d, kernel_ws, ex, i);
}

}  // namespace

std::size_t cache_attention_workspace_size(const kv_cache& c, int layer,
                                           const cache_attention_params& p, int threads,
                                           isa i) noexcept {
  if (cache_attention_validate(c, layer, p) != status::ok) return 0;
  if (threads < 1) threads = 1;
  if (heads_in_parallel(c, p, threads)) return std::size_t(threads) * slot_bytes(c, layer, p, 1, i);
  return slot_bytes(c, layer, p, threads, i);
}

status cache_attention(kv_cache& c, int layer, const cache_attention_params& p, workspace ws,
                       executor& ex, isa i) noexcept {
  HEED_RETURN_IF_ERROR(cache_attention_validate(c, layer, p));
  const int threads = std::max(1, ex.concurrency());
  if (ws.size < cache_attention_workspace_size(c, layer, p, threads, i))
    return status::workspace_too_small;
  const int group = static_cast<int>(p.q.heads / c.kv_heads());
  if (heads_in_parallel(c, p, threads)) {
    const std::size_t slot = slot_bytes(c, layer, p, 1, i);
    std::atomic<int> first_error{0};
    ex.parallel_for(c.kv_heads(), [&](std::int64_t h, int thread) {
      serial_executor one;
      const status st =
          run_head(c, layer, static_cast<int>(h), p, group,
                   static_cast<char*>(ws.data) + slot * std::size_t(thread), slot, one, i);
      int expected = 0;
      if (st != status::ok) first_error.compare_exchange_strong(expected, static_cast<int>(st));
    });
    return static_cast<status>(first_error.load());
  }
  for (int h = 0; h < c.kv_heads(); ++h)
    HEED_RETURN_IF_ERROR(run_head(c, layer, h, p, group, ws.data, ws.size, ex, i));
  return status::ok;
}

}  // namespace heed
