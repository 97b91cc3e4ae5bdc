// Run-time ISA selection for the compiled dense and sparse kernels.
#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "isa_entry.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#if defined(HEED_HAVE_NEON)
#define HEED_BASELINE_ISA isa::neon
#else
#define HEED_BASELINE_ISA isa::sse2
#endif

namespace heed {

namespace {

#if defined(__x86_64__) || defined(__i386__)
// F16C from CPUID leaf 1 (ECX bit 29): clang before 15 does not know "f16c" in
// __builtin_cpu_supports (a compile error), so it is read directly with either compiler.
bool cpu_has_f16c() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}
#endif

bool cpu_has(isa i) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (i) {
    case isa::sse2:
      return __builtin_cpu_supports("sse2");
    case isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512vl") && cpu_has_f16c();
    default:
      return false;
  }
#elif defined(__aarch64__)
  // Advanced SIMD, with its f16 conversions, is part of the AArch64 base architecture.
  return i == isa::neon;
#else
  (void)i;
  return false;
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
#if defined(HEED_HAVE_NEON)
    case isa::neon:
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
    for (isa i : platform_isas)
      if (compiled(i) && cpu_has(i)) return i;
    return HEED_BASELINE_ISA;
  }();
  return best;
}

status dense_can_implement(const dense_params& p) noexcept { return validate_dense(p); }

// The resolved ISA's entry point isa_entry::name_<isa>(args...). The baseline (SSE2 on x86-64,
// NEON on aarch64) is always compiled and runs whatever isa_available() let through.
#if defined(HEED_HAVE_AVX512)
#define HEED_CASE_AVX512(name, ...) \
  case isa::avx512:                 \
    return isa_entry::name##_avx512(__VA_ARGS__);
#else
#define HEED_CASE_AVX512(name, ...)
#endif
#if defined(HEED_HAVE_AVX2)
#define HEED_CASE_AVX2(name, ...) \
  case isa::avx2:                 \
    return isa_entry::name##_avx2(__VA_ARGS__);
#else
#define HEED_CASE_AVX2(name, ...)
#endif
#if defined(HEED_HAVE_NEON)
#define HEED_BASELINE_CALL(name, ...) isa_entry::name##_neon(__VA_ARGS__)
#else
#define HEED_BASELINE_CALL(name, ...) isa_entry::name##_sse2(__VA_ARGS__)
#endif
#define HEED_DISPATCH(i, name, ...)                 \
  switch (resolve(i)) {                             \
    HEED_CASE_AVX512(name, __VA_ARGS__)             \
    HEED_CASE_AVX2(name, __VA_ARGS__)               \
    default:                                        \
      return HEED_BASELINE_CALL(name, __VA_ARGS__); \
  }

std::size_t dense_workspace_size(const dense_params& p, int threads, isa i) noexcept {
  if (!isa_available(i)) return 0;
  HEED_DISPATCH(i, dense_workspace_size, p, threads)
}

status dense_attention(const dense_params& p, workspace ws, executor& ex, isa i) noexcept {
  if (!isa_available(i)) return status::unsupported_isa;
  HEED_DISPATCH(i, dense_attention, p, ws, ex)
}

std::size_t block_sparse_workspace_size(const dense_params& p, const block_sparse_layout& l,
                                        int threads, isa i) noexcept {
  if (!isa_available(i)) return 0;
  HEED_DISPATCH(i, block_sparse_workspace_size, p, l, threads)
}

std::size_t vertical_slash_workspace_size(const dense_params& p, const vertical_slash_layout& l,
                                          int threads, isa i) noexcept {
  if (!isa_available(i)) return 0;
  HEED_DISPATCH(i, vertical_slash_workspace_size, p, l, threads)
}

status block_sparse_attention(const dense_params& p, const block_sparse_layout& l, workspace ws,
                              executor& ex, isa i) noexcept {
  if (!isa_available(i)) return status::unsupported_isa;
  HEED_DISPATCH(i, block_sparse_attention, p, l, ws, ex)
}

status vertical_slash_attention(const dense_params& p, const vertical_slash_layout& l, workspace ws,
                                executor& ex, isa i) noexcept {
  if (!isa_available(i)) return status::unsupported_isa;
  HEED_DISPATCH(i, vertical_slash_attention, p, l, ws, ex)
}

std::int64_t linear_feature_dim(const feature_map_spec& m, std::int64_t d) noexcept {
  if (d < 1) return 0;
  switch (m.kind) {
    case feature_map_kind::identity:
    case feature_map_kind::elu_plus_one:
    case feature_map_kind::relu:
      return d;
    case feature_map_kind::favor_plus:
      return m.m > 0 ? m.m : 0;
    case feature_map_kind::hedgehog:
      return m.m > 0 ? 2 * m.m : 0;
  }
  return 0;
}

std::size_t linear_workspace_size(const linear_params& p, const feature_map_spec& m, int threads,
                                  isa i) noexcept {
  if (!isa_available(i) || linear_feature_dim(m, p.head_dim()) == 0) return 0;
  HEED_DISPATCH(i, linear_workspace_size, p, m, threads)
}

status linear_attention(const linear_params& p, const feature_map_spec& m, workspace ws,
                        executor& ex, isa i) noexcept {
  if (!isa_available(i)) return status::unsupported_isa;
  if (linear_feature_dim(m, p.head_dim()) == 0) return status::invalid_argument;
  HEED_DISPATCH(i, linear_attention, p, m, ws, ex)
}

}  // namespace heed
