// Growing a std::vector without letting an allocation failure escape: the owning structures
// (KV cache, eviction scratch) report out_of_memory instead. Private header.
#pragma once

#include <cstddef>
#include <vector>

namespace heed {
namespace detail {

// Makes v hold at least n elements (never shrinks); false when the allocation failed. Without
// exceptions an allocation failure aborts, as everywhere in a -fno-exceptions build.
template <class T>
bool grow_vector(std::vector<T>& v, std::size_t n) noexcept {
  if (v.size() >= n) return true;
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    v.resize(n);
  } catch (...) {
    return false;
  }
  return true;
#else
  v.resize(n);
  return true;
#endif
}

// Makes v's capacity at least n (so that n - size() push_backs cannot allocate); false when the
// allocation failed.
template <class T>
bool reserve_vector(std::vector<T>& v, std::size_t n) noexcept {
  if (v.capacity() >= n) return true;
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    v.reserve(n);
  } catch (...) {
    return false;
  }
  return true;
#else
  v.reserve(n);
  return true;
#endif
}

}  // namespace detail
}  // namespace heed
