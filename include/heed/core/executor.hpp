// Executor injection: kernels run their tasks through an executor the caller provides.
//
// parallel_for(n, fn) calls fn(task, thread) once for each task in [0, n), with
// thread in [0, concurrency()). Kernels size per-thread scratch by concurrency() and never
// let results depend on which thread ran which task.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "heed/config.hpp"

namespace heed {

// A non-owning reference to a callable void(int64_t task, int thread).
class task_fn {
 public:
  template <class F, class = std::enable_if_t<!std::is_same<std::decay_t<F>, task_fn>::value>>
  HEED_FORCE_INLINE task_fn(F&& f) noexcept  // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, std::int64_t task, int thread) {
          (*static_cast<std::remove_reference_t<F>*>(o))(task, thread);
        }) {}
  HEED_FORCE_INLINE void operator()(std::int64_t task, int thread) const {
    call_(obj_, task, thread);
  }

 private:
  void* obj_;
  void (*call_)(void*, std::int64_t, int);
};

class executor {
 public:
  virtual ~executor() = default;
  // Largest thread index + 1 that parallel_for may pass to fn.
  virtual int concurrency() const noexcept = 0;
  // Runs fn for every task in [0, n) and returns when all are done.
  virtual void parallel_for(std::int64_t n, task_fn fn) noexcept = 0;
};

HEED_ISA_BEGIN
// Runs every task on the calling thread, in order. The default.
class serial_executor final : public executor {
 public:
  int concurrency() const noexcept override { return 1; }
  void parallel_for(std::int64_t n, task_fn fn) noexcept override {
    for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
  }
};

inline serial_executor& default_executor() noexcept {
  static serial_executor e;
  return e;
}
HEED_ISA_END

}  // namespace heed
