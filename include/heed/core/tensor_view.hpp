// Strided, non-owning views of rank-3 tensors [seq, heads, dim] with a contiguous last dim.
//
// Strides are in elements. The same view describes K laid out [seq, kv_heads, d] (llama.cpp:
// seq_stride = kv_heads * d, head_stride = d) or [kv_heads, seq, d] (seq_stride = d,
// head_stride = seq * d), or any padded variant of either.
#pragma once

#include <cstdint>

#include "heed/core/dtype.hpp"
#include "heed/core/status.hpp"

namespace heed {

enum class layout : int {
  seq_head_dim = 0,  // [seq, heads, dim]
  head_seq_dim = 1,  // [heads, seq, dim]
};

template <class Ptr>
struct basic_tensor_view {
  Ptr data = nullptr;
  dtype type = dtype::f32;
  std::int64_t seq = 0;
  std::int64_t heads = 0;
  std::int64_t dim = 0;
  std::int64_t seq_stride = 0;   // elements between consecutive positions
  std::int64_t head_stride = 0;  // elements between consecutive heads

  // Element offset of (position s, head h, 0).
  constexpr std::int64_t offset(std::int64_t s, std::int64_t h) const noexcept {
    return s * seq_stride + h * head_stride;
  }
  template <class T>
  T* row(std::int64_t s, std::int64_t h) const noexcept {
    return static_cast<T*>(data) + offset(s, h);
  }
};

using tensor_view = basic_tensor_view<const void*>;
using mutable_tensor_view = basic_tensor_view<void*>;

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
  v.seq_stride = l == layout::seq_head_dim ? heads * dim : dim;
  v.head_stride = l == layout::seq_head_dim ? dim : seq * dim;
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
// and no two (seq, head) rows overlapping.
template <class Ptr>
HEED_FORCE_INLINE status validate_view(const basic_tensor_view<Ptr>& v) noexcept {
  if (v.seq <= 0 || v.heads <= 0 || v.dim <= 0) return status::invalid_argument;
  if (v.data == nullptr) return status::null_pointer;
  if (v.type != dtype::f32 && v.type != dtype::f16 && v.type != dtype::bf16)
    return status::unsupported_dtype;
  if (v.seq_stride < 0 || v.head_stride < 0) return status::invalid_stride;
  // Rows must not overlap: one of the two strides is the outer one.
  const std::int64_t a = v.seq_stride, b = v.head_stride;
  const std::int64_t na = v.seq, nb = v.heads;
  bool ok;
  if (na == 1 && nb == 1) {
    ok = true;
  } else if (na == 1) {
    ok = b >= v.dim;
  } else if (nb == 1) {
    ok = a >= v.dim;
  } else if (a >= b) {
    ok = b >= v.dim && a >= b * nb;
  } else {
    ok = a >= v.dim && b >= a * na;
  }
  return ok ? status::ok : status::invalid_stride;
}

}  // namespace heed
