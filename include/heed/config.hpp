// Build configuration: assertion macros, inlining, the per-ISA namespace and the replaceable
// abort handler.
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

// HEED_ISA_BEGIN / HEED_ISA_END: the namespace of what a translation unit compiles for one ISA.
//
// The compiled library builds its kernels once per ISA, in translation units compiled with that
// ISA's flags (-mavx2 -mfma -mf16c, -mavx512f ...: cmake/heed_isas.cmake). An inline function or
// a template instantiation that does not depend on the ISA (a helper, a template with the same
// arguments) is emitted by each of them as a weak symbol of one name, and the linker keeps one
// copy for the whole program: perhaps the AVX-512 one, which an SSE2 or AVX2 path, or dispatch,
// then runs on a CPU without AVX-512. So those translation units define HEED_ISA_NAMESPACE
// (isa_sse2, isa_avx2, isa_avx512, isa_neon), and the headers they include (the kernels and all
// they use) put their code between HEED_ISA_BEGIN and HEED_ISA_END, which open and close the
// inline namespace heed::HEED_ISA_NAMESPACE there: every name is the ISA's own
// (heed::isa_avx2::detail::...) while code still writes heed::detail::... (the namespace is
// inline). Elsewhere (the library's other translation units, header-only users) both expand to
// nothing and the names are heed's.
//
// Outside them stays only what the ISAs' translation units share: the types of the per-ISA entry
// points' signatures (dense_params with its settings, views and pages, the sparse layouts,
// workspace, executor with task_fn, linear_params, feature_map_spec, status, dtype, isa), whose
// member functions are HEED_FORCE_INLINE (never emitted on their own); declarations of functions
// the library defines once (the dispatch API); and program-wide data (the abort handler). The
// standard library's templates cannot be renamed: per-ISA code calls small ones an optimized
// build inlines, and gives a bigger one an argument of the ISA's namespace, which puts the
// namespace into its name (std::sort with detail::key_less, attention/detail/sparse_prefill.hpp).
// A header those translation units newly include must follow the same rule, or the build fails
// (a heed::detail beside heed::isa_avx2::detail makes `detail::` ambiguous) or the ctest
// isa_symbols does: it checks the library's objects (docs/architecture.md, "One namespace per
// ISA").
#if defined(HEED_ISA_NAMESPACE)
#define HEED_ISA_BEGIN inline namespace HEED_ISA_NAMESPACE {
#define HEED_ISA_END }
#else
#define HEED_ISA_BEGIN
#define HEED_ISA_END
#endif

namespace heed {

// Called on a broken internal invariant. Replace it with set_abort_handler(); the handler must
// not return (if it does, std::abort() follows).
using abort_handler = void (*)(const char* file, int line, const char* what);

namespace abort_detail {
// The handler set_abort_handler() installed; null: the default. One for the whole program (data,
// outside HEED_ISA_BEGIN): the per-ISA translation units read the one users set.
inline abort_handler installed = nullptr;
}  // namespace abort_detail

HEED_ISA_BEGIN
namespace detail {
inline void default_abort_handler(const char* file, int line, const char* what) {
  std::fprintf(stderr, "heed: invariant broken at %s:%d: %s\n", file, line, what);
}
[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  const abort_handler h = abort_detail::installed;
  (h ? h : &default_abort_handler)(file, line, what);
  std::abort();
}
}  // namespace detail

// Installs h (nullptr restores the default) and returns the previous handler.
inline abort_handler set_abort_handler(abort_handler h) {
  const abort_handler old = abort_detail::installed;
  abort_detail::installed = h;
  return old ? old : &detail::default_abort_handler;
}
HEED_ISA_END

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
