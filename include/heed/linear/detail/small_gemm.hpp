// A small register-blocked SGEMM, C = (accumulate ? C : 0) + A B, all row-major with leading
// dimensions, templated on the xsimd arch. The linear-attention kernel multiplies matrices of a
// chunk (64 rows) by head-sized ones (64..256), which stay in L1/L2; this is all it needs.
//
// Why not Eigen: the kernel is compiled once per ISA in the library (one TU per ISA, each with its
// own flags), and Eigen's inline functions do not depend on the arch, so the linker could hand
// the AVX-512 copy to the SSE2 path (the ODR trap of DESIGN.md section 2). Here every function is
// a template on the arch. Private header.
#pragma once

#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "heed/config.hpp"

namespace heed {
HEED_ISA_BEGIN
namespace detail {

template <class A>
struct gemm_cfg {
  using B = xsimd::batch<float, A>;
  static constexpr int L = static_cast<int>(B::size);
  // 4 rows x V vectors of accumulators; 32 vector registers (AVX-512) fit 4 x 4, 16 fit 4 x 2.
  static constexpr int V = L >= 16 ? 4 : 2;
};

template <class A, int R, int V>
HEED_FORCE_INLINE void gemm_tile(std::int64_t K, const float* a, std::int64_t lda, const float* b,
                                 std::int64_t ldb, float* c, std::int64_t ldc,
                                 bool accumulate) noexcept {
  using B = xsimd::batch<float, A>;
  constexpr int L = static_cast<int>(B::size);
  B s[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v)
      s[r][v] = accumulate ? B::load_unaligned(c + r * ldc + v * L) : B(0.f);
  for (std::int64_t k = 0; k < K; ++k) {
    B bv[V];
    for (int v = 0; v < V; ++v) bv[v] = B::load_unaligned(b + k * ldb + v * L);
    for (int r = 0; r < R; ++r) {
      const B av(a[r * lda + k]);
      for (int v = 0; v < V; ++v) s[r][v] = xsimd::fma(av, bv[v], s[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) s[r][v].store_unaligned(c + r * ldc + v * L);
}

template <class A, int V>
HEED_FORCE_INLINE void gemm_columns(std::int64_t M, std::int64_t K, const float* a,
                                    std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                                    std::int64_t ldc, bool accumulate) noexcept {
  std::int64_t i = 0;
  for (; i + 4 <= M; i += 4)
    gemm_tile<A, 4, V>(K, a + i * lda, lda, b, ldb, c + i * ldc, ldc, accumulate);
  for (; i < M; ++i) gemm_tile<A, 1, V>(K, a + i * lda, lda, b, ldb, c + i * ldc, ldc, accumulate);
}

template <class A>
void small_gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda,
                const float* b, std::int64_t ldb, float* c, std::int64_t ldc,
                bool accumulate) noexcept {
  using C = gemm_cfg<A>;
  constexpr int L = C::L, V = C::V;
  std::int64_t j = 0;
  for (; j + V * L <= N; j += V * L)
    gemm_columns<A, V>(M, K, a, lda, b + j, ldb, c + j, ldc, accumulate);
  for (; j + L <= N; j += L) gemm_columns<A, 1>(M, K, a, lda, b + j, ldb, c + j, ldc, accumulate);
  for (; j < N; ++j)  // fewer columns than a vector: scalar
    for (std::int64_t i = 0; i < M; ++i) {
      float s = accumulate ? c[i * ldc + j] : 0.f;
      for (std::int64_t k = 0; k < K; ++k) s += a[i * lda + k] * b[k * ldb + j];
      c[i * ldc + j] = s;
    }
}

}  // namespace detail
HEED_ISA_END
}  // namespace heed
