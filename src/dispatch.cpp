// Run-time ISA selection for the compiled dense kernels.
#include "heed/attention/dense_dispatch.hpp"
#include "isa_entry.hpp"

namespace heed {

namespace {

bool cpu_has(isa i) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (i) {
    case isa::sse2:
      return __builtin_cpu_supports("sse2");
    case isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c");
    default:
      return true;
  }
#else
  return i == isa::automatic;
#endif
}

constexpr bool compiled(isa i) noexcept {
  switch (i) {
#if defined(HEED_HAVE_SSE2)
    case isa::sse2:
      return true;
#endif
#if defined(HEED_HAVE_AVX2)
    case isa::avx2:
      return true;
#endif
#if defined(HEED_HAVE_AVX512)
    case isa::avx512:
      return true;
#endif
    default:
      return false;
  }
}

isa resolve(isa i) noexcept { return i == isa::automatic ? best_isa() : i; }

}  // namespace

bool isa_available(isa i) noexcept {
  if (i == isa::automatic) return true;
  return compiled(i) && cpu_has(i);
}

isa best_isa() noexcept {
  static const isa best = [] {
    for (isa i : {isa::avx512, isa::avx2, isa::sse2})
      if (compiled(i) && cpu_has(i)) return i;
    return isa::sse2;
  }();
  return best;
}

status dense_can_implement(const dense_params& p) noexcept { return validate(p); }

std::size_t dense_workspace_size(const dense_params& p, int threads, isa i) noexcept {
  if (!isa_available(i)) return 0;
  switch (resolve(i)) {
#if defined(HEED_HAVE_AVX512)
    case isa::avx512:
      return detail::dense_workspace_size_avx512(p, threads);
#endif
#if defined(HEED_HAVE_AVX2)
    case isa::avx2:
      return detail::dense_workspace_size_avx2(p, threads);
#endif
    default:
      return detail::dense_workspace_size_sse2(p, threads);
  }
}

status dense_attention(const dense_params& p, workspace ws, executor& ex, isa i) noexcept {
  if (!isa_available(i)) return status::unsupported_isa;
  switch (resolve(i)) {
#if defined(HEED_HAVE_AVX512)
    case isa::avx512:
      return detail::dense_attention_avx512(p, ws, ex);
#endif
#if defined(HEED_HAVE_AVX2)
    case isa::avx2:
      return detail::dense_attention_avx2(p, ws, ex);
#endif
    default:
      return detail::dense_attention_sse2(p, ws, ex);
  }
}

}  // namespace heed
