// heed._heed: the module definition and the error types.
#include "common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/simd/integer_dot.hpp"
#include "heed/version.hpp"

namespace heed {
namespace python {

namespace {
PyObject* heed_error_type = nullptr;
PyObject* policy_error_type_ = nullptr;

// Raises `type(message)` with .status = the status string.
void raise_with_status(PyObject* type, const char* message, status s) {
  py::object inst = py::reinterpret_steal<py::object>(PyObject_CallFunction(type, "s", message));
  if (!inst) return;  // the call set an error
  inst.attr("status") = py::str(status_string(s));
  PyErr_SetObject(type, inst.ptr());
}
}  // namespace

py::object policy_error_type() { return py::reinterpret_borrow<py::object>(policy_error_type_); }

void register_errors(py::module_& m) {
  // HeedError(ValueError): every failed heed status; .status is heed's status string.
  // PolicyError(HeedError): a custom policy's score() failed (the cause is chained).
  heed_error_type = PyErr_NewExceptionWithDoc(
      "heed._heed.HeedError",
      "A heed call failed; .status is heed's status string (e.g. 'shape mismatch').",
      PyExc_ValueError, nullptr);
  policy_error_type_ = PyErr_NewExceptionWithDoc(
      "heed._heed.PolicyError",
      "A Python policy's score() raised or returned a bad array; the eviction was aborted and "
      "the cache left unchanged. The policy's own exception is the __cause__.",
      heed_error_type, nullptr);
  m.add_object("HeedError", py::handle(heed_error_type));
  m.add_object("PolicyError", py::handle(policy_error_type_));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const heed_error& e) {
      raise_with_status(heed_error_type, e.what(), e.code);
    }
  });
}

}  // namespace python
}  // namespace heed

PYBIND11_MODULE(_heed, m) {
  namespace hp = heed::python;
  m.doc() = "heed: CPU attention kernels, a KV cache and eviction policies (C++ bindings)";
  hp::register_errors(m);
  m.attr("__version__") = std::to_string(HEED_VERSION_MAJOR) + "." +
                          std::to_string(HEED_VERSION_MINOR) + "." +
                          std::to_string(HEED_VERSION_PATCH);
  m.def(
      "best_isa",
      [] {
        switch (heed::best_isa()) {
          case heed::isa::avx512:
            return "avx512";
          case heed::isa::avx2:
            return "avx2";
          case heed::isa::neon:
            return "neon";
          case heed::isa::sse2:
            return "sse2";
          default:
            return "automatic";
        }
      },
      "The instruction set the compiled kernels use on this CPU.");
  m.def(
      "set_integer_dot", [](bool on) { return heed::set_integer_dot(on); }, pybind11::arg("on"),
      "Allow (True, the default) or forbid the 8-bit integer Q K^T of decode over q8 keys on CPUs "
      "with AVX-512 VNNI (the f32 path computes the same logits up to f32 rounding); returns the "
      "previous setting.");
  m.def(
      "integer_dot_active",
      [] { return heed::integer_dot_enabled() && heed::cpu_has_avx512_vnni(); },
      "True when decode over q8 keys uses 8-bit integer dot products on this CPU.");
  m.def(
      "_reads_in_place",
      [](pybind11::object a, std::string layout_name) {
        return !hp::input_view(a, "array", hp::parse_layout(layout_name), false).copied;
      },
      pybind11::arg("array"), pybind11::arg("layout") = "shd",
      "True when heed reads this K/V array in place (no copy); see docs/python.md.");
  hp::bind_attention(m);
  hp::bind_scores(m);
  hp::bind_cache(m);
}
