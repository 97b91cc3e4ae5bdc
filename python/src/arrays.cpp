// NumPy arrays as heed views, executors, small parsers.
#include <map>
#include <thread>

#include "common.hpp"
#include "heed/core/thread_pool.hpp"

namespace heed {
namespace python {

void fail(status s, const std::string& message) { throw heed_error(s, message); }

void check(status s, const char* context) {
  if (s != status::ok) fail(s, std::string(context) + ": " + status_string(s));
}

bool dtype_from_array(const py::array& a, dtype* out) {
  // Either byte order: a non-native one is copied (input_view).
  const py::dtype t = a.dtype();
  if (t.kind() == 'f' && t.itemsize() == 4) {
    *out = dtype::f32;
  } else if (t.kind() == 'f' && t.itemsize() == 2) {
    *out = dtype::f16;
  } else if (t.kind() == 'u' && t.itemsize() == 2) {
    *out = dtype::bf16;
  } else {
    return false;
  }
  return true;
}

dtype parse_dtype(const std::string& name) {
  if (name == "f32" || name == "float32") return dtype::f32;
  if (name == "f16" || name == "float16") return dtype::f16;
  if (name == "bf16" || name == "bfloat16") return dtype::bf16;
  if (name == "q8") return dtype::q8;
  if (name == "q4") return dtype::q4;
  fail(status::unsupported_dtype, "unknown dtype '" + name + "' (f32, f16, bf16, q8, q4)");
}

py::dtype numpy_dtype(dtype t) {
  switch (t) {
    case dtype::f32:
      return py::dtype("float32");
    case dtype::f16:
      return py::dtype("float16");
    case dtype::bf16:
      return py::dtype("uint16");
    default:
      return py::dtype("uint8");
  }
}

layout parse_layout(const std::string& name) {
  if (name == "shd") return layout::seq_head_dim;
  if (name == "hsd") return layout::head_seq_dim;
  fail(status::invalid_argument, "layout must be 'shd' ([seq, heads, dim]) or 'hsd'");
}

namespace {

std::string shape_string(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The view of a, or false when its strides cannot be expressed.
bool try_view(const py::array& a, dtype t, layout l, tensor_view* out) {
  const py::ssize_t item = a.itemsize();
  if (a.dtype().byteorder() == '>') return false;
  if (a.strides(2) != item && a.shape(2) > 1) return false;
  const int outer = l == layout::seq_head_dim ? 0 : 1;  // the seq axis
  const int inner = 1 - outer;
  for (int ax = 0; ax < 2; ++ax)
    if (a.strides(ax) < 0 || a.strides(ax) % item != 0) return false;
  tensor_view v;
  v.data = a.data();
  v.type = t;
  v.seq = a.shape(outer);
  v.heads = a.shape(inner);
  v.dim = a.shape(2);
  v.seq_stride = a.strides(outer) / item;
  v.head_stride = a.strides(inner) / item;
  // A size-1 axis may carry any stride (NumPy uses 0 or the natural one): give it the natural one
  // so the overlap check does not refuse it.
  if (v.seq == 1) v.seq_stride = v.heads > 1 ? v.head_stride * v.heads : v.dim;
  if (v.heads == 1) v.head_stride = v.seq > 1 ? v.seq_stride * v.seq : v.dim;
  if (v.seq == 1 && v.heads == 1) v.seq_stride = v.head_stride = v.dim;
  if (validate_view(v) == status::invalid_stride) return false;  // overlapping (broadcast) rows
  *out = v;
  return true;
}

}  // namespace

array_view input_view(const py::handle& obj, const char* name, layout l, bool f32_only) {
  if (!py::isinstance<py::array>(obj))
    fail(status::unsupported_dtype, std::string(name) + " must be a NumPy array");
  array_view r;
  r.array = py::reinterpret_borrow<py::array>(obj);
  dtype t;
  if (!dtype_from_array(r.array, &t) || (f32_only && t != dtype::f32))
    fail(status::unsupported_dtype,
         std::string(name) + ": unsupported dtype " + py::str(r.array.dtype()).cast<std::string>() +
             (f32_only ? " (float32 only)"
                       : " (float32, float16, or uint16 holding bfloat16 bits)"));
  if (r.array.ndim() != 3)
    fail(status::shape_mismatch,
         std::string(name) + " must have 3 dimensions, got shape " + shape_string(r.array));
  if (r.array.shape(0) == 0 || r.array.shape(1) == 0 || r.array.shape(2) == 0)
    fail(status::invalid_argument, std::string(name) + " is empty: shape " + shape_string(r.array));
  if (!try_view(r.array, t, l, &r.view)) {
    // Not expressible in place (non-contiguous last dim, negative or odd strides, broadcast
    // rows, big-endian): a C-contiguous native copy.
    r.array =
        py::array(py::dtype(t == dtype::f32   ? "float32"
                            : t == dtype::f16 ? "float16"
                                              : "uint16"),
                  std::vector<py::ssize_t>{r.array.shape(0), r.array.shape(1), r.array.shape(2)});
    py::module_::import("numpy").attr("copyto")(r.array, obj);
    r.copied = true;
    if (!try_view(r.array, t, l, &r.view)) fail(status::invalid_stride, name);
  }
  return r;
}

output_array make_output(std::int64_t seq, std::int64_t heads, std::int64_t dim, layout l) {
  output_array r;
  if (l == layout::seq_head_dim)
    r.array = py::array_t<float>({py::ssize_t(seq), py::ssize_t(heads), py::ssize_t(dim)});
  else
    r.array = py::array_t<float>({py::ssize_t(heads), py::ssize_t(seq), py::ssize_t(dim)});
  r.view = make_view<void*>(r.array.mutable_data(), dtype::f32, seq, heads, dim, l);
  return r;
}

py::array_t<float> per_head(const py::object& obj, std::int64_t n, const char* name) {
  if (obj.is_none()) return py::array_t<float>(0);
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a) {
    PyErr_Clear();
    fail(status::unsupported_dtype, std::string(name) + " must be an array of floats");
  }
  if (a.ndim() != 1 || a.shape(0) != n)
    fail(status::shape_mismatch, std::string(name) + " must have shape (" + std::to_string(n) +
                                     ",), got " + shape_string(a));
  return a;
}

int resolve_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  if (threads > 1024) fail(status::invalid_argument, "threads must be at most 1024");
  return threads;
}

namespace {
struct pool_slot {
  explicit pool_slot(int n) : pool(n) {}
  thread_pool_executor pool;
  std::mutex busy;
};
std::mutex pools_mu;
// Leaked on purpose: joining worker threads from a static destructor at interpreter exit can
// hang; the OS reclaims them.
std::map<int, pool_slot*>& pools() {
  static auto* m = new std::map<int, pool_slot*>();
  return *m;
}
}  // namespace

executor_lease::executor_lease(int threads) {
  threads = resolve_threads(threads);
  if (threads == 1) {
    ex_ = &default_executor();  // serial, stateless
    return;
  }
  pool_slot* slot;
  {
    std::lock_guard<std::mutex> g(pools_mu);
    auto& m = pools();
    auto it = m.find(threads);
    if (it == m.end()) it = m.emplace(threads, new pool_slot(threads)).first;
    slot = it->second;
  }
  lock_ = std::unique_lock<std::mutex>(slot->busy);
  ex_ = &slot->pool;
}

executor_lease::~executor_lease() = default;

}  // namespace python
}  // namespace heed
