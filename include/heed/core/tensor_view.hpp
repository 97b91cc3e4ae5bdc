// Strided, non-owning views of rank-3 tensors [seq, heads, dim] with a contiguous last dim.
//
// Strides are in elements (for the quantized row formats q8 / q4: in bytes, a row taking
// quant::row_bytes(type, dim, group) of them). The same view describes K laid out [seq, kv_heads,
// d] (llama.cpp: seq_stride = kv_heads * d, head_stride = d) or [kv_heads, seq, d] (seq_stride = d,
// head_stride = seq * d), or any padded variant of either.
#pragma once

#include <cstdint>

#include "heed/config.hpp"
#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"
#include "heed/quant/format.hpp"

namespace heed {

template <class Ptr>
struct basic_tensor_view {
  Ptr data = nullptr;
  dtype type = dtype::f32;
  std::int64_t seq = 0;
  std::int64_t heads = 0;
  std::int64_t dim = 0;
  std::int64_t seq_stride = 0;   // elements between consecutive positions
  std::int64_t head_stride = 0;  // elements between consecutive heads
  int group = 0;                 // q8 / q4: values per scale; 0 means quant::default_group

  HEED_FORCE_INLINE constexpr int quant_group() const noexcept {
    return group ? group : quant::default_group;
  }
  // Stride units one row takes: dim, or the bytes of a quantized row.
  HEED_FORCE_INLINE constexpr std::int64_t row_extent() const noexcept {
    return is_quantized(type) ? std::int64_t(quant::row_bytes(type, dim, quant_group())) : dim;
  }

  // Element offset of (position s, head h, 0).
  HEED_FORCE_INLINE constexpr std::int64_t offset(std::int64_t s, std::int64_t h) const noexcept {
    return s * seq_stride + h * head_stride;
  }
  // Row (s, h) as T*; in debug builds (HEED_DASSERT) s and h must be in range.
  template <class T>
  HEED_FORCE_INLINE T* row(std::int64_t s, std::int64_t h) const noexcept {
    HEED_DASSERT(data != nullptr);
    HEED_DASSERT(s >= 0 && s < seq);
    HEED_DASSERT(h >= 0 && h < heads);
    return static_cast<T*>(data) + offset(s, h);
  }
};

using tensor_view = basic_tensor_view<const void*>;
using mutable_tensor_view = basic_tensor_view<void*>;

HEED_ISA_BEGIN
enum class layout : int {
  seq_head_dim = 0,  // [seq, heads, dim]
  head_seq_dim = 1,  // [heads, seq, dim]
};

template <class Ptr>
constexpr basic_tensor_view<Ptr> make_view(Ptr data, dtype type, std::int64_t seq,
                                           std::int64_t heads, std::int64_t dim,
                                           layout l = layout::seq_head_dim) noexcept {
  basic_tensor_view<Ptr> v;
  v.data = data;
  v.type = type;
  v.seq = seq;
  v.heads = heads;
  v.dim = dim;
  const std::int64_t e = v.row_extent();  // quantized rows: their bytes (default group)
  v.seq_stride = l == layout::seq_head_dim ? heads * e : e;
  v.head_stride = l == layout::seq_head_dim ? e : seq * e;
  return v;
}

template <class T>
tensor_view make_view(const T* data, std::int64_t seq, std::int64_t heads, std::int64_t dim,
                      layout l = layout::seq_head_dim) noexcept {
  return make_view<const void*>(data, dtype_of<T>::value, seq, heads, dim, l);
}
template <class T>
mutable_tensor_view make_mutable_view(T* data, std::int64_t seq, std::int64_t heads,
                                      std::int64_t dim, layout l = layout::seq_head_dim) noexcept {
  return make_view<void*>(data, dtype_of<T>::value, seq, heads, dim, l);
}

// Checks the view is well formed: non-null (when non-empty), positive sizes, non-negative strides
// and no two (seq, head) rows overlapping. Quantized types only where the caller reads them
// (quantized_ok), with a group that is valid for dim; the group field must be 0 otherwise.
template <class Ptr>
HEED_FORCE_INLINE status validate_view(const basic_tensor_view<Ptr>& v,
                                       bool quantized_ok = false) noexcept {
  if (v.seq <= 0 || v.heads <= 0 || v.dim <= 0) return status::invalid_argument;
  if (v.data == nullptr) return status::null_pointer;
  if (is_quantized(v.type)) {
    if (!quantized_ok) return status::unsupported_dtype;
    if (v.group < 0 || !quant::valid_group(v.dim, v.quant_group())) return status::invalid_argument;
  } else if (v.type != dtype::f32 && v.type != dtype::f16 && v.type != dtype::bf16) {
    return status::unsupported_dtype;
  } else if (v.group != 0) {
    return status::invalid_argument;
  }
  if (v.seq_stride < 0 || v.head_stride < 0) return status::invalid_stride;
  // Rows must not overlap: one of the two strides is the outer one.
  const std::int64_t a = v.seq_stride, b = v.head_stride, e = v.row_extent();
  const std::int64_t na = v.seq, nb = v.heads;
  bool ok;
  if (na == 1 && nb == 1) {
    ok = true;
  } else if (na == 1) {
    ok = b >= e;
  } else if (nb == 1) {
    ok = a >= e;
  } else if (a >= b) {
    ok = b >= e && a >= b * nb;
  } else {
    ok = a >= e && b >= a * na;
  }
  return ok ? status::ok : status::invalid_stride;
}
HEED_ISA_END

}  // namespace heed
