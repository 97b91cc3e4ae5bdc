// Attention over the ragged KV cache: one dense_attention call per KV head (per page of a paged
// head in prefill, merged in log-sum-exp form).
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
  d.scale = p.scale;
  d.causal = p.causal;
  d.q_offset = p.causal ? d.k.seq - p.q.seq : 0;
  const std::int64_t rs = p.row_head_stride > 0 ? p.row_head_stride : p.q.seq;
  d.row_head_stride = rs;
  if (p.lse) d.lse = p.lse + h0 * rs;
  if (p.entropy) d.entropy = p.entropy + h0 * rs;
  d.softcap = p.softcap;
  if (p.sink_logits) d.sink_logits = p.sink_logits + h0;
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

// Scratch of a paged prefill: [Lq][G][d] page output, then [G][Lq] floats for the running LSE and
// mean logit and the page's LSE and entropy.
std::size_t paged_prefill_bytes(const cache_attention_params& p, int group) {
  const std::size_t rows = std::size_t(p.q.seq) * std::size_t(group);
  return align_up(rows * std::size_t(p.q.dim) * sizeof(float)) +
         align_up(4 * rows * sizeof(float)) + 2 * workspace_alignment;
}

}  // namespace

status cache_attention_validate(const kv_cache& c, int layer,
                                const cache_attention_params& p) noexcept {
  if (!c.valid(layer, 0)) return status::invalid_argument;
  if (p.q.data == nullptr || p.o.data == nullptr) return status::null_pointer;
  HEED_RETURN_IF_ERROR(validate_view(p.q));
  HEED_RETURN_IF_ERROR(validate_view(p.o));
  if (p.q.type != dtype::f32 || p.o.type != dtype::f32) return status::unsupported_dtype;
  if (p.q.dim != c.head_dim() || p.o.dim != c.head_dim()) return status::shape_mismatch;
  if (p.o.seq != p.q.seq || p.o.heads != p.q.heads) return status::shape_mismatch;
  if (p.q.heads % c.kv_heads() != 0) return status::shape_mismatch;
  if (p.row_head_stride < 0 || (p.row_head_stride > 0 && p.row_head_stride < p.q.seq))
    return status::invalid_stride;
  if (p.accumulate_channel >= c.config().score_channels) return status::invalid_argument;
  if (p.accumulate_channel < -1) return status::invalid_argument;
  if (wants_tap(p) && p.q.seq != 1) return status::invalid_argument;  // decode only
  if (p.accumulate_channel >= 0) HEED_RETURN_IF_ERROR(p.accumulate.validate());
  if (p.probs && p.probs_stride < c.max_length(layer)) return status::invalid_stride;
  for (int h = 0; h < c.kv_heads(); ++h)
    if (p.causal && c.length(layer, h) != 0 && c.length(layer, h) < p.q.seq)
      return status::invalid_argument;  // the queries' own tokens must be in the cache
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
    if (paged_prefill(c, layer, h, p)) {
      for (int pg = 0; pg < c.page_count(layer, h); ++pg) {
        const std::int64_t i0 = first_row(c, layer, h, p, pg);
        if (i0 >= p.q.seq) break;
        const dense_params dp = page_params(c, layer, h, p, group, pg, i0);
        most = std::max(most, dense_workspace_size(dp, threads, i) + paged_prefill_bytes(p, group) +
                                  workspace_alignment);
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

// Prefill over a paged head: the kernel once per page (over the query rows that see any of its
// keys), each row's partial results merged in page order in log-sum-exp form: with L the running
// LSE and M the running mean logit (L - entropy), a page's (l, m, o_p) gives L' = log(e^L + e^l),
// o = o e^(L - L') + o_p e^(l - L'), M' = M e^(L - L') + m e^(l - L'). A sink logit s is one more
// such part with a zero output and m = s.
status run_paged_prefill(kv_cache& c, int layer, int h, const cache_attention_params& p, int group,
                         void* slot, std::size_t bytes, executor& ex, isa i) noexcept {
  const std::int64_t lq = p.q.seq, d = p.q.dim;
  const std::size_t rows = std::size_t(lq) * std::size_t(group);
  const std::size_t scratch = paged_prefill_bytes(p, group);
  if (bytes < scratch + workspace_alignment) return status::workspace_too_small;
  workspace_carver carve(workspace_carver::align_base(slot));
  float* o_page = carve.take<float>(rows * std::size_t(d));
  float* run_l = carve.take<float>(4 * rows);  // [G][Lq] running LSE
  float* run_m = run_l + rows;                 // running mean logit
  float* page_l = run_m + rows;                // this page's LSE
  float* page_h = page_l + rows;               // this page's entropy
  const workspace kernel_ws{static_cast<char*>(slot) + scratch + workspace_alignment,
                            bytes - scratch - workspace_alignment};
  const bool entropy = p.entropy != nullptr;
  const std::int64_t h0 = std::int64_t(h) * group;
  for (int pg = 0; pg < c.page_count(layer, h); ++pg) {
    const std::int64_t i0 = first_row(c, layer, h, p, pg);
    if (i0 >= lq) break;  // later pages hold only keys after every query
    dense_params dp = page_params(c, layer, h, p, group, pg, i0);
    const bool first = pg == 0;  // page 0 begins at key 0: every row sees it
    if (!first) dp.o = make_mutable_view(o_page, lq - i0, group, d);
    dp.lse = first ? run_l : page_l;
    dp.entropy = entropy ? page_h : nullptr;
    HEED_RETURN_IF_ERROR(dense_attention(dp, kernel_ws, ex, i));
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
        const float* prow = o_page + (std::size_t(r - i0) * group + g) * std::size_t(d);
        for (std::int64_t e = 0; e < d; ++e) orow[e] = orow[e] * fa + prow[e] * fb;
        if (entropy) run_m[at] = run_m[at] * fa + (l - page_h[pr]) * fb;
        run_l[at] = big + std::log(sum);
      }
    }
  }
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
      if (p.lse) p.lse[qh * rs + r] = l;
      if (entropy) p.entropy[qh * rs + r] = std::max(0.f, l - m);
    }
  }
  return status::ok;
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
