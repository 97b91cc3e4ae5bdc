// Status codes returned by every public entry point.
#pragma once

#include "heed/config.hpp"

namespace heed {

enum class [[nodiscard]] status : int{
    ok = 0,
    null_pointer,          // a required pointer is null
    invalid_argument,      // a length, count or option is out of range
    shape_mismatch,        // tensors disagree on a dimension (heads, seq, head_dim)
    invalid_stride,        // strides overlap, are negative or do not fit the shape
    unsupported_dtype,     // e.g. a query that is not f32
    unsupported_head_dim,  // only for entry points that have no generic fallback
    unsupported_isa,       // an ISA that was not compiled in or that this CPU lacks
    workspace_too_small,   // the caller's workspace is smaller than workspace_size()
    out_of_memory,         // an owning structure (the KV cache) could not allocate
};

HEED_ISA_BEGIN
constexpr const char* status_string(status s) noexcept {
  switch (s) {
    case status::ok:
      return "ok";
    case status::null_pointer:
      return "null pointer";
    case status::invalid_argument:
      return "invalid argument";
    case status::shape_mismatch:
      return "shape mismatch";
    case status::invalid_stride:
      return "invalid stride";
    case status::unsupported_dtype:
      return "unsupported dtype";
    case status::unsupported_head_dim:
      return "unsupported head dim";
    case status::unsupported_isa:
      return "unsupported isa";
    case status::workspace_too_small:
      return "workspace too small";
    case status::out_of_memory:
      return "out of memory";
  }
  return "unknown status";
}

constexpr bool is_ok(status s) noexcept { return s == status::ok; }
HEED_ISA_END

}  // namespace heed

// Returns early from the enclosing function when expr is not ok.
#define HEED_RETURN_IF_ERROR(expr)                               \
  do {                                                           \
    const ::heed::status heed_status_ = (expr);                  \
    if (heed_status_ != ::heed::status::ok) return heed_status_; \
  } while (0)
