// A ragged KV cache: per (layer, KV head) its own length, the original position of every entry,
// optional per-entry score channels, and memory that eviction really gives back.
//
// Each (layer, head) slot stores K and V head-major ([len, d], contiguous rows: the layout the
// decode kernel streams fastest) in f32, f16, bf16 or a quantized row format (q8, q4: append
// quantizes the incoming rows, heed/quant/quantize.hpp), the original positions (ascending) and
// `score_channels` float arrays that policies use to accumulate scores (H2O's column mass, ...).
// keep() compacts all of them in place, preserving order; the freed tail is reused by later
// appends, and shrink_to_fit() returns it to the allocator.
//
// Paged mode (config.page_rows > 0): K and V live in pages of page_rows rows each, and keep()
// compacts each page on its own, so evicting one entry moves at most page_rows - 1 rows instead
// of half the head (exact per-step eviction at long lengths is otherwise all memmove). Adjacent
// pages that fit in one are merged, so pages stay more than half full on average; emptied pages
// are kept for reuse by appends until shrink_to_fit(). Positions and score channels stay
// contiguous. A head of more than one page has no single [len, d] view: keys() / values() then
// return a view with a null data pointer; read it page by page (page_count, page_keys, ...) or
// copy it out with gather(). cache_attention and the eviction loop handle both modes.
//
// Two precisions (config.tiered, contiguous mode): entries are appended at `type` (the high
// tier) and demote() re-stores chosen entries at `low_type` (the low tier: fewer bytes a row,
// e.g. f16 -> q4), the alternative to evicting them. The logical entries (positions, score
// channels, tiers()) stay in one ascending order; each tier's rows are stored apart, in that
// order (tier_keys / tier_values). cache_attention attends to both tiers and merges them in
// log-sum-exp form; keys() / values() of a head holding low-tier entries have a null data
// pointer: read such a head through gather_float().
//
// Entry points validate and return a status. init(), append(), demote(), shrink_to_fit() and the
// reservations may allocate (amortized doubling); keep() never does. Each is all or nothing: a
// failure (status::out_of_memory included) leaves every entry as it was
// (docs/allocation_faults.md).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "heed/core/detail/grow_vector.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/kv_page.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"
#include "heed/quant/quantize.hpp"

namespace heed {

struct kv_cache_config {
  int layers = 1;
  int kv_heads = 1;
  std::int64_t head_dim = 0;
  dtype type = dtype::f32;     // storage type of K and V
  std::int64_t reserve = 0;    // entries reserved up front per (layer, head)
  int score_channels = 0;      // float channels per entry, compacted with K and V
  std::int64_t capacity = 0;   // most entries a (layer, head) may hold; 0 = no limit
  std::int64_t page_rows = 0;  // K/V rows per page; 0 = one contiguous block per head
  int group = 0;               // q8 / q4: values per scale (0: quant::default_group)
  bool tiered = false;         // two precisions: demote() moves entries to low_type
  dtype low_type = dtype::q4;  // tiered: storage of demoted entries (smaller rows than `type`)
};

class kv_cache {
 public:
  kv_cache() = default;
  kv_cache(const kv_cache&) = delete;
  kv_cache& operator=(const kv_cache&) = delete;
  kv_cache(kv_cache&&) noexcept = default;
  kv_cache& operator=(kv_cache&&) noexcept = default;

  // Validates the configuration and reserves the memory. The previous contents are dropped (and
  // kept when init fails).
  status init(const kv_cache_config& c) noexcept {
    if (c.layers <= 0 || c.kv_heads <= 0 || c.head_dim <= 0 || c.reserve < 0 ||
        c.score_channels < 0 || c.score_channels > 64 || c.head_dim > (1 << 16) || c.capacity < 0 ||
        c.page_rows < 0 || c.page_rows > (1 << 20) || (c.page_rows > 0 && c.page_rows < 16) ||
        (c.capacity > 0 && c.reserve > c.capacity) ||
        std::int64_t(c.layers) * c.kv_heads > (1 << 20))
      return status::invalid_argument;
    for (const dtype t : {c.type, c.low_type})
      if (!storable(t)) return status::unsupported_dtype;
    if (is_quantized(c.type) || (c.tiered && is_quantized(c.low_type))) {
      if (c.group < 0 || !quant::valid_group(c.head_dim, c.group ? c.group : quant::default_group))
        return status::invalid_argument;
    } else if (c.group != 0) {
      return status::invalid_argument;
    }
    if (c.tiered) {
      if (c.page_rows != 0) return status::invalid_argument;  // contiguous only, for now
      const int g = c.group ? c.group : quant::default_group;
      if (type_row_bytes(c.low_type, c.head_dim, g) >= type_row_bytes(c.type, c.head_dim, g))
        return status::invalid_argument;  // the low tier must take fewer bytes a row
    }
    // All or nothing: the new cache is built apart and replaces this one only once complete, so a
    // failed allocation leaves the previous contents.
    kv_cache fresh;
    fresh.cfg_ = c;
    if (!detail::grow_vector(fresh.slots_, std::size_t(c.layers) * c.kv_heads))
      return status::out_of_memory;
    if (c.tiered) {
      fresh.row_tmp_.reset(new (std::nothrow) float[std::size_t(c.head_dim)]);
      if (!fresh.row_tmp_) return status::out_of_memory;
    }
    for (auto& s : fresh.slots_) s.limit = c.capacity;
    if (c.reserve > 0)
      for (auto& s : fresh.slots_) {
        HEED_RETURN_IF_ERROR(fresh.grow(s, c.reserve));
        if (fresh.paged())
          HEED_RETURN_IF_ERROR(fresh.reserve_pages(s, (c.reserve + c.page_rows - 1) / c.page_rows));
      }
    *this = std::move(fresh);
    return status::ok;
  }

  const kv_cache_config& config() const noexcept { return cfg_; }
  int layers() const noexcept { return cfg_.layers; }
  int kv_heads() const noexcept { return cfg_.kv_heads; }
  std::int64_t head_dim() const noexcept { return cfg_.head_dim; }
  dtype type() const noexcept { return cfg_.type; }
  // Values per scale of quantized rows (the default group when the config says 0).
  int group() const noexcept { return cfg_.group ? cfg_.group : quant::default_group; }
  // Bytes of one stored K (or V) row.
  std::size_t row_bytes() const noexcept {
    return is_quantized(cfg_.type) ? quant::row_bytes(cfg_.type, cfg_.head_dim, group())
                                   : std::size_t(cfg_.head_dim) * dtype_size(cfg_.type);
  }
  // Two precisions (config.tiered): the low tier's type and row bytes.
  bool tiered() const noexcept { return cfg_.tiered; }
  dtype low_type() const noexcept { return cfg_.low_type; }
  std::size_t low_row_bytes() const noexcept {
    return type_row_bytes(cfg_.low_type, cfg_.head_dim, group());
  }
  bool valid(int layer, int head) const noexcept {
    return !slots_.empty() && layer >= 0 && layer < cfg_.layers && head >= 0 &&
           head < cfg_.kv_heads;
  }

  // Accessors: (layer, head) must be valid (checked by debug builds of the caller's code only
  // through valid()).
  std::int64_t length(int layer, int head) const noexcept { return at(layer, head).len; }
  std::int64_t capacity(int layer, int head) const noexcept { return at(layer, head).cap; }
  // The most entries this slot may hold (0 = no limit); append() beyond it fails.
  std::int64_t limit(int layer, int head) const noexcept { return at(layer, head).limit; }
  status set_limit(int layer, int head, std::int64_t limit) noexcept {
    if (!valid(layer, head) || limit < 0) return status::invalid_argument;
    if (limit > 0 && limit < at(layer, head).len) return status::invalid_argument;
    at(layer, head).limit = limit;
    return status::ok;
  }
  // Entries of the low tier (0 unless tiered); the high tier holds the other ones.
  std::int64_t low_length(int layer, int head) const noexcept { return at(layer, head).lo_len; }
  // Per entry 0 (high tier) or 1 (low tier), [length]; null unless tiered.
  const std::uint8_t* tiers(int layer, int head) const noexcept {
    return at(layer, head).tier.get();
  }
  // [n, 1, d] views of one tier's rows (tier 0: high, `type`; 1: low, `low_type`), in entry
  // order. Tier 0 of an untiered contiguous cache is keys() / values(); any other tier number gives
  // an empty view with a null data pointer.
  tensor_view tier_keys(int layer, int head, int tier) const noexcept {
    return tier_view(at(layer, head), tier, 0);
  }
  tensor_view tier_values(int layer, int head, int tier) const noexcept {
    return tier_view(at(layer, head), tier, 1);
  }
  // Tokens ever appended to this slot (the next default position).
  std::int64_t appended(int layer, int head) const noexcept { return at(layer, head).appended; }
  // [len, 1, d] views of the stored keys and values, head-major rows. A paged head of more than
  // one page has no such view: its data pointer is null (use the page accessors or gather).
  tensor_view keys(int layer, int head) const noexcept { return whole(at(layer, head), 0); }
  tensor_view values(int layer, int head) const noexcept { return whole(at(layer, head), 1); }
  // Writable views of the same rows, for in-place edits that keep the length (RoPE
  // re-rotation after positions are re-assigned, requantization). Invalidated by append / keep.
  mutable_tensor_view mutable_keys(int layer, int head) noexcept {
    return as_mutable(whole(at(layer, head), 0));
  }
  mutable_tensor_view mutable_values(int layer, int head) noexcept {
    return as_mutable(whole(at(layer, head), 1));
  }

  // Pages. A contiguous head is one page (none while empty); a paged head has page_count pages
  // in order, each a run of rows [begin, begin + len). Invalidated by append / keep.
  bool paged() const noexcept { return cfg_.page_rows > 0; }
  std::int64_t page_rows() const noexcept { return cfg_.page_rows; }
  int page_count(int layer, int head) const noexcept {
    const slot& s = at(layer, head);
    if (s.lo_len > 0) return 0;  // two row types: no pages (tier_keys / gather_float)
    return paged() ? static_cast<int>(s.pages.size()) : (s.len > 0 ? 1 : 0);
  }
  kv_page page(int layer, int head, int i) const noexcept {
    const slot& s = at(layer, head);
    if (paged()) return s.pages[std::size_t(i)];
    return {s.k.get(), s.v.get(), 0, s.len};
  }
  // The page table of a paged head ([page_count]); null for a contiguous cache.
  const kv_page* pages(int layer, int head) const noexcept {
    return paged() ? at(layer, head).pages.data() : nullptr;
  }
  tensor_view page_keys(int layer, int head, int i) const noexcept {
    const kv_page pg = page(layer, head, i);
    return rows_view(pg.k, pg.len);
  }
  tensor_view page_values(int layer, int head, int i) const noexcept {
    const kv_page pg = page(layer, head, i);
    return rows_view(pg.v, pg.len);
  }
  mutable_tensor_view mutable_page_keys(int layer, int head, int i) noexcept {
    return as_mutable(page_keys(layer, head, i));
  }
  mutable_tensor_view mutable_page_values(int layer, int head, int i) noexcept {
    return as_mutable(page_values(layer, head, i));
  }
  // Copies the head's keys (which = 0) or values (1) into dst: length rows of the storage type,
  // contiguous (dst_bytes at least length * row_bytes()).
  status gather(int layer, int head, int which, void* dst, std::size_t dst_bytes) const noexcept {
    if (!valid(layer, head) || (which != 0 && which != 1)) return status::invalid_argument;
    const slot& s = at(layer, head);
    if (s.len == 0) return status::ok;
    if (s.lo_len > 0) return status::unsupported_dtype;  // two row types: gather_float
    if (dst == nullptr) return status::null_pointer;
    if (dst_bytes < std::size_t(s.len) * row_bytes()) return status::workspace_too_small;
    unsigned char* out = static_cast<unsigned char*>(dst);
    for (int i = 0; i < page_count(layer, head); ++i) {
      const kv_page pg = page(layer, head, i);
      std::memcpy(out + std::size_t(pg.begin) * row_bytes(), which == 0 ? pg.k : pg.v,
                  std::size_t(pg.len) * row_bytes());
    }
    return status::ok;
  }
  // Copies the head's keys (which = 0) or values (1) into dst as f32: length rows of head_dim
  // floats (dst_floats at least length * head_dim), in entry order, whatever the storage: pages,
  // tiers, quantized rows (dequantized as the kernels read them).
  status gather_float(int layer, int head, int which, float* dst,
                      std::size_t dst_floats) const noexcept {
    if (!valid(layer, head) || (which != 0 && which != 1)) return status::invalid_argument;
    const slot& s = at(layer, head);
    if (s.len == 0) return status::ok;
    if (dst == nullptr) return status::null_pointer;
    const std::size_t d = std::size_t(cfg_.head_dim);
    if (dst_floats < std::size_t(s.len) * d) return status::workspace_too_small;
    if (s.tier) {
      const unsigned char* hi = which == 0 ? s.k.get() : s.v.get();
      const unsigned char* lo = which == 0 ? s.lk.get() : s.lv.get();
      std::int64_t rh = 0, rl = 0;
      for (std::int64_t i = 0; i < s.len; ++i) {
        if (s.tier[i] == 0)
          row_to_float(cfg_.type, hi + std::size_t(rh++) * row_bytes(), dst + std::size_t(i) * d);
        else
          row_to_float(cfg_.low_type, lo + std::size_t(rl++) * low_row_bytes(),
                       dst + std::size_t(i) * d);
      }
      return status::ok;
    }
    for (int i = 0; i < page_count(layer, head); ++i) {
      const kv_page pg = page(layer, head, i);
      const auto* rows = static_cast<const unsigned char*>(which == 0 ? pg.k : pg.v);
      for (std::int64_t r = 0; r < pg.len; ++r)
        row_to_float(cfg_.type, rows + std::size_t(r) * row_bytes(),
                     dst + std::size_t(pg.begin + r) * d);
    }
    return status::ok;
  }
  const std::int64_t* positions(int layer, int head) const noexcept {
    return at(layer, head).pos.get();
  }
  float* scores(int layer, int head, int channel) noexcept {
    slot& s = at(layer, head);
    return s.scores.get() + std::int64_t(channel) * s.cap;
  }
  const float* scores(int layer, int head, int channel) const noexcept {
    const slot& s = at(layer, head);
    return s.scores.get() + std::int64_t(channel) * s.cap;
  }
  // Longest head of a layer.
  std::int64_t max_length(int layer) const noexcept {
    std::int64_t m = 0;
    for (int h = 0; h < cfg_.kv_heads; ++h) m = std::max(m, length(layer, h));
    return m;
  }
  std::int64_t total_length() const noexcept {
    std::int64_t t = 0;
    for (const auto& s : slots_) t += s.len;
    return t;
  }

  // Appends n tokens to every head of `layer`: k and v are [n, kv_heads, d] views of f32, f16 or
  // bf16 (converted to the storage type: rounded, or quantized for q8 / q4), or of the cache's own
  // quantized type and group (copied). A quantized cache refuses rows it cannot quantize
  // (non-finite values, or beyond the f16 range of the scales: status::invalid_argument) before
  // anything changes. positions: [n] original positions shared by all heads, or
  // null to continue each head's count (appended(layer, h), appended(layer, h) + 1, ...).
  // New score channels start at 0. Positions must stay strictly ascending per head.
  // All or nothing: every check, and every allocation of every head, comes before the first row
  // is stored, so a failed append (out_of_memory included) leaves the cache unchanged.
  status append(int layer, const tensor_view& k, const tensor_view& v,
                const std::int64_t* positions = nullptr) noexcept {
    return append_masked(layer, k, v, positions, nullptr);
  }

  // append() of the rows a write gate let in (the eviction loop's admission): KV head h stores
  // token i only if admit[h * n + i] != 0 (admit: [kv_heads][n]); the others never enter it, but
  // every head's appended() still moves on by n, so the stored entries keep their original
  // positions (appended(layer, h) + i) and a later append continues after the dropped ones. All
  // or nothing, as append().
  status append_admitted(int layer, const tensor_view& k, const tensor_view& v,
                         const std::uint8_t* admit) noexcept {
    if (admit == nullptr) return status::null_pointer;
    return append_masked(layer, k, v, nullptr, admit);
  }

  // What append(layer, k, v) checks of the rows themselves, without changing anything: the views,
  // their shape against the cache ([n, kv_heads, head_dim]) and, for a quantized cache, that every
  // row can be quantized. (Not checked: the layer, capacity limits and positions.)
  status check_rows(const tensor_view& k, const tensor_view& v) const noexcept {
    if (slots_.empty()) return status::invalid_argument;
    return check_input(k, v, cfg_.kv_heads);
  }

  // Appends n tokens to one head: k and v are [n, heads, d] views; `src_head` selects the head
  // of the view to read.
  status append_head(int layer, int head, const tensor_view& k, const tensor_view& v, int src_head,
                     const std::int64_t* positions = nullptr) noexcept {
    if (!valid(layer, head)) return status::invalid_argument;
    if (src_head < 0 || (k.data && src_head >= k.heads)) return status::invalid_argument;
    HEED_RETURN_IF_ERROR(check_input(k, v, -1, src_head));
    const slot& s = at(layer, head);
    if (s.limit > 0 && s.len + k.seq > s.limit) return status::invalid_argument;
    return append_one(at(layer, head), k, v, src_head, positions);
  }

  // Keeps only the entries keep[0..n_keep) of (layer, head), which must be strictly ascending
  // indices in [0, length). K, V, positions and score channels are compacted in place, in order.
  status keep(int layer, int head, const std::int32_t* keep, std::int64_t n_keep) noexcept {
    if (!valid(layer, head)) return status::invalid_argument;
    slot& s = at(layer, head);
    if (n_keep < 0 || n_keep > s.len) return status::invalid_argument;
    if (n_keep > 0 && keep == nullptr) return status::null_pointer;
    if (n_keep == 0) {
      s.len = 0;
      s.lo_len = 0;
      release_pages(s, 0);
      return status::ok;
    }
    // Strictly ascending with the ends in range means every index is in range. The check is an
    // AND of the differences keep[i-1] - keep[i] (all negative, so the sign bit survives, iff
    // ascending): no early exit and no compare-to-bool, so it vectorizes.
    if (keep[0] < 0 || keep[n_keep - 1] >= s.len) return status::invalid_argument;
    std::int64_t all_below = -1;
    for (std::int64_t i = 1; i < n_keep; ++i)
      all_below &= std::int64_t(keep[i - 1]) - std::int64_t(keep[i]);
    if (all_below >= 0) return status::invalid_argument;
    if (s.tier) {
      keep_tiered(s, keep, n_keep);
      return status::ok;
    }
    // keep[i] - i never decreases, so the runs of consecutive kept entries (constant
    // keep[i] - i) are found by binary search: a steady-state eviction of one entry is two runs,
    // the first of which stays in place, and one memmove per array.
    const std::size_t row = row_bytes();
    for (std::int64_t i = 0; i < n_keep;) {
      const std::int64_t from = keep[i], shift = from - i;
      std::int64_t lo = i + 1, hi = n_keep;  // the run ends at the first j with keep[j] - j > shift
      while (lo < hi) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        if (keep[mid] - mid == shift)
          lo = mid + 1;
        else
          hi = mid;
      }
      const std::int64_t run = lo - i;
      if (shift != 0) {  // ascending: from >= i always
        if (!paged()) {
          std::memmove(s.k.get() + i * row, s.k.get() + from * row, std::size_t(run) * row);
          std::memmove(s.v.get() + i * row, s.v.get() + from * row, std::size_t(run) * row);
        }
        std::memmove(s.pos.get() + i, s.pos.get() + from, std::size_t(run) * sizeof(std::int64_t));
        for (int c = 0; c < cfg_.score_channels; ++c) {
          float* ch = s.scores.get() + std::int64_t(c) * s.cap;
          std::memmove(ch + i, ch + from, std::size_t(run) * sizeof(float));
        }
      }
      i += run;
    }
    if (paged()) keep_pages(s, keep, n_keep);
    s.len = n_keep;
    return status::ok;
  }

  // What demote(layer, head, idx, n) checks, without changing anything (it uses the cache's
  // conversion scratch, as demote() does).
  status check_demote(int layer, int head, const std::int32_t* idx, std::int64_t n) noexcept {
    if (!valid(layer, head) || !tiered()) return status::invalid_argument;
    const slot& s = at(layer, head);
    if (n < 0 || n > s.len) return status::invalid_argument;
    if (n == 0) return status::ok;
    if (idx == nullptr) return status::null_pointer;
    const std::size_t hb = row_bytes();
    // High ranks of the demoted entries are needed only to check their rows: one pass.
    std::int64_t rank = 0, k = 0;
    for (std::int64_t i = 0; i < s.len && k < n; ++i) {
      if (s.tier[i] != 0) {
        if (idx[k] == i) return status::invalid_argument;  // already low
        continue;
      }
      if (idx[k] < i || idx[k] >= s.len || (k > 0 && idx[k] <= idx[k - 1]))
        return status::invalid_argument;
      if (idx[k] == i) {
        if (is_quantized(cfg_.low_type))
          for (const unsigned char* rows : {s.k.get(), s.v.get()}) {
            row_to_float(cfg_.type, rows + std::size_t(rank) * hb, row_tmp_.get());
            HEED_RETURN_IF_ERROR(
                quant::check_row(cfg_.low_type, row_tmp_.get(), cfg_.head_dim, group()));
          }
        ++k;
      }
      ++rank;
    }
    if (k != n) return status::invalid_argument;  // an index out of range or not ascending
    return status::ok;
  }

  // Demotes the entries idx[0..n) of (layer, head) to the low tier (config.tiered): strictly
  // ascending indices of high-tier entries. Their K and V rows are re-stored at low_type
  // (dequantized or converted to f32, then rounded or quantized as append() does); positions,
  // score channels and the order of entries stay. May allocate the low tier's rows; all or
  // nothing: a row the low type cannot hold (status::invalid_argument) or a failed allocation
  // (status::out_of_memory) leaves the cache unchanged. Not to be called concurrently with any
  // other mutation of the same cache (it uses the cache's conversion scratch).
  status demote(int layer, int head, const std::int32_t* idx, std::int64_t n) noexcept {
    HEED_RETURN_IF_ERROR(check_demote(layer, head, idx, n));
    if (n == 0) return status::ok;
    slot& s = at(layer, head);
    HEED_RETURN_IF_ERROR(grow_low(s, s.lo_len + n));
    const std::size_t hb = row_bytes(), lb = low_row_bytes();
    // Low rows, merged from the back: every kept low row moves up (or stays), each demoted row is
    // re-stored at its place among them.
    std::int64_t rh = s.len - s.lo_len, rl = s.lo_len, wl = s.lo_len + n, k = n;
    for (std::int64_t i = s.len - 1; i >= 0 && k > 0; --i) {
      if (s.tier[i] != 0) {
        --rl, --wl;
        std::memcpy(s.lk.get() + std::size_t(wl) * lb, s.lk.get() + std::size_t(rl) * lb, lb);
        std::memcpy(s.lv.get() + std::size_t(wl) * lb, s.lv.get() + std::size_t(rl) * lb, lb);
        continue;
      }
      --rh;
      if (idx[k - 1] != i) continue;
      --k, --wl;
      restore_low(s.lk.get() + std::size_t(wl) * lb, s.k.get() + std::size_t(rh) * hb);
      restore_low(s.lv.get() + std::size_t(wl) * lb, s.v.get() + std::size_t(rh) * hb);
    }
    // High rows: the demoted ones leave, the others move down in order.
    std::int64_t wh = 0;
    rh = 0, k = 0;
    for (std::int64_t i = 0; i < s.len; ++i) {
      if (s.tier[i] != 0) continue;
      if (k < n && idx[k] == i) {
        ++k, ++rh;
        s.tier[i] = 1;
        continue;
      }
      if (rh != wh) {
        std::memcpy(s.k.get() + std::size_t(wh) * hb, s.k.get() + std::size_t(rh) * hb, hb);
        std::memcpy(s.v.get() + std::size_t(wh) * hb, s.v.get() + std::size_t(rh) * hb, hb);
      }
      ++rh, ++wh;
    }
    s.lo_len += n;
    return status::ok;
  }

  // Reservations, for callers that change a head in several steps and must not fail half way
  // (the eviction loop: demote, keep, then append). Neither changes any entry; a paged head may
  // move its last page's rows to the front of that page.
  //
  // Room to append n entries to (layer, head) after a keep() that leaves `kept` of its entries
  // (kept = length(): no keep): that append then cannot fail for lack of memory. (keep() never
  // lessens the room a paged head has: its last page's free rows plus its spare pages.)
  status reserve_append(int layer, int head, std::int64_t n, std::int64_t kept) noexcept {
    if (!valid(layer, head) || n < 0 || kept < 0 || kept > length(layer, head))
      return status::invalid_argument;
    return make_room(at(layer, head), n, kept);
  }
  // Room for n more entries in the low tier of (layer, head) (config.tiered): demote() of up to n
  // entries then cannot fail for lack of memory.
  status reserve_low(int layer, int head, std::int64_t n) noexcept {
    if (!valid(layer, head) || !tiered() || n < 0) return status::invalid_argument;
    slot& s = at(layer, head);
    return grow_low(s, s.lo_len + n);
  }

  // Undoes append(layer, k, v) of n tokens at their default positions, for a caller that must take
  // a step back after a later failure (the eviction loop): every head of the layer drops its last
  // n entries (which must be of the high tier) and appended() goes back by n. Never allocates.
  // With admit (the mask of an append_admitted() of n tokens), head h drops the entries that mask
  // let in.
  status unappend(int layer, std::int64_t n, const std::uint8_t* admit = nullptr) noexcept {
    if (!valid(layer, 0) || n < 0) return status::invalid_argument;
    auto stored = [&](int h) {
      if (admit == nullptr) return n;
      std::int64_t c = 0;
      for (std::int64_t i = 0; i < n; ++i) c += admit[std::int64_t(h) * n + i] != 0;
      return c;
    };
    for (int h = 0; h < cfg_.kv_heads; ++h) {
      const slot& s = at(layer, h);
      const std::int64_t m = stored(h);
      if (m > s.len || n > s.appended) return status::invalid_argument;
      for (std::int64_t i = s.len - m; s.tier && i < s.len; ++i)
        if (s.tier[i] != 0) return status::invalid_argument;
    }
    for (int h = 0; h < cfg_.kv_heads; ++h) {
      slot& s = at(layer, h);
      const std::int64_t m = stored(h);
      s.len -= m;
      s.appended -= n;
      for (std::int64_t drop = m; paged() && drop > 0;) {
        kv_page& last = s.pages.back();
        const std::int64_t d = std::min(drop, last.len);
        last.len -= d;
        drop -= d;
        if (last.len == 0) release_pages(s, s.pages.size() - 1);
      }
    }
    return status::ok;
  }

  // Empties one layer (all heads); memory stays reserved.
  void clear_layer(int layer) noexcept {
    for (int h = 0; h < cfg_.kv_heads; ++h) {
      at(layer, h).len = 0;
      at(layer, h).lo_len = 0;
      at(layer, h).appended = 0;
      release_pages(at(layer, h), 0);
    }
  }
  void clear() noexcept {
    for (auto& s : slots_) s.len = 0, s.lo_len = 0, s.appended = 0, release_pages(s, 0);
  }

  // Gives memory back: every slot's capacity becomes its length (plus `slack` entries). A paged
  // cache also frees its spare pages beyond the `slack` rows.
  status shrink_to_fit(std::int64_t slack = 0) noexcept {
    if (slack < 0) return status::invalid_argument;
    for (auto& s : slots_) {
      if (s.cap > s.len + slack) HEED_RETURN_IF_ERROR(reallocate(s, s.len + slack));
      if (s.lo_cap > s.lo_len + slack) HEED_RETURN_IF_ERROR(reallocate_low(s, s.lo_len + slack));
      if (paged()) {
        const std::int64_t room = s.pages.empty() ? 0 : room_after(s, s.pages.size() - 1);
        const std::int64_t need = std::max<std::int64_t>(0, slack - room);
        const std::size_t keep_spare = std::size_t((need + cfg_.page_rows - 1) / cfg_.page_rows);
        while (s.spare.size() > keep_spare) s.spare.pop_back();
      }
    }
    return status::ok;
  }

  // Bytes held by the slots (capacity) and bytes in use (length), K + V + positions + scores
  // (+ the tier byte of a tiered cache).
  std::size_t bytes_reserved() const noexcept {
    std::size_t b = 0;
    for (const auto& s : slots_) {
      if (!paged()) {
        b += std::size_t(s.cap) * entry_bytes() + std::size_t(s.lo_cap) * 2 * low_row_bytes();
        continue;
      }
      b += std::size_t(s.cap) * (sizeof(std::int64_t) + sizeof(float) * cfg_.score_channels);
      b += (s.mem.size() + s.spare.size()) * page_bytes();
    }
    return b;
  }
  std::size_t bytes_used() const noexcept {
    std::size_t b = 0;
    for (const auto& s : slots_)
      b +=
          std::size_t(s.len - s.lo_len) * entry_bytes() + std::size_t(s.lo_len) * low_entry_bytes();
    return b;
  }
  // Bytes of one entry: its K and V rows, position, score channels (and tier byte, if tiered);
  // low_entry_bytes() of an entry of the low tier.
  std::size_t entry_bytes() const noexcept { return 2 * row_bytes() + meta_bytes(); }
  std::size_t low_entry_bytes() const noexcept { return 2 * low_row_bytes() + meta_bytes(); }

 private:
  // K/V memory is 64-byte aligned: rows of 64-byte multiples then never straddle a cache line
  // more than they must (malloc's 16-byte offset made each 256-byte row span 5 lines).
  struct aligned_free {
    void operator()(unsigned char* p) const noexcept {
      ::operator delete[](p, std::align_val_t(64));
    }
  };
  using bytes = std::unique_ptr<unsigned char[], aligned_free>;
  static bytes allocate(std::size_t n) noexcept {
    return bytes(static_cast<unsigned char*>(
        ::operator new[](n == 0 ? 1 : n, std::align_val_t(64), std::nothrow)));
  }
  using page_memory = bytes;
  struct slot {
    bytes k, v;  // contiguous mode
    std::unique_ptr<std::int64_t[]> pos;
    std::unique_ptr<float[]> scores;  // [channels][cap]
    std::int64_t len = 0, cap = 0, appended = 0, limit = 0;
    // Tiered: the low tier's rows ([lo_cap] each; the high tier's are k / v) and each entry's tier.
    bytes lk, lv;
    std::int64_t lo_len = 0, lo_cap = 0;
    std::unique_ptr<std::uint8_t[]> tier;  // [cap]
    // Paged mode: pages[i] lives in mem[i] (page_rows K rows, then page_rows V rows); emptied
    // pages wait in `spare` (whose capacity always covers every page, so keep() never allocates).
    std::vector<kv_page> pages;
    std::vector<page_memory> mem;
    std::vector<page_memory> spare;
  };

  slot& at(int layer, int head) noexcept {
    return slots_[std::size_t(layer) * cfg_.kv_heads + head];
  }
  const slot& at(int layer, int head) const noexcept {
    return slots_[std::size_t(layer) * cfg_.kv_heads + head];
  }

  static mutable_tensor_view as_mutable(const tensor_view& t) noexcept {
    mutable_tensor_view m;
    m.data = const_cast<void*>(t.data);  // the slot's own buffer, reached through non-const this
    m.type = t.type;
    m.seq = t.seq;
    m.heads = t.heads;
    m.dim = t.dim;
    m.seq_stride = t.seq_stride;
    m.head_stride = t.head_stride;
    m.group = t.group;
    return m;
  }
  tensor_view rows_view(const void* data, std::int64_t n, int tier = 0) const noexcept {
    tensor_view t;
    t.data = data;
    t.type = tier == 0 ? cfg_.type : cfg_.low_type;
    t.seq = n;
    t.heads = 1;
    t.dim = cfg_.head_dim;
    t.group = is_quantized(t.type) ? cfg_.group : 0;
    t.seq_stride = t.row_extent();
    t.head_stride = t.seq_stride;
    return t;
  }
  tensor_view whole(const slot& s, int which) const noexcept {
    if (s.lo_len > 0) return rows_view(nullptr, s.len);  // two tiers: no single view
    if (!paged()) return rows_view(which == 0 ? s.k.get() : s.v.get(), s.len);
    if (s.pages.size() == 1) return rows_view(which == 0 ? s.pages[0].k : s.pages[0].v, s.len);
    return rows_view(nullptr, s.len);
  }

  tensor_view tier_view(const slot& s, int tier, int which) const noexcept {
    if (tier != 0 && tier != 1) return rows_view(nullptr, 0);  // no such tier: an empty view
    if (tier == 1) return rows_view(which == 0 ? s.lk.get() : s.lv.get(), s.lo_len, 1);
    if (!s.tier) return whole(s, which);
    return rows_view(which == 0 ? s.k.get() : s.v.get(), s.len - s.lo_len);
  }
  std::size_t meta_bytes() const noexcept {
    return sizeof(std::int64_t) + sizeof(float) * cfg_.score_channels + (cfg_.tiered ? 1 : 0);
  }

  // The types a cache can store, and the bytes of one row of each.
  static constexpr bool storable(dtype t) noexcept {
    return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || is_quantized(t);
  }
  static std::size_t type_row_bytes(dtype t, std::int64_t d, int g) noexcept {
    return is_quantized(t) ? quant::row_bytes(t, d, g) : std::size_t(d) * dtype_size(t);
  }
  // One stored row of type t to f32 (quantized rows as the kernels read them).
  void row_to_float(dtype t, const unsigned char* row, float* out) const noexcept {
    const std::int64_t d = cfg_.head_dim;
    if (is_quantized(t)) {
      for (std::int64_t i = 0; i < d; ++i) out[i] = quant::dequantize_value(t, row, d, group(), i);
    } else if (t == dtype::f16) {
      convert_row(out, reinterpret_cast<const f16*>(row), d);
    } else if (t == dtype::bf16) {
      convert_row(out, reinterpret_cast<const bf16*>(row), d);
    } else {
      std::memcpy(out, row, std::size_t(d) * sizeof(float));
    }
  }
  // A high-tier row re-stored at the low type (its rows were checked by demote()).
  void restore_low(unsigned char* dst, const unsigned char* src) noexcept {
    const std::int64_t d = cfg_.head_dim;
    float* x = row_tmp_.get();
    row_to_float(cfg_.type, src, x);
    if (is_quantized(cfg_.low_type))
      quant::detail::quantize_checked_row(cfg_.low_type, x, d, group(), dst);
    else if (cfg_.low_type == dtype::f16)
      convert_row(reinterpret_cast<f16*>(dst), x, d);
    else if (cfg_.low_type == dtype::bf16)
      convert_row(reinterpret_cast<bf16*>(dst), x, d);
    else
      std::memcpy(dst, x, std::size_t(d) * sizeof(float));
  }

  // keep() of a tiered head: each tier's rows and the entries compacted in one pass (keep is
  // validated and ascending).
  void keep_tiered(slot& s, const std::int32_t* keep, std::int64_t n_keep) noexcept {
    const std::size_t hb = row_bytes(), lb = low_row_bytes();
    std::int64_t rh = 0, rl = 0, wh = 0, wl = 0, w = 0;  // read and write ranks, written entries
    for (std::int64_t i = 0; i < s.len && w < n_keep; ++i) {
      const bool low = s.tier[i] != 0;
      const std::int64_t r = low ? rl++ : rh++;
      if (keep[w] != i) continue;
      std::int64_t& wr = low ? wl : wh;
      if (r != wr) {
        const std::size_t b = low ? lb : hb;
        unsigned char* k = low ? s.lk.get() : s.k.get();
        unsigned char* v = low ? s.lv.get() : s.v.get();
        std::memcpy(k + std::size_t(wr) * b, k + std::size_t(r) * b, b);
        std::memcpy(v + std::size_t(wr) * b, v + std::size_t(r) * b, b);
      }
      ++wr;
      if (i != w) {
        s.pos[w] = s.pos[i];
        s.tier[w] = s.tier[i];
        for (int c = 0; c < cfg_.score_channels; ++c) {
          float* ch = s.scores.get() + std::int64_t(c) * s.cap;
          ch[w] = ch[i];
        }
      }
      ++w;
    }
    s.len = n_keep;
    s.lo_len = wl;
  }

  status reallocate_low(slot& s, std::int64_t cap) noexcept {
    const std::size_t lb = low_row_bytes();
    bytes k = allocate(std::size_t(cap) * lb), v = allocate(std::size_t(cap) * lb);
    if (!k || !v) return status::out_of_memory;
    if (s.lo_len > 0) {
      std::memcpy(k.get(), s.lk.get(), std::size_t(s.lo_len) * lb);
      std::memcpy(v.get(), s.lv.get(), std::size_t(s.lo_len) * lb);
    }
    s.lk = std::move(k);
    s.lv = std::move(v);
    s.lo_cap = cap;
    return status::ok;
  }
  status grow_low(slot& s, std::int64_t need) noexcept {
    if (need <= s.lo_cap) return status::ok;
    return reallocate_low(s, grown_capacity(s.lo_cap, need));
  }

  // Paged mode.
  std::size_t page_bytes() const noexcept { return 2 * std::size_t(cfg_.page_rows) * row_bytes(); }
  unsigned char* page_k(slot& s, std::size_t i) noexcept { return s.mem[i].get(); }
  unsigned char* page_v(slot& s, std::size_t i) noexcept {
    return s.mem[i].get() + std::size_t(cfg_.page_rows) * row_bytes();
  }

  // Makes sure `n` more pages can be added without failing: memory from the spare list or new,
  // and vector capacity for every bookkeeping list.
  status reserve_pages(slot& s, std::int64_t n) noexcept {
    if (n <= 0) return status::ok;
    const std::size_t total = s.mem.size() + s.spare.size();
    const std::size_t missing =
        n > std::int64_t(s.spare.size()) ? std::size_t(n) - s.spare.size() : 0;
    const std::size_t all = total + missing;
    if (!detail::reserve_vector(s.pages, all) || !detail::reserve_vector(s.mem, all) ||
        !detail::reserve_vector(s.spare, all))
      return status::out_of_memory;
    for (std::size_t i = 0; i < missing; ++i) {
      page_memory m = allocate(page_bytes());
      if (!m) return status::out_of_memory;
      s.spare.push_back(std::move(m));
    }
    return status::ok;
  }

  // Moves every page from index `from` on to the spare list.
  static void release_pages(slot& s, std::size_t from) noexcept {
    while (s.mem.size() > from) {
      s.spare.push_back(std::move(s.mem.back()));
      s.mem.pop_back();
      s.pages.pop_back();
    }
  }

  // A page's rows start `page_offset` rows into its memory (compaction toward the back leaves
  // room at the front); room_after is what follows its last row.
  std::int64_t page_offset(const slot& s, std::size_t i) const noexcept {
    return std::int64_t(static_cast<const unsigned char*>(s.pages[i].k) - s.mem[i].get()) /
           std::int64_t(row_bytes());
  }
  std::int64_t room_after(const slot& s, std::size_t i) const noexcept {
    return cfg_.page_rows - page_offset(s, i) - s.pages[i].len;
  }
  void set_offset(slot& s, std::size_t i, std::int64_t off) noexcept {
    s.pages[i].k = page_k(s, i) + std::size_t(off) * row_bytes();
    s.pages[i].v = page_v(s, i) + std::size_t(off) * row_bytes();
  }
  // Moves page i's rows to the start of its memory.
  void to_front(slot& s, std::size_t i) noexcept {
    const std::int64_t off = page_offset(s, i);
    if (off == 0) return;
    const std::size_t row = row_bytes(), n = std::size_t(s.pages[i].len) * row;
    std::memmove(page_k(s, i), page_k(s, i) + std::size_t(off) * row, n);
    std::memmove(page_v(s, i), page_v(s, i) + std::size_t(off) * row, n);
    set_offset(s, i, 0);
  }

  // Compacts every page to the kept entries it holds (keep: validated, ascending), then drops
  // empty pages, merges neighbours that fit in one page and renumbers the pages' first rows.
  // Each page compacts toward whichever end keeps the longer run of rows in place (its first or
  // its last run), so one eviction moves at most half a page, a quarter on average.
  void keep_pages(slot& s, const std::int32_t* keep, std::int64_t n_keep) noexcept {
    std::int64_t ki = 0;
    for (std::size_t pi = 0; pi < s.pages.size(); ++pi) {
      kv_page& pg = s.pages[pi];
      const std::int64_t ke = std::lower_bound(keep + ki, keep + n_keep, pg.begin + pg.len) - keep;
      if (ke - ki != pg.len && ke != ki) compact_page(s, pi, keep + ki, ke - ki);
      pg.len = ke - ki;
      ki = ke;
    }
    join_pages(s);
    std::int64_t begin = 0;
    for (auto& pg : s.pages) pg.begin = begin, begin += pg.len;
  }

  // First index in [lo, hi) whose keep[j] - j is above `shift` (or, with or_equal, not below it):
  // keep[j] - j never decreases along a keep-set.
  static std::int64_t first_past(const std::int32_t* keep, std::int64_t lo, std::int64_t hi,
                                 std::int64_t shift, bool or_equal) noexcept {
    while (lo < hi) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      const std::int64_t x = keep[mid] - mid;
      if (or_equal ? x < shift : x <= shift)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }

  // Page pi keeps `kept` of its rows (their cache indices keep[0, kept), some but not all of the
  // page): runs of consecutive kept rows move together, toward the end of the page the longer
  // kept run already touches (toward the back, the page's rows then start later).
  void compact_page(slot& s, std::size_t pi, const std::int32_t* keep, std::int64_t kept) noexcept {
    const std::size_t row = row_bytes();
    const std::int64_t b = s.pages[pi].begin, len = s.pages[pi].len;
    const std::int64_t off = page_offset(s, pi);
    unsigned char* kd = page_k(s, pi) + std::size_t(off) * row;
    unsigned char* vd = page_v(s, pi) + std::size_t(off) * row;
    auto move_run = [&](std::int64_t from, std::int64_t to, std::int64_t run) {
      if (from == to) return;
      std::memmove(kd + to * row, kd + from * row, std::size_t(run) * row);
      std::memmove(vd + to * row, vd + from * row, std::size_t(run) * row);
    };
    const std::int64_t ke = kept;
    const std::int64_t head_run = keep[0] == b ? first_past(keep, 0, ke, keep[0], false) : 0;
    const std::int64_t tail_start = first_past(keep, 0, ke, keep[ke - 1] - (ke - 1), true);
    const std::int64_t tail_run = keep[ke - 1] == b + len - 1 ? ke - tail_start : 0;
    if (head_run >= tail_run) {  // toward the front: runs move down
      std::int64_t w = 0;
      for (std::int64_t i = 0; i < ke;) {
        const std::int64_t end = first_past(keep, i + 1, ke, keep[i] - i, false);
        move_run(keep[i] - b, w, end - i);
        w += end - i;
        i = end;
      }
    } else {  // toward the back: runs move up, last first
      std::int64_t w = len;
      for (std::int64_t j = ke; j > 0;) {
        const std::int64_t start = first_past(keep, 0, j - 1, keep[j - 1] - (j - 1), true);
        w -= j - start;
        move_run(keep[start] - b, w, j - start);
        j = start;
      }
      set_offset(s, pi, off + w);
    }
  }

  // After compaction: retained pages move to the front (descriptor and memory together), a page
  // that fits in the room of the one before it is copied there; dropped and emptied pages end up
  // behind the retained ones and go to the spare list.
  void join_pages(slot& s) noexcept {
    const std::size_t row = row_bytes();
    std::size_t out = 0;
    for (std::size_t pi = 0; pi < s.pages.size(); ++pi) {
      const std::int64_t n = s.pages[pi].len;
      if (n == 0) continue;
      if (out > 0 && s.pages[out - 1].len + n <= cfg_.page_rows) {
        if (room_after(s, out - 1) < n) to_front(s, out - 1);
        const std::size_t at_ = std::size_t(page_offset(s, out - 1) + s.pages[out - 1].len) * row;
        std::memcpy(page_k(s, out - 1) + at_, s.pages[pi].k, std::size_t(n) * row);
        std::memcpy(page_v(s, out - 1) + at_, s.pages[pi].v, std::size_t(n) * row);
        s.pages[out - 1].len += n;
        continue;
      }
      if (out != pi) {
        s.pages[out] = s.pages[pi];
        std::swap(s.mem[out], s.mem[pi]);
      }
      ++out;
    }
    release_pages(s, out);
  }

  // f(typed pointer to row (s, h)) for a view of f32, f16 or bf16; returns what f returns.
  template <class F>
  static auto with_row(const tensor_view& t, std::int64_t s, int h, F&& f) noexcept {
    if (t.type == dtype::f16) return f(t.row<const f16>(s, h));
    if (t.type == dtype::bf16) return f(t.row<const bf16>(s, h));
    return f(t.row<const float>(s, h));
  }

  // The input views, and for a quantized cache that every row it will quantize can be: heads < 0
  // checks the rows of view head src_head only (append_head).
  status check_input(const tensor_view& k, const tensor_view& v, int heads,
                     int src_head = -1) const noexcept {
    if (k.data == nullptr || v.data == nullptr) return status::null_pointer;
    HEED_RETURN_IF_ERROR(validate_view(k, /*quantized_ok=*/true));
    HEED_RETURN_IF_ERROR(validate_view(v, /*quantized_ok=*/true));
    for (const tensor_view* t : {&k, &v})
      if (is_quantized(t->type) && (t->type != cfg_.type || t->quant_group() != group()))
        return status::unsupported_dtype;
    if (k.dim != cfg_.head_dim || v.dim != cfg_.head_dim) return status::shape_mismatch;
    if (k.seq != v.seq || k.heads != v.heads) return status::shape_mismatch;
    if (heads >= 0 && k.heads != heads) return status::shape_mismatch;
    if (!is_quantized(cfg_.type)) return status::ok;
    for (const tensor_view* t : {&k, &v}) {
      if (is_quantized(t->type)) continue;
      for (std::int64_t s = 0; s < t->seq; ++s)
        for (int h = heads >= 0 ? 0 : src_head; h < (heads >= 0 ? heads : src_head + 1); ++h)
          HEED_RETURN_IF_ERROR(with_row(*t, s, h, [&](const auto* x) {
            return quant::check_row(cfg_.type, x, cfg_.head_dim, group());
          }));
    }
    return status::ok;
  }

  status reallocate(slot& s, std::int64_t cap) noexcept {
    const std::size_t row = row_bytes();
    const int nc = cfg_.score_channels;
    bytes k, v;  // K and V are paged in paged mode
    if (!paged()) {
      k = allocate(std::size_t(cap) * row);
      v = allocate(std::size_t(cap) * row);
      if (!k || !v) return status::out_of_memory;
    }
    std::unique_ptr<std::int64_t[]> pos(new (std::nothrow) std::int64_t[std::size_t(cap) + 1]);
    std::unique_ptr<float[]> sc(new (std::nothrow) float[std::size_t(cap) * nc + 1]);
    std::unique_ptr<std::uint8_t[]> tier;
    if (cfg_.tiered) tier.reset(new (std::nothrow) std::uint8_t[std::size_t(cap) + 1]);
    if (!pos || !sc || (cfg_.tiered && !tier)) return status::out_of_memory;
    if (s.len > 0) {
      if (!paged()) {
        std::memcpy(k.get(), s.k.get(), std::size_t(s.len) * row);
        std::memcpy(v.get(), s.v.get(), std::size_t(s.len) * row);
      }
      std::memcpy(pos.get(), s.pos.get(), std::size_t(s.len) * sizeof(std::int64_t));
      if (tier) std::memcpy(tier.get(), s.tier.get(), std::size_t(s.len));
      for (int c = 0; c < nc; ++c)
        std::memcpy(sc.get() + std::int64_t(c) * cap, s.scores.get() + std::int64_t(c) * s.cap,
                    std::size_t(s.len) * sizeof(float));
    }
    s.k = std::move(k);
    s.v = std::move(v);
    s.pos = std::move(pos);
    s.scores = std::move(sc);
    s.tier = std::move(tier);
    s.cap = cap;
    return status::ok;
  }

  // Amortized growth: double (at least 16 entries), or to `need` when that is more.
  static std::int64_t grown_capacity(std::int64_t cap, std::int64_t need) noexcept {
    return std::max<std::int64_t>({16, 2 * cap, need});
  }
  status grow(slot& s, std::int64_t need) noexcept {
    if (need <= s.cap) return status::ok;
    return reallocate(s, grown_capacity(s.cap, need));
  }

  template <class Dst, class Src>
  static void convert_row(Dst* dst, const Src* src, std::int64_t d) noexcept {
    for (std::int64_t c = 0; c < d; ++c) dst[c] = from_float<Dst>(to_float(src[c]));
  }
  // Row (s, h) of t into dst in the storage type (t's rows were checked by check_input).
  void store_row(unsigned char* dst, const tensor_view& t, std::int64_t s, int h) const noexcept {
    const std::int64_t d = cfg_.head_dim;
    if (t.type == cfg_.type) {
      std::memcpy(dst,
                  static_cast<const unsigned char*>(t.data) + t.offset(s, h) * dtype_size(t.type),
                  row_bytes());
      return;
    }
    with_row(t, s, h, [&](const auto* x) {
      if (is_quantized(cfg_.type))
        quant::detail::quantize_checked_row(cfg_.type, x, d, group(), dst);
      if (cfg_.type == dtype::f32) convert_row(reinterpret_cast<float*>(dst), x, d);
      if (cfg_.type == dtype::f16) convert_row(reinterpret_cast<f16*>(dst), x, d);
      if (cfg_.type == dtype::bf16) convert_row(reinterpret_cast<bf16*>(dst), x, d);
    });
  }

  // Positions of n new entries of slot s: strictly ascending after the slot's last.
  static status check_positions(const slot& s, std::int64_t n,
                                const std::int64_t* positions) noexcept {
    std::int64_t last = s.len > 0 ? s.pos[s.len - 1] : -1;
    if (positions) {
      for (std::int64_t i = 0; i < n; ++i) {
        if (positions[i] <= last || positions[i] < 0) return status::invalid_argument;
        last = positions[i];
      }
    } else if (s.appended <= last) {
      return status::invalid_argument;  // explicit positions ran ahead of the count
    }
    return status::ok;
  }

  // Capacity for n more entries after `kept` (and, paged, every page they need); the contents
  // stay the same.
  status make_room(slot& s, std::int64_t n, std::int64_t kept) noexcept {
    HEED_RETURN_IF_ERROR(grow(s, kept + n));
    const std::int64_t P = cfg_.page_rows;
    if (paged()) {
      if (!s.pages.empty() && room_after(s, s.pages.size() - 1) < n)
        to_front(s, s.pages.size() - 1);
      const std::int64_t room = s.pages.empty() ? 0 : room_after(s, s.pages.size() - 1);
      HEED_RETURN_IF_ERROR(reserve_pages(s, n > room ? (n - room + P - 1) / P : 0));
    }
    return status::ok;
  }

  // append() (mask null) and append_admitted() (mask [kv_heads][n]).
  status append_masked(int layer, const tensor_view& k, const tensor_view& v,
                       const std::int64_t* positions, const std::uint8_t* mask) noexcept {
    if (slots_.empty()) return status::invalid_argument;
    if (layer < 0 || layer >= cfg_.layers) return status::invalid_argument;
    HEED_RETURN_IF_ERROR(check_input(k, v, cfg_.kv_heads));
    for (int h = 0; h < cfg_.kv_heads; ++h) {
      const slot& s = at(layer, h);
      if (s.limit > 0 && s.len + k.seq > s.limit) return status::invalid_argument;
      HEED_RETURN_IF_ERROR(check_positions(s, k.seq, positions));
    }
    for (int h = 0; h < cfg_.kv_heads; ++h)
      HEED_RETURN_IF_ERROR(make_room(at(layer, h), k.seq, at(layer, h).len));
    for (int h = 0; h < cfg_.kv_heads; ++h)
      HEED_RETURN_IF_ERROR(append_one(at(layer, h), k, v, h, positions,
                                      mask ? mask + std::int64_t(h) * k.seq : nullptr));
    return status::ok;
  }

  // mask (null: all): which of the n rows this head stores.
  status append_one(slot& s, const tensor_view& k, const tensor_view& v, int h,
                    const std::int64_t* positions, const std::uint8_t* mask = nullptr) noexcept {
    const std::int64_t n = k.seq;
    HEED_RETURN_IF_ERROR(check_positions(s, n, positions));
    HEED_RETURN_IF_ERROR(make_room(s, n, s.len));  // a no-op after append()'s own make_room
    const std::size_t row = row_bytes();
    std::int64_t stored = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (mask && mask[i] == 0) continue;
      const std::int64_t at_ = s.len + stored++;
      if (paged()) {
        if (s.pages.empty() || room_after(s, s.pages.size() - 1) == 0) {
          s.mem.push_back(std::move(s.spare.back()));
          s.spare.pop_back();
          const std::size_t pi = s.mem.size() - 1;
          s.pages.push_back({page_k(s, pi), page_v(s, pi), at_, 0});
        }
        const std::size_t pi = s.pages.size() - 1;
        const std::size_t r = std::size_t(page_offset(s, pi) + s.pages[pi].len++) * row;
        store_row(page_k(s, pi) + r, k, i, h);
        store_row(page_v(s, pi) + r, v, i, h);
      } else {
        const std::int64_t r = at_ - s.lo_len;  // new entries are of the high tier
        store_row(s.k.get() + r * row, k, i, h);
        store_row(s.v.get() + r * row, v, i, h);
        if (s.tier) s.tier[at_] = 0;
      }
      s.pos[at_] = positions ? positions[i] : s.appended + i;
      for (int c = 0; c < cfg_.score_channels; ++c) s.scores[std::int64_t(c) * s.cap + at_] = 0.f;
    }
    s.len += stored;
    s.appended = positions ? positions[n - 1] + 1 : s.appended + n;
    return status::ok;
  }

  kv_cache_config cfg_{};
  std::vector<slot> slots_;
  std::unique_ptr<float[]> row_tmp_;  // tiered: one row in f32 (demote's conversions)
};

}  // namespace heed
