// Runs a body that may allocate and turns an allocation failure into status::out_of_memory, so
// entry points that own memory (pattern builders, estimators, calibration) never let an exception
// escape. Without exceptions an allocation failure aborts, as everywhere in a -fno-exceptions
// build. Private header.
#pragma once

#include <new>

#include "heed/core/status.hpp"

namespace heed {
namespace detail {

template <class F>
status no_throw(F&& f) noexcept {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return status::out_of_memory;
  } catch (...) {
    return status::invalid_argument;  // std::length_error and the like: sizes out of range
  }
#else
  return f();
#endif
}

}  // namespace detail
}  // namespace heed
