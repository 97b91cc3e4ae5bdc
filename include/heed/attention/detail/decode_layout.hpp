// Decode's partitions and workspace: the split-KV layout of a step and the one function that
// carves (and sizes) its workspace.
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "heed/attention/detail/decode_qk_int.hpp"
#include "heed/attention/detail/dense_common.hpp"
#include "heed/core/workspace.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

struct decode_cfg {
  static constexpr std::int64_t partition = 1024;  // keys per split-KV partition
  static constexpr int NB = 64;                    // keys per softmax block
};

struct decode_layout {
  std::int64_t k_lo, k_hi, n_parts, group, d;
  // [seq, heads, d] (or otherwise strided) K or V rows: a thread runs the KV heads of a partition
  // side by side, key block by key block, so that it reads the records of consecutive keys in
  // order instead of one head's 256 bytes of every record (see decode_kernel::run_heads).
  bool strided;
  std::int64_t slots;  // head states per thread: kv_heads when strided, else 1
  bool keep_logits;
  // q8 keys: each query row is quantized to q8 in the keys' group once per step, into a shared
  // record per query head (decode_query_record_bytes, decode_qk_int.hpp).
  int query_group;  // the keys' group, or 0: the query stays f32
};

HEED_FORCE_INLINE decode_layout make_decode_layout(const dense_params& p,
                                                   bool keep_logits) noexcept {
  decode_layout l;
  l.k_lo = 0;
  l.k_hi = p.kv_len();
  if (p.causal) l.k_hi = std::min(l.k_hi, p.offset() + 1);
  l.n_parts = p.pages ? p.n_pages
                      : std::max<std::int64_t>(1, (l.k_hi - l.k_lo + decode_cfg::partition - 1) /
                                                      decode_cfg::partition);
  l.group = p.q_heads() / p.kv_heads();
  l.d = p.head_dim();
  l.strided = p.k.seq_stride > p.k.row_extent() || p.v.seq_stride > p.v.row_extent();
  l.slots = l.strided ? p.kv_heads() : 1;
  l.keep_logits = keep_logits;
  l.query_group = p.k.type == dtype::q8 ? p.k.quant_group() : 0;
  return l;
}

// Workspace: per thread and head slot [G][d] scaled queries, [G][d] output accumulators, two
// [G][NB] logit blocks, (m, d, t); shared [Hq][parts] (m, d, t) and [Hq][parts][d] partial
// outputs; optionally [Hq][Lk] logits; for q8 keys [Hq] quantized query records (written once
// per step, decode_query_record_bytes).
struct decode_buffers {
  float* thread_base;
  std::size_t per_thread;
  float* part_mdt;      // [Hq][parts][3]
  float* part_o;        // [Hq][parts][d]
  float* logits;        // [Hq][Lk] or null
  float* row_lse;       // [Hq] base-2 LSE of each row (for the probabilities), or null
  std::uint8_t* query;  // q8 keys: [Hq] query records (decode_query_record_bytes), else null
};

// Row stride of the per-thread query and output scratch: d rounded up to 16 floats (64 bytes).
inline std::int64_t decode_dstride(std::int64_t d) noexcept { return (d + 15) / 16 * 16; }

// Floats of one head slot (64-byte aligned) and of one thread's slots.
HEED_FORCE_INLINE std::size_t decode_slot_floats(const decode_layout& l) noexcept {
  const std::size_t g = std::size_t(l.group), ds = std::size_t(decode_dstride(l.d));
  return align_up((g * ds * 2 + g * decode_cfg::NB * 2 + 3 * g) * 4) / 4;
}
// q8 keys: bytes of one query head's record in the shared query area, its q8 row
// (query_q8_layout) then its f32 query [ds] (the dequantized values times the row's factor);
// 0 otherwise.
HEED_FORCE_INLINE std::size_t decode_query_floats_offset(const decode_layout& l) noexcept {
  return align_up(query_q8_layout{l.d, l.query_group}.bytes());
}
HEED_FORCE_INLINE std::size_t decode_query_record_bytes(const decode_layout& l) noexcept {
  if (!l.query_group) return 0;
  return decode_query_floats_offset(l) + 4 * std::size_t(decode_dstride(l.d));
}
HEED_FORCE_INLINE std::size_t decode_per_thread_floats(const decode_layout& l) noexcept {
  return decode_slot_floats(l) * std::size_t(l.slots);
}

// The one layout of decode's workspace: carves it from ws, or with ws null only counts its bytes
// (decode_workspace_size), so the size and the carving cannot drift apart.
inline decode_buffers carve_decode(void* ws, const dense_params& p, const decode_layout& l,
                                   int threads, std::size_t* bytes = nullptr) noexcept {
  workspace_carver c(ws ? workspace_carver::align_base(ws) : nullptr);
  decode_buffers b;
  b.per_thread = decode_per_thread_floats(l);
  b.thread_base = c.take<float>(b.per_thread * std::size_t(threads));
  b.part_mdt = c.take<float>(std::size_t(p.q_heads()) * l.n_parts * 3);
  b.part_o = c.take<float>(std::size_t(p.q_heads()) * l.n_parts * l.d);
  b.logits = l.keep_logits ? c.take<float>(std::size_t(p.q_heads()) * p.kv_len()) : nullptr;
  b.row_lse = l.keep_logits ? c.take<float>(std::size_t(p.q_heads())) : nullptr;
  b.query = l.query_group
                ? c.take<std::uint8_t>(std::size_t(p.q_heads()) * decode_query_record_bytes(l))
                : nullptr;
  if (bytes) *bytes = c.bytes_needed();
  return b;
}

HEED_FORCE_INLINE std::size_t decode_workspace_size(const dense_params& p, int threads,
                                                    bool keep_logits) noexcept {
  std::size_t bytes = 0;
  (void)carve_decode(nullptr, p, make_decode_layout(p, keep_logits), threads, &bytes);
  return bytes;
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
