// Integer dot products for q8 keys: whether the CPU has them (AVX-512 VNNI) and whether the
// kernels may use them.
//
// Decode over q8 keys quantizes each query row to q8 (heed/quant/format.hpp, the keys' group) on
// every ISA, so its logits are those of the quantized query and the keys' values, whatever path
// computes them. Where the CPU has AVX-512 VNNI, the AVX-512 kernels compute those logits with
// 8-bit integer dot products (vpdpbusd), elsewhere in f32 from the dequantized values: the two
// differ only in f32 rounding. set_integer_dot(false) makes the kernels take the f32 path
// everywhere (tests and benchmarks use it to reach and time both paths on one machine).
#pragma once

#include <atomic>

#include "heed/config.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define HEED_HAVE_X86_CPUID 1
#endif

namespace heed {
namespace integer_dot_detail {
// Program-wide (outside HEED_ISA_BEGIN): every ISA's kernels read the one switch.
inline std::atomic<bool> enabled{true};
// Whether the CPU has AVX-512 VNNI: -1 not asked yet, else 0 or 1.
inline std::atomic<int> cpu_vnni{-1};
}  // namespace integer_dot_detail

HEED_ISA_BEGIN

// Allows (true, the default) or forbids the integer path; returns the previous setting. Takes
// effect for kernel calls that start after it.
inline bool set_integer_dot(bool on) noexcept { return integer_dot_detail::enabled.exchange(on); }
inline bool integer_dot_enabled() noexcept {
  return integer_dot_detail::enabled.load(std::memory_order_relaxed);
}

// AVX-512 VNNI (CPUID leaf 7, ECX bit 11), asked once.
inline bool cpu_has_avx512_vnni() noexcept {
  int v = integer_dot_detail::cpu_vnni.load(std::memory_order_relaxed);
  if (v < 0) {
    v = 0;
#if defined(HEED_HAVE_X86_CPUID)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) != 0) v = (ecx >> 11) & 1u;
#endif
    integer_dot_detail::cpu_vnni.store(v, std::memory_order_relaxed);
  }
  return v != 0;
}

namespace detail {
// Whether an AVX-512 kernel computes q8 logits with vpdpbusd now.
inline bool use_vnni() noexcept { return integer_dot_enabled() && cpu_has_avx512_vnni(); }
}  // namespace detail

HEED_ISA_END
}  // namespace heed
