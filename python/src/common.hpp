// Shared pieces of heed's Python bindings: errors, NumPy array <-> tensor_view, executors.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "heed/core/executor.hpp"
#include "heed/core/status.hpp"
#include "heed/core/tensor_view.hpp"

namespace heed {
namespace python {

namespace py = pybind11;

// Raised in C++ and translated to heed.HeedError (a ValueError) with .status set to heed's status
// string ("shape mismatch", ...).
class heed_error : public std::runtime_error {
 public:
  heed_error(status s, const std::string& what) : std::runtime_error(what), code(s) {}
  status code;
};

// Throws heed_error("<context>: <status string>") unless s is ok.
void check(status s, const char* context);
[[noreturn]] void fail(status s, const std::string& message);

// Registers HeedError / PolicyError and the translator (module.cpp).
void register_errors(py::module_& m);
// heed.PolicyError, raised from a custom policy's exception (module.cpp).
py::object policy_error_type();

// K/V element types from NumPy: float32 -> f32, float16 -> f16, uint16 -> bf16 (the bits).
// Returns false for anything else.
bool dtype_from_array(const py::array& a, dtype* out);
dtype parse_dtype(const std::string& name);  // "f32", "f16", "bf16", "q8", "q4"
py::dtype numpy_dtype(dtype t);              // float32 / float16 / uint16 (bf16) / uint8 (q8, q4)

layout parse_layout(const std::string& name);  // "shd" ([seq, heads, d]) or "hsd"

// A rank-3 NumPy array seen as a heed view. The array is held (so the view stays valid); it is
// the caller's array itself when its strides can be expressed (last dim contiguous, other strides
// non-negative multiples of the element size, rows not overlapping), otherwise a C-contiguous
// copy (`copied` tells which).
struct array_view {
  py::array array;
  tensor_view view;
  bool copied = false;
};

// name: for messages. f32_only: refuse f16 / bf16 (queries).
array_view input_view(const py::handle& obj, const char* name, layout l, bool f32_only);

// A new f32 array of [seq, heads, dim] in layout l and its mutable view.
struct output_array {
  py::array_t<float> array;
  mutable_tensor_view view;
};
output_array make_output(std::int64_t seq, std::int64_t heads, std::int64_t dim, layout l);

// A 1-D float32 copy of a per-head parameter (alibi slopes, sink logits, gates) of length n;
// None gives an empty array.
py::array_t<float> per_head(const py::object& obj, std::int64_t n, const char* name);

// The executor for `threads` threads (0 or less: the machine's), held for one call. Pools are
// created on first use and kept; each serves one call at a time (a second caller waits; call
// without the GIL).
class executor_lease {
 public:
  explicit executor_lease(int threads);
  ~executor_lease();
  executor_lease(const executor_lease&) = delete;
  executor_lease& operator=(const executor_lease&) = delete;
  executor& get() noexcept { return *ex_; }

 private:
  executor* ex_ = nullptr;
  std::unique_lock<std::mutex> lock_;
};
int resolve_threads(int threads);

// Module parts.
void bind_attention(py::module_& m);
void bind_scores(py::module_& m);
void bind_cache(py::module_& m);

}  // namespace python
}  // namespace heed
