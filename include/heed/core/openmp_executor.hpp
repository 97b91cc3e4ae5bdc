// An OpenMP executor adapter. Include it from a translation unit compiled with OpenMP
// (-fopenmp, CMake: OpenMP::OpenMP_CXX); without OpenMP it runs serially.
#pragma once

#include "heed/core/executor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace heed {

class openmp_executor final : public executor {
 public:
  // threads <= 0 uses omp_get_max_threads().
  explicit openmp_executor(int threads = 0) noexcept {
#if defined(_OPENMP)
    threads_ = threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
    threads_ = 1;
#endif
  }
  int concurrency() const noexcept override { return threads_; }
  void parallel_for(std::int64_t n, task_fn fn) noexcept override {
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (std::int64_t i = 0; i < n; ++i) fn(i, omp_get_thread_num());
#else
    for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
#endif
  }

 private:
  int threads_ = 1;
};

}  // namespace heed
