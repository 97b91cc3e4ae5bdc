// The compiled dense attention entry points (library heed::heed): run-time ISA dispatch over the
// AVX-512, AVX2 and SSE2 instantiations, with the built-in variants and observers selected from
// dense_params. Header-only users call dense_attention_t<Arch, Variant, Observer> instead.
#pragma once

#include <cstddef>

#include "heed/attention/params.hpp"
#include "heed/core/executor.hpp"
#include "heed/core/workspace.hpp"
#include "heed/simd/arch.hpp"

namespace heed {

// True when `i` was compiled into the library and this CPU (and OS) supports it.
// isa::automatic is always available.
bool isa_available(isa i) noexcept;

// The ISA that isa::automatic resolves to on this machine.
isa best_isa() noexcept;

// ok when the kernel can run these parameters (any head_dim >= 1 can: 64, 80, 96, 128 and 256
// are specialized, others take the generic path).
status dense_can_implement(const dense_params& p) noexcept;

// Bytes of workspace dense_attention() needs for these parameters with `threads` threads
// (executor::concurrency()). 0 when the parameters are invalid.
std::size_t dense_workspace_size(const dense_params& p, int threads,
                                 isa i = isa::automatic) noexcept;

// Runs attention: prefill (Lq > 1, tiled flash kernel) or decode (Lq == 1, split-KV over the
// executor with all query heads of a KV head served by one pass over it). Deterministic: the
// result does not depend on the executor's number of threads.
status dense_attention(const dense_params& p, workspace ws, executor& ex = default_executor(),
                       isa i = isa::automatic) noexcept;

}  // namespace heed
