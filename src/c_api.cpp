// The C API (include/heed/c/heed.h) over the compiled C++ dense kernel.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "c_api_detail.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/params.hpp"
#include "heed/c/heed.h"
#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"
#include "heed/simd/integer_dot.hpp"
#include "heed/version.hpp"

namespace {

#define HEED_CHECK_STATUS(c, cpp) \
  static_assert(static_cast<int>(c) == static_cast<int>(heed::status::cpp), #c)
HEED_CHECK_STATUS(HEED_STATUS_OK, ok);
HEED_CHECK_STATUS(HEED_STATUS_NULL_POINTER, null_pointer);
HEED_CHECK_STATUS(HEED_STATUS_INVALID_ARGUMENT, invalid_argument);
HEED_CHECK_STATUS(HEED_STATUS_SHAPE_MISMATCH, shape_mismatch);
HEED_CHECK_STATUS(HEED_STATUS_INVALID_STRIDE, invalid_stride);
HEED_CHECK_STATUS(HEED_STATUS_UNSUPPORTED_DTYPE, unsupported_dtype);
HEED_CHECK_STATUS(HEED_STATUS_UNSUPPORTED_HEAD_DIM, unsupported_head_dim);
HEED_CHECK_STATUS(HEED_STATUS_UNSUPPORTED_ISA, unsupported_isa);
HEED_CHECK_STATUS(HEED_STATUS_WORKSPACE_TOO_SMALL, workspace_too_small);
HEED_CHECK_STATUS(HEED_STATUS_OUT_OF_MEMORY, out_of_memory);
#undef HEED_CHECK_STATUS
static_assert(static_cast<int>(HEED_DTYPE_F32) == static_cast<int>(heed::dtype::f32), "dtype");
static_assert(static_cast<int>(HEED_DTYPE_F16) == static_cast<int>(heed::dtype::f16), "dtype");
static_assert(static_cast<int>(HEED_DTYPE_BF16) == static_cast<int>(heed::dtype::bf16), "dtype");

using heed::c_api::c_executor;
using heed::c_api::convert_view;
using heed::c_api::enum_value;
using heed::c_api::to_c;

// The C tap plus its user pointer, behind the C++ prob_tap_fn.
struct tap_bridge {
  heed_prob_tap_fn fn;
  void* user;
  static void call(void* self, int q_head, std::int64_t key_begin, const float* p, std::int64_t n) {
    const auto* b = static_cast<const tap_bridge*>(self);
    b->fn(b->user, q_head, key_begin, p, n);
  }
};

// `bridge` must outlive the returned params when c.prob_tap is set.
heed::dense_params convert_params(const heed_dense_params& c, tap_bridge& bridge) noexcept {
  heed::dense_params p;
  p.q = convert_view<heed::tensor_view>(c.q);
  p.k = convert_view<heed::tensor_view>(c.k);
  p.v = convert_view<heed::tensor_view>(c.v);
  p.o = convert_view<heed::mutable_tensor_view>(c.o);
  p.scale = c.scale;
  p.causal = c.causal != 0;
  p.q_offset = c.q_offset;
  p.lse = c.lse;
  p.entropy = c.entropy;
  p.row_head_stride = c.row_head_stride;
  p.window_left = c.window_left;
  p.softcap = c.softcap;
  p.alibi_slopes = c.alibi_slopes;
  p.sink_logits = c.sink_logits;
  p.ssmax = c.ssmax;
  p.length_scale_base = c.length_scale_base;
  p.length_scale_floor = c.length_scale_floor;
  p.key_bias = c.key_bias;
  p.key_bias_len = c.key_bias_len;
  p.sigmoid = c.sigmoid != 0;
  p.sigmoid_bias = c.sigmoid_bias;
  if (c.prob_tap != nullptr) {
    bridge.fn = c.prob_tap;
    bridge.user = c.prob_tap_user;
    p.prob_tap = &tap_bridge::call;
    p.prob_tap_user = &bridge;
  }
  return p;
}

}  // namespace

extern "C" {

void heed_dense_params_init(heed_dense_params* params) {
  if (params == nullptr) return;
  const heed::dense_params d;
  heed_dense_params c{};
  c.q.dtype = c.k.dtype = c.v.dtype = c.o.dtype = HEED_DTYPE_F32;
  c.scale = d.scale;
  c.causal = d.causal ? 1 : 0;
  c.q_offset = d.q_offset;
  c.row_head_stride = d.row_head_stride;
  c.window_left = d.window_left;
  c.softcap = d.softcap;
  c.length_scale_floor = d.length_scale_floor;
  *params = c;
}

heed_status heed_dense_can_implement(const heed_dense_params* params) {
  if (params == nullptr) return HEED_STATUS_NULL_POINTER;
  tap_bridge bridge{};
  return to_c(heed::dense_can_implement(convert_params(*params, bridge)));
}

size_t heed_dense_workspace_size(const heed_dense_params* params, int threads) {
  if (params == nullptr || threads < 1) return 0;
  tap_bridge bridge{};
  return heed::dense_workspace_size(convert_params(*params, bridge), threads);
}

heed_status heed_dense_attention(const heed_dense_params* params, void* workspace,
                                 size_t workspace_size, const heed_executor* executor) {
  if (params == nullptr) return HEED_STATUS_NULL_POINTER;
  tap_bridge bridge{};
  const heed::dense_params p = convert_params(*params, bridge);
  const heed::workspace ws{workspace, workspace_size};
  if (executor == nullptr) return to_c(heed::dense_attention(p, ws));
  const heed_status e = heed::c_api::check_executor(*executor);
  if (e != HEED_STATUS_OK) return e;
  c_executor ex(*executor);
  return to_c(heed::dense_attention(p, ws, ex));
}

const char* heed_status_string(heed_status status) {
  return heed::status_string(static_cast<heed::status>(enum_value(status)));
}

const char* heed_version(void) {
#define HEED_STR2(x) #x
#define HEED_STR(x) HEED_STR2(x)
  return HEED_STR(HEED_VERSION_MAJOR) "." HEED_STR(HEED_VERSION_MINOR) "." HEED_STR(
      HEED_VERSION_PATCH);
#undef HEED_STR
#undef HEED_STR2
}

int heed_version_number(void) {
  return HEED_VERSION_MAJOR * 10000 + HEED_VERSION_MINOR * 100 + HEED_VERSION_PATCH;
}

int heed_abi_version(void) { return HEED_ABI_VERSION; }

const char* heed_isa_name(void) { return heed::isa_name(heed::best_isa()); }

int heed_set_integer_dot(int on) { return heed::set_integer_dot(on != 0) ? 1 : 0; }
int heed_integer_dot_active(void) {
  return heed::integer_dot_enabled() && heed::cpu_has_avx512_vnni() ? 1 : 0;
}

}  // extern "C"
