// Packing of prefill K/V chunks: the rows of a chunk as contiguous f32 rows, whatever type they
// are stored in (f32, f16, bf16, q8, q4).
//
// The stored type is picked once per kernel call, as a pointer to one packing function per type,
// so that the prefill tile (instantiated per ISA, head dim, variant and observer) is compiled once
// and not once per K/V type: the tile only ever reads f32 rows. Packing is a small part of a
// prefill chunk (BC rows converted, then scored and multiplied by up to 4 heads of BR queries),
// so the one indirect call per chunk costs nothing measurable, and it cut the compile time of
// the dense and sparse kernel translation units (docs/architecture.md, "Build").
// Private header: include heed/attention/dense.hpp.
#pragma once

#include <cstdint>

#include "heed/attention/detail/dense_common.hpp"
#include "heed/attention/params.hpp"
#include "heed/config.hpp"
#include "heed/simd/kv_row.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

// Rows of KV head kvh into kc / vc ([nk][d] f32): keys[j] for j < nk when keys is given, else
// the consecutive rows j0 + j. Contiguous rows can be prefetched: `ahead` asks each row 8 keys
// ahead into L1, and `next` > 0 asks the rows `next` keys ahead (the next chunk) into L2.
using kv_pack_fn = void (*)(const dense_params& p, int kvh, std::int64_t j0,
                            const std::int32_t* keys, int nk, bool ahead, std::int64_t next,
                            float* kc, float* vc, simd::row_shape rs) noexcept;

template <class A, class KV>
HEED_NOINLINE void pack_kv_rows(const dense_params& p, int kvh, std::int64_t j0,
                                const std::int32_t* keys, int nk, bool ahead, std::int64_t next,
                                float* kc, float* vc, simd::row_shape rs) noexcept {
  const KV* kbase = static_cast<const KV*>(p.k.data);
  const KV* vbase = static_cast<const KV*>(p.v.data);
  const std::int64_t row_bytes = simd::kv_storage<KV>::row_bytes(rs);
  for (int j = 0; j < nk; ++j) {
    const std::int64_t key = keys ? std::int64_t(keys[j]) : j0 + j;
    if (ahead && j + 8 < nk) prefetch_kv_row<3>(p, key + 8, kvh, sizeof(KV), row_bytes);
    if (next > 0) prefetch_kv_row<2>(p, key + next, kvh, sizeof(KV), row_bytes);
    simd::row_to_float<A>(kbase + p.k.offset(key, kvh), kc + j * rs.d, rs);
    simd::row_to_float<A>(vbase + p.v.offset(key, kvh), vc + j * rs.d, rs);
  }
}

// The packing function of the K/V type of k for the kernels of head dim D.
template <class A, int D>
kv_pack_fn kv_packer(const tensor_view& k) noexcept {
  kv_pack_fn f = nullptr;
  with_kernel_kv_type<D>(k, [&](auto kv) { f = &pack_kv_rows<A, decltype(kv)>; });
  return f;
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
