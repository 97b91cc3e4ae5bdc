// Per-ISA entry points of the compiled library (private to src/). Each compiled ISA has one
// entry translation unit (isa/entry.inc: workspace sizes, the head-dim switch), one linear
// translation unit (isa/linear.inc) and one dense and one sparse kernel translation unit per
// specialized head dim (isa/dense_kernels.inc, isa/sparse_kernels.inc), which explicitly
// instantiate the *_kernels templates below for their D.
//
// They live in heed::isa_entry, outside the per-ISA namespaces (HEED_ISA_BEGIN, heed/config.hpp)
// that hold everything else those translation units compile, so that dispatch.cpp can name
// them; the ISA suffix of each name keeps the ISAs apart. (Not heed::detail: next to
// heed::isa_avx2::detail, a heed::detail would make every `detail::` ambiguous there.)
#pragma once

#include <cstddef>

#include "heed/attention/params.hpp"
#include "heed/attention/sparse_layout.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/linear/linear_dispatch.hpp"

#define HEED_DECLARE_ISA(suffix)                                                                  \
  std::size_t dense_workspace_size_##suffix(const dense_params& p, int threads) noexcept;         \
  status dense_attention_##suffix(const dense_params& p, workspace ws, executor& ex) noexcept;    \
  std::size_t block_sparse_workspace_size_##suffix(                                               \
      const dense_params& p, const block_sparse_layout& l, int threads) noexcept;                 \
  std::size_t vertical_slash_workspace_size_##suffix(                                             \
      const dense_params& p, const vertical_slash_layout& l, int threads) noexcept;               \
  status block_sparse_attention_##suffix(const dense_params& p, const block_sparse_layout& l,     \
                                         workspace ws, executor& ex) noexcept;                    \
  status vertical_slash_attention_##suffix(const dense_params& p, const vertical_slash_layout& l, \
                                           workspace ws, executor& ex) noexcept;                  \
  std::size_t linear_workspace_size_##suffix(const linear_params& p, const feature_map_spec& m,   \
                                             int threads) noexcept;                               \
  status linear_attention_##suffix(const linear_params& p, const feature_map_spec& m,             \
                                   workspace ws, executor& ex) noexcept;                          \
  template <int D>                                                                                \
  status dense_kernels_##suffix(const dense_params& p, workspace ws, executor& ex) noexcept;      \
  template <int D>                                                                                \
  status block_sparse_kernels_##suffix(const dense_params& p, const block_sparse_layout& l,       \
                                       workspace ws, executor& ex) noexcept;                      \
  template <int D>                                                                                \
  status vertical_slash_kernels_##suffix(const dense_params& p, const vertical_slash_layout& l,   \
                                         workspace ws, executor& ex) noexcept;

namespace heed {
namespace isa_entry {
HEED_DECLARE_ISA(sse2)
HEED_DECLARE_ISA(avx2)
HEED_DECLARE_ISA(avx512)
HEED_DECLARE_ISA(neon)
}  // namespace isa_entry
}  // namespace heed
