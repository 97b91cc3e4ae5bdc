// Helpers shared by the C API's translation units (src/c_api.cpp, src/c_api_cache.cpp): status and
// view conversion, and heed::executor over a heed_executor. Private to the library.
#pragma once

#include <cstdint>
#include <cstring>

#include "heed/c/heed.h"
#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {
namespace c_api {

inline heed_status to_c(status s) noexcept { return static_cast<heed_status>(static_cast<int>(s)); }

// A C enum object may hold any int (C allows it), but loading an out-of-range value as the C++
// enum type is undefined: read such fields through their bytes.
template <class E>
int enum_value(const E& e) noexcept {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// dtype values outside the enum are passed through unchanged: validate() rejects them.
template <class Out, class In>
Out convert_view(const In& t) noexcept {
  Out v;
  v.data = t.data;
  v.type = static_cast<dtype>(enum_value(t.dtype));
  v.seq = t.seq;
  v.heads = t.heads;
  v.dim = t.dim;
  v.seq_stride = t.seq_stride;
  v.head_stride = t.head_stride;
  return v;
}

// heed::executor over a heed_executor.
class c_executor final : public executor {
 public:
  explicit c_executor(const heed_executor& e) noexcept : e_(e) {}
  int concurrency() const noexcept override { return e_.concurrency; }
  void parallel_for(std::int64_t n, task_fn fn) noexcept override {
    if (n <= 0) return;
    e_.parallel_for(e_.ctx, n, &c_executor::run_task, &fn);
  }

 private:
  static void run_task(void* arg, std::int64_t task, int thread) {
    (*static_cast<task_fn*>(arg))(task, thread);
  }
  heed_executor e_;
};

// A C executor's fields, checked before it is used (NULL means serial and is not checked here).
inline heed_status check_executor(const heed_executor& e) noexcept {
  if (e.parallel_for == nullptr) return HEED_STATUS_NULL_POINTER;
  if (e.concurrency < 1) return HEED_STATUS_INVALID_ARGUMENT;
  return HEED_STATUS_OK;
}

}  // namespace c_api
}  // namespace heed
