// The model's attention output projection W_o as an engine hands it to a policy (CriticalKV,
// critical_kv.hpp; the registry's policy_context).
#pragma once

#include <cstdint>

namespace heed {

// Per layer, as the engine stores it: weights[layer] points to a row-major [hidden][row_stride]
// matrix W with o = W x, x the query heads' attention outputs concatenated ([Hq * d]); query head
// q's slice is columns q d .. q d + d - 1 (HF's o_proj.weight, llama2.c's wo). row_stride 0 means
// Hq * d. weights null: no projection.
struct output_projection {
  const float* const* weights = nullptr;  // [n_layers]
  std::int64_t hidden = 0;
  std::int64_t row_stride = 0;
};

}  // namespace heed
