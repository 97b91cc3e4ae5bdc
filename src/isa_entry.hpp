// Per-ISA entry points of the compiled library (private to src/).
#pragma once

#include <cstddef>

#include "heed/attention/params.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"

#define HEED_DECLARE_ISA(suffix)                                                          \
  std::size_t dense_workspace_size_##suffix(const dense_params& p, int threads) noexcept; \
  status dense_attention_##suffix(const dense_params& p, workspace ws, executor& ex) noexcept;

namespace heed {
namespace detail {
HEED_DECLARE_ISA(sse2)
HEED_DECLARE_ISA(avx2)
HEED_DECLARE_ISA(avx512)
}  // namespace detail
}  // namespace heed
