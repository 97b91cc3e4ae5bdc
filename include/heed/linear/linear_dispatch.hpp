// The compiled linear-attention entry points (library heed::heed): run-time ISA dispatch over the
// AVX-512, AVX2 and SSE2 instantiations of linear_attention_t with a built-in feature map chosen
// at run time. Header-only users (and custom feature maps) call linear_attention_t directly.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/linear/linear_params.hpp"
#include "heed/simd/arch.hpp"

namespace heed {

enum class feature_map_kind : int {
  identity = 0,
  elu_plus_one = 1,
  relu = 2,
  favor_plus = 3,
  hedgehog = 4
};

// A built-in feature map and its parameters (see heed/linear/feature_maps.hpp):
//   favor_plus: w = features transposed [d][m] (make_favor_features), m, head_stride;
//   hedgehog:   w / b for queries, wk / bk for keys (null: the query ones), m, head_stride.
struct feature_map_spec {
  feature_map_kind kind = feature_map_kind::elu_plus_one;
  const float* w = nullptr;
  const float* b = nullptr;
  const float* wk = nullptr;
  const float* bk = nullptr;
  std::int64_t m = 0;
  std::int64_t head_stride = 0;
};

// Feature dim F of the map for head dim d (0 when the spec is invalid).
std::int64_t linear_feature_dim(const feature_map_spec& map, std::int64_t head_dim) noexcept;

// Bytes of workspace for `threads` threads; 0 when the parameters are invalid.
std::size_t linear_workspace_size(const linear_params& p, const feature_map_spec& map, int threads,
                                  isa i = isa::automatic) noexcept;

// Prefill (causal chunked or non-causal) or, with one token and p.state_in, a decode step.
status linear_attention(const linear_params& p, const feature_map_spec& map, workspace ws,
                        executor& ex = default_executor(), isa i = isa::automatic) noexcept;

}  // namespace heed
