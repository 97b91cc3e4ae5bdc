// Growing a std::vector without letting an allocation failure escape: the owning structures
// (KV cache, eviction scratch) report out_of_memory instead. Private header.
#pragma once

#include <cstddef>
#include <vector>

namespace heed {
namespace detail {

// Runs f (a vector operation that may allocate); false when the allocation failed. Without
// exceptions an allocation failure aborts, as everywhere in a -fno-exceptions build.
template <class F>
bool allocation_ok(F&& f) noexcept {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    f();
  } catch (...) {
    return false;
  }
#else
  f();
#endif
  return true;
}

// Makes v hold at least n elements (never shrinks); false when the allocation failed.
template <class T>
bool grow_vector(std::vector<T>& v, std::size_t n) noexcept {
  return v.size() >= n || allocation_ok([&] { v.resize(n); });
}

// Makes v's capacity at least n (so that n - size() push_backs cannot allocate); false when the
// allocation failed.
template <class T>
bool reserve_vector(std::vector<T>& v, std::size_t n) noexcept {
  return v.capacity() >= n || allocation_ok([&] { v.reserve(n); });
}

}  // namespace detail
}  // namespace heed
