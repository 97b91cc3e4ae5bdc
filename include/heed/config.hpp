// Build configuration: assertion macros, inlining and the replaceable abort handler.
#pragma once

#include <cstdio>
#include <cstdlib>

#if defined(__GNUC__) || defined(__clang__)
#define HEED_FORCE_INLINE inline __attribute__((always_inline))
#define HEED_NOINLINE __attribute__((noinline))
#define HEED_RESTRICT __restrict__
#else
#define HEED_FORCE_INLINE inline
#define HEED_NOINLINE
#define HEED_RESTRICT
#endif

namespace heed {

// Called on a broken internal invariant. Replace it with set_abort_handler(); the handler must
// not return (if it does, std::abort() follows).
using abort_handler = void (*)(const char* file, int line, const char* what);

namespace detail {
inline void default_abort_handler(const char* file, int line, const char* what) {
  std::fprintf(stderr, "heed: invariant broken at %s:%d: %s\n", file, line, what);
}
inline abort_handler& abort_handler_slot() {
  static abort_handler h = &default_abort_handler;
  return h;
}
[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  abort_handler_slot()(file, line, what);
  std::abort();
}
}  // namespace detail

// Installs h (nullptr restores the default) and returns the previous handler.
inline abort_handler set_abort_handler(abort_handler h) {
  abort_handler old = detail::abort_handler_slot();
  detail::abort_handler_slot() = h ? h : &detail::default_abort_handler;
  return old;
}

}  // namespace heed

// HEED_ASSERT is always on; HEED_DASSERT only in debug builds (hot paths use this one).
#ifndef HEED_ASSERT
#define HEED_ASSERT(cond) \
  ((cond) ? static_cast<void>(0) : ::heed::detail::fail(__FILE__, __LINE__, #cond))
#endif
#ifndef HEED_DASSERT
#ifdef NDEBUG
#define HEED_DASSERT(cond) static_cast<void>(0)
#else
#define HEED_DASSERT(cond) HEED_ASSERT(cond)
#endif
#endif
