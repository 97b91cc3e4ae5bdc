// The compiled sparse attention entry points (library heed::heed): run-time ISA dispatch over the
// AVX-512, AVX2 and SSE2 instantiations with the built-in variants (window, softcap, ALiBi, sinks)
// and the row outputs (LSE, entropy) selected from dense_params. Layouts: sparse_layout.hpp.
// Header-only users call block_sparse_attention_t / vertical_slash_attention_t (sparse.hpp).
#pragma once

#include <cstddef>

#include "heed/attention/params.hpp"
#include "heed/attention/sparse_layout.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/simd/arch.hpp"

namespace heed {

// Bytes of workspace for these parameters and `threads` threads; 0 when invalid.
std::size_t block_sparse_workspace_size(const dense_params& p, const block_sparse_layout& l,
                                        int threads, isa i = isa::automatic) noexcept;
std::size_t vertical_slash_workspace_size(const dense_params& p, const vertical_slash_layout& l,
                                          int threads, isa i = isa::automatic) noexcept;

// Attention restricted to the layout's keys. Validates the lists (in range, strictly ascending)
// in O(entries) and returns a status; deterministic for any number of threads.
status block_sparse_attention(const dense_params& p, const block_sparse_layout& l, workspace ws,
                              executor& ex = default_executor(), isa i = isa::automatic) noexcept;
status vertical_slash_attention(const dense_params& p, const vertical_slash_layout& l, workspace ws,
                                executor& ex = default_executor(), isa i = isa::automatic) noexcept;

}  // namespace heed
