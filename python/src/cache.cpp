// heed.KVCache, heed.EvictionLoop and policies written in Python.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/policy/eviction_loop.hpp"
#include "heed/policy/registry.hpp"

namespace heed {
namespace python {

namespace {

// A cache and the lock that keeps a step running without the GIL apart from other calls on it.
// The thread that holds it (a step, whose policy callback reads the cache) may still read.
struct py_cache {
  kv_cache cache;
  std::mutex busy;
  std::atomic<std::thread::id> owner{};
};

class cache_guard {
 public:
  cache_guard(py_cache& c, bool write) : c_(c) {
    if (!write && c.owner.load() == std::this_thread::get_id()) return;  // inside our own step
    if (write && c.owner.load() == std::this_thread::get_id())
      fail(status::invalid_argument, "the KVCache cannot be changed from inside a policy callback");
    lock_ = std::unique_lock<std::mutex>(c.busy, std::try_to_lock);
    if (!lock_) fail(status::invalid_argument, "the KVCache is in use by a call in another thread");
  }
  // Marks the calling thread as the owner until destruction (steps).
  void own() {
    c_.owner.store(std::this_thread::get_id());
    owned_ = true;
  }
  ~cache_guard() {
    if (owned_) c_.owner.store(std::thread::id());
  }

 private:
  py_cache& c_;
  std::unique_lock<std::mutex> lock_;
  bool owned_ = false;
};

void check_slot(const py_cache& c, int layer, int head) {
  if (!c.cache.valid(layer, head))
    fail(status::invalid_argument,
         "layer " + std::to_string(layer) + " / head " + std::to_string(head) + " out of range");
}

// The K (which 0) or V (which 1) rows of one (layer, head), copied in the storage dtype
// ([len, head_dim]; quantized caches: uint8 [len, row_bytes]); a head holding low-tier entries
// (a tiered cache after demotion) has two row formats and is read as float32 [len, head_dim]
// (gather_float: dequantized as the kernels read it).
py::array read_rows(py_cache& c, int layer, int head, int which, const char* what) {
  cache_guard g(c, false);
  check_slot(c, layer, head);
  const std::int64_t n = c.cache.length(layer, head);
  if (c.cache.low_length(layer, head) > 0) {
    py::array_t<float> r({py::ssize_t(n), py::ssize_t(c.cache.head_dim())});
    check(c.cache.gather_float(layer, head, which, r.mutable_data(), std::size_t(r.size())), what);
    return r;
  }
  const dtype t = c.cache.type();
  const py::ssize_t cols = py::ssize_t(c.cache.row_bytes() / dtype_size(t));
  py::array r(numpy_dtype(t), std::vector<py::ssize_t>{n, cols});
  check(c.cache.gather(layer, head, which, r.mutable_data(), std::size_t(r.nbytes())), what);
  return r;
}

// A read-only NumPy array over memory that lives only as long as `base` says.
py::array borrowed(py::dtype dt, std::vector<py::ssize_t> shape, std::vector<py::ssize_t> strides,
                   const void* data, const py::handle& base) {
  py::array a(dt, std::move(shape), std::move(strides), data, base);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

// ---- Policies written in Python ----

// What PolicyInput shows a Python policy: per (layer, KV head), arrays over the cache's own
// memory (valid during score() only).
struct policy_view {
  int layer = 0, head = 0, n_layers = 0, kv_heads = 0, q_heads = 0;
  std::int64_t length = 0, budget = 0, step = 0, head_dim = 0;
  std::string dtype_name;
  py::object keys, values, positions, accumulated, queries, last_output;
};

struct python_policy_state {
  py::object obj;
  std::string label;
  score_needs wants{};
  selection_spec select{};
  py::object token;                              // base object of the views handed out
  std::unique_ptr<py::error_already_set> error;  // the failure of the last score(), if any
  std::string error_where;
};

// The C++ side of a Python policy: score() takes the GIL, builds a PolicyInput and calls
// obj.score(input). A Python exception or a bad result is kept and reported as invalid_argument,
// which aborts the eviction before any head changed (evict_layer scores every head first).
struct python_policy : policy_base<python_policy> {
  std::shared_ptr<python_policy_state> st;
  const char* name() const noexcept { return st->label.c_str(); }
  score_needs needs() const noexcept { return st->wants; }
  selection_spec selection(std::int64_t) const noexcept { return st->select; }
  status score(const policy_input& in, int head, float* out, workspace) noexcept {
    py::gil_scoped_acquire gil;
    const std::int64_t len = in.length(head);
    try {
      policy_view v;
      v.layer = in.layer;
      v.head = head;
      v.n_layers = in.n_layers;
      v.kv_heads = in.kv_heads();
      v.q_heads = in.q_heads;
      v.length = len;
      v.budget = in.budget;
      v.step = in.step;
      v.head_dim = in.cache->head_dim();
      // The rows' own type: the storage type, or f32 copies of a tiered head with low entries.
      const tensor_view rows = in.keys(head);
      const dtype t = rows.data != nullptr ? rows.type : in.cache->type();
      v.dtype_name = dtype_name(t);
      const py::handle base = st->token;
      const py::ssize_t item = py::ssize_t(dtype_size(t));
      const py::ssize_t cols = t == in.cache->type()
                                   ? py::ssize_t(in.cache->row_bytes() / dtype_size(t))
                                   : py::ssize_t(in.cache->head_dim());
      for (int which = 0; which < 2; ++which) {
        const tensor_view kv = which == 0 ? in.keys(head) : in.values(head);
        py::object& dst = which == 0 ? v.keys : v.values;
        dst = kv.data == nullptr
                  ? py::none()
                  : py::object(borrowed(numpy_dtype(t), {len, cols}, {kv.seq_stride * item, item},
                                        kv.data, base));
      }
      v.positions = borrowed(py::dtype::of<std::int64_t>(), {len}, {8}, in.positions(head), base);
      v.accumulated =
          st->wants.column_mass && in.cache->config().score_channels > 0
              ? py::object(borrowed(py::dtype::of<float>(), {len}, {4}, in.channel(head, 0), base))
              : py::none();
      if (in.queries.seq > 0) {
        const tensor_view& q = in.queries;
        v.queries = borrowed(py::dtype::of<float>(), {q.seq, q.heads, q.dim},
                             {q.seq_stride * 4, q.head_stride * 4, 4}, q.data, base);
      } else {
        v.queries = py::none();
      }
      if (in.last_output.seq > 0) {
        const tensor_view& o = in.last_output;
        v.last_output = borrowed(py::dtype::of<float>(), {o.heads, o.dim}, {o.head_stride * 4, 4},
                                 o.data, base);
      } else {
        v.last_output = py::none();
      }
      py::object r = st->obj.attr("score")(py::cast(std::move(v)));
      auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(r);
      if (!a) throw py::error_already_set();
      if (a.ndim() != 1 || a.shape(0) != len) {
        const std::string msg = "score() must return " + std::to_string(len) +
                                " scores (one per cache entry), got shape " +
                                py::str(py::getattr(r, "shape", py::str("?"))).cast<std::string>();
        PyErr_SetString(PyExc_ValueError, msg.c_str());
        throw py::error_already_set();
      }
      std::copy(a.data(), a.data() + len, out);
      return status::ok;
    } catch (py::error_already_set& e) {
      st->error.reset(new py::error_already_set(std::move(e)));
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
      st->error.reset(new py::error_already_set());
    }
    st->error_where = "layer " + std::to_string(in.layer) + ", KV head " + std::to_string(head);
    return status::invalid_argument;
  }
};

head_reduce reduce_of(const py::object& o) {
  const std::string r = py::str(o);
  if (r == "mean") return head_reduce::mean;
  if (r == "max") return head_reduce::max;
  fail(status::invalid_argument, "needs['reduce'] must be 'mean' or 'max'");
}

// needs: a dict (column_mass: True / 'sum' / 'decay' / 'last', lambda, reduce, query_window,
// keys, values, last_output) or an iterable of those names (queries: a window of 32).
score_needs parse_needs(const py::object& obj) {
  score_needs n;
  if (obj.is_none()) return n;
  py::dict d;
  if (py::isinstance<py::dict>(obj)) {
    d = py::reinterpret_borrow<py::dict>(obj);
  } else {
    for (auto item : obj) d[item] = py::bool_(true);
  }
  for (auto kv : d) {
    const std::string key = py::str(kv.first);
    const py::object val = py::reinterpret_borrow<py::object>(kv.second);
    if (key == "column_mass") {
      if (py::isinstance<py::str>(val)) {
        const std::string mode = py::str(val);
        n.column_mass = true;
        if (mode == "sum")
          n.accumulate.mode = accumulate_mode::sum;
        else if (mode == "decay")
          n.accumulate.mode = accumulate_mode::decay;
        else if (mode == "last")
          n.accumulate.mode = accumulate_mode::last;
        else
          fail(status::invalid_argument, "needs['column_mass'] must be 'sum', 'decay' or 'last'");
      } else {
        n.column_mass = val.cast<bool>();
      }
    } else if (key == "lambda") {
      n.accumulate.lambda = val.cast<float>();
    } else if (key == "reduce") {
      n.accumulate.reduce = reduce_of(val);
    } else if (key == "query_window" || key == "queries") {
      n.query_window =
          py::isinstance<py::bool_>(val) ? (val.cast<bool>() ? 32 : 0) : val.cast<std::int64_t>();
    } else if (key == "keys" || key == "values" || key == "kv_rows") {
      n.kv_rows = n.kv_rows || val.cast<bool>();
    } else if (key == "last_output") {
      n.last_output = val.cast<bool>();
    } else {
      fail(status::invalid_argument,
           "unknown need '" + key +
               "' (column_mass, lambda, reduce, query_window, keys, values, last_output)");
    }
  }
  if (n.column_mass) n.channels = 1;
  return n;
}

py_cache& cache_of(const py::object& o) {
  try {
    return o.cast<py_cache&>();
  } catch (const py::cast_error&) {
    fail(status::invalid_argument, "cache must be a heed.KVCache");
  }
}

struct py_loop {
  py::object cache_obj;
  py_cache* cache = nullptr;
  eviction_loop loop;
  std::shared_ptr<python_policy_state> custom;
  int q_heads = 0;

  // Raises the custom policy's pending error (PolicyError from the original), else checks s.
  void finish(status s, const char* what) {
    if (custom && custom->error) {
      std::unique_ptr<py::error_already_set> e = std::move(custom->error);
      const std::string msg =
          "policy '" + custom->label + "' failed in score() (" + custom->error_where +
          "); the eviction was aborted and the " +
          "cache left unchanged: " + py::str(e->type().attr("__name__")).cast<std::string>() +
          ": " + py::str(e->value()).cast<std::string>();
      py::raise_from(*e, policy_error_type().ptr(), msg.c_str());
      py::error_already_set raised;  // the PolicyError, with heed's status string as for HeedError
      raised.value().attr("status") = py::str(status_string(s));
      throw raised;
    }
    check(s, what);
  }
};

// A 1-D int32 array of entry indices (NumPy array or sequence; converted only when it is not one
// already).
py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> index_array(
    const py::object& indices) {
  auto a = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>::ensure(indices);
  if (!a || a.ndim() != 1) {
    PyErr_Clear();
    fail(status::invalid_argument, "indices must be a 1-D array of integers");
  }
  return a;
}

std::vector<std::int64_t> int64_list(const py::object& obj) {
  std::vector<std::int64_t> r;
  for (auto x : obj) r.push_back(x.cast<std::int64_t>());
  return r;
}

}  // namespace

void bind_cache(py::module_& m) {
  py::class_<py_cache>(m, "KVCache")
      .def(py::init([](int layers, int kv_heads, std::int64_t head_dim, std::string dt,
                       std::int64_t page_rows, std::int64_t reserve, int score_channels,
                       std::int64_t capacity, int group, bool tiered, std::string low_type) {
             auto c = std::make_unique<py_cache>();
             kv_cache_config cfg;
             cfg.layers = layers;
             cfg.kv_heads = kv_heads;
             cfg.head_dim = head_dim;
             cfg.type = parse_dtype(dt);
             cfg.page_rows = page_rows;
             cfg.reserve = reserve;
             cfg.score_channels = score_channels;
             cfg.capacity = capacity;
             cfg.group = group;
             cfg.tiered = tiered;
             cfg.low_type = parse_dtype(low_type);
             check(c->cache.init(cfg), "KVCache");
             return c;
           }),
           py::arg("layers"), py::arg("kv_heads"), py::arg("head_dim"), py::kw_only(),
           py::arg("dtype") = "f16", py::arg("page_rows") = 0, py::arg("reserve") = 0,
           py::arg("score_channels") = 1, py::arg("capacity") = 0, py::arg("group") = 0,
           py::arg("tiered") = false, py::arg("low_type") = "q4")
      .def_property_readonly("layers", [](py_cache& c) { return c.cache.layers(); })
      .def_property_readonly("kv_heads", [](py_cache& c) { return c.cache.kv_heads(); })
      .def_property_readonly("head_dim", [](py_cache& c) { return c.cache.head_dim(); })
      .def_property_readonly("dtype",
                             [](py_cache& c) { return std::string(dtype_name(c.cache.type())); })
      .def_property_readonly("page_rows", [](py_cache& c) { return c.cache.page_rows(); })
      .def_property_readonly("score_channels",
                             [](py_cache& c) { return c.cache.config().score_channels; })
      .def_property_readonly("tiered", [](py_cache& c) { return c.cache.tiered(); })
      .def_property_readonly(
          "low_type", [](py_cache& c) { return std::string(dtype_name(c.cache.low_type())); })
      .def(
          "append",
          [](py_cache& c, int layer, py::object k, py::object v, py::object positions,
             std::string layout_name) {
            cache_guard g(c, true);
            const layout l = parse_layout(layout_name);
            array_view ka = input_view(k, "k", l, false), va = input_view(v, "v", l, false);
            if (layer < 0 || layer >= c.cache.layers())
              fail(status::invalid_argument, "layer out of range");
            if (ka.view.heads != c.cache.kv_heads() || ka.view.dim != c.cache.head_dim() ||
                va.view.heads != ka.view.heads || va.view.dim != ka.view.dim ||
                va.view.seq != ka.view.seq)
              fail(status::shape_mismatch, "k and v must be [n, kv_heads, head_dim] = [n, " +
                                               std::to_string(c.cache.kv_heads()) + ", " +
                                               std::to_string(c.cache.head_dim()) + "]");
            py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> pos;
            const std::int64_t* pp = nullptr;
            if (!positions.is_none()) {
              pos = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(
                  positions);
              if (!pos || pos.ndim() != 1 || pos.shape(0) != ka.view.seq) {
                PyErr_Clear();
                fail(status::shape_mismatch, "positions must be n integers");
              }
              pp = pos.data();
            }
            check(c.cache.append(layer, ka.view, va.view, pp), "KVCache.append");
          },
          py::arg("layer"), py::arg("k"), py::arg("v"), py::arg("positions") = py::none(),
          py::kw_only(), py::arg("layout") = "shd")
      .def(
          "length",
          [](py_cache& c, int layer, int head) {
            cache_guard g(c, false);
            check_slot(c, layer, head);
            return c.cache.length(layer, head);
          },
          py::arg("layer"), py::arg("head"))
      .def("lengths",
           [](py_cache& c) {
             cache_guard g(c, false);
             py::array_t<std::int64_t> r({c.cache.layers(), c.cache.kv_heads()});
             auto w = r.mutable_unchecked<2>();
             for (int l = 0; l < c.cache.layers(); ++l)
               for (int h = 0; h < c.cache.kv_heads(); ++h) w(l, h) = c.cache.length(l, h);
             return r;
           })
      .def(
          "positions",
          [](py_cache& c, int layer, int head) {
            cache_guard g(c, false);
            check_slot(c, layer, head);
            const std::int64_t n = c.cache.length(layer, head);
            py::array_t<std::int64_t> r(n);
            if (n > 0) std::copy_n(c.cache.positions(layer, head), n, r.mutable_data());
            return r;
          },
          py::arg("layer"), py::arg("head"))
      .def(
          "scores",
          [](py_cache& c, int layer, int head, int channel) {
            cache_guard g(c, false);
            check_slot(c, layer, head);
            if (channel < 0 || channel >= c.cache.config().score_channels)
              fail(status::invalid_argument, "channel out of range");
            const std::int64_t n = c.cache.length(layer, head);
            py::array_t<float> r(n);
            if (n > 0) std::copy_n(c.cache.scores(layer, head, channel), n, r.mutable_data());
            return r;
          },
          py::arg("layer"), py::arg("head"), py::arg("channel") = 0)
      .def(
          "keys",
          [](py_cache& c, int layer, int head) {
            return read_rows(c, layer, head, 0, "KVCache.keys");
          },
          py::arg("layer"), py::arg("head"))
      .def(
          "values",
          [](py_cache& c, int layer, int head) {
            return read_rows(c, layer, head, 1, "KVCache.values");
          },
          py::arg("layer"), py::arg("head"))
      .def(
          "keep",
          [](py_cache& c, int layer, int head, py::object indices) {
            cache_guard g(c, true);
            check_slot(c, layer, head);
            const auto a = index_array(indices);
            check(c.cache.keep(layer, head, a.data(), a.shape(0)), "KVCache.keep");
          },
          py::arg("layer"), py::arg("head"), py::arg("indices"))
      .def(
          "demote",
          [](py_cache& c, int layer, int head, py::object indices) {
            cache_guard g(c, true);
            check_slot(c, layer, head);
            if (!c.cache.tiered())
              fail(status::invalid_argument, "KVCache.demote: the cache is not tiered");
            const auto a = index_array(indices);
            check(c.cache.demote(layer, head, a.data(), a.shape(0)), "KVCache.demote");
          },
          py::arg("layer"), py::arg("head"), py::arg("indices"))
      .def(
          "low_length",
          [](py_cache& c, int layer, int head) {
            cache_guard g(c, false);
            check_slot(c, layer, head);
            return c.cache.low_length(layer, head);
          },
          py::arg("layer"), py::arg("head"))
      .def(
          "tiers",
          [](py_cache& c, int layer, int head) {
            cache_guard g(c, false);
            check_slot(c, layer, head);
            const std::int64_t n = c.cache.length(layer, head);
            py::array_t<std::uint8_t> r(n);
            const std::uint8_t* t = c.cache.tiers(layer, head);
            if (n > 0) {
              if (t != nullptr)
                std::copy_n(t, n, r.mutable_data());
              else
                std::fill_n(r.mutable_data(), n, std::uint8_t(0));
            }
            return r;
          },
          py::arg("layer"), py::arg("head"))
      .def("clear",
           [](py_cache& c) {
             cache_guard g(c, true);
             c.cache.clear();
           })
      .def(
          "clear_layer",
          [](py_cache& c, int layer) {
            cache_guard g(c, true);
            check_slot(c, layer, 0);
            c.cache.clear_layer(layer);
          },
          py::arg("layer"))
      .def(
          "shrink_to_fit",
          [](py_cache& c, std::int64_t slack) {
            cache_guard g(c, true);
            check(c.cache.shrink_to_fit(slack), "KVCache.shrink_to_fit");
          },
          py::arg("slack") = 0)
      .def_property_readonly("bytes_used",
                             [](py_cache& c) {
                               cache_guard g(c, false);
                               return c.cache.bytes_used();
                             })
      .def_property_readonly("bytes_reserved", [](py_cache& c) {
        cache_guard g(c, false);
        return c.cache.bytes_reserved();
      });

  py::class_<policy_view>(m, "PolicyInput",
                          "What a Python policy's score() reads for one (layer, KV head). The "
                          "arrays are read-only views of heed's memory, valid during score() only "
                          "(copy what you keep).")
      .def_readonly("layer", &policy_view::layer)
      .def_readonly("head", &policy_view::head)
      .def_readonly("n_layers", &policy_view::n_layers)
      .def_readonly("kv_heads", &policy_view::kv_heads)
      .def_readonly("q_heads", &policy_view::q_heads)
      .def_readonly("length", &policy_view::length)
      .def_readonly("budget", &policy_view::budget)
      .def_readonly("step", &policy_view::step)
      .def_readonly("head_dim", &policy_view::head_dim)
      .def_readonly("dtype", &policy_view::dtype_name)
      .def_readonly("keys", &policy_view::keys)
      .def_readonly("values", &policy_view::values)
      .def_readonly("positions", &policy_view::positions)
      .def_readonly("accumulated", &policy_view::accumulated)
      .def_readonly("queries", &policy_view::queries)
      .def_readonly("last_output", &policy_view::last_output)
      .def_property_readonly("group", [](const policy_view& v) { return v.q_heads / v.kv_heads; });

  m.def("policy_names", [] {
    py::list r;
    for (int i = 0; i < policy_count(); ++i) r.append(policy_name(i));
    return r;
  });

  py::class_<py_loop>(m, "EvictionLoop")
      .def(py::init([](py::object cache, py::object policy, py::object budget, int q_heads,
                       std::int64_t slack, std::int64_t every, std::uint64_t seed, py::object scale,
                       py::object softcap, py::object layer_budgets, std::int64_t high_budget,
                       std::int64_t budget_bytes, py::kwargs params) {
             if (budget_bytes < 0)
               fail(status::invalid_argument, "EvictionLoop: budget_bytes must be >= 0");
             if (budget.is_none() && budget_bytes == 0)
               fail(status::invalid_argument, "EvictionLoop: give budget (or budget_bytes)");
             auto r = std::make_unique<py_loop>();
             r->cache_obj = cache;
             r->cache = &cache_of(cache);
             r->q_heads = q_heads;
             cache_guard g(*r->cache, true);
             any_policy p;
             if (py::isinstance<py::str>(policy)) {
               const std::string name = py::str(policy);
               std::vector<std::string> names;
               std::vector<double> values;
               for (auto kv : params) {
                 const std::string key = py::str(kv.first);
                 const py::handle val = kv.second;
                 if (py::isinstance<py::list>(val) || py::isinstance<py::tuple>(val)) {
                   for (auto x : val) names.push_back(key), values.push_back(x.cast<double>());
                 } else {
                   names.push_back(key);
                   values.push_back(val.cast<double>());
                 }
               }
               std::vector<policy_param> pp(names.size());
               for (std::size_t i = 0; i < names.size(); ++i) pp[i] = {names[i].c_str(), values[i]};
               const status s = make_policy(name.c_str(), pp.data(), pp.size(), &p);
               if (s != status::ok)
                 fail(s, "policy '" + name + "': " + status_string(s) +
                             " (unknown name or parameter, or a value out of range; names: "
                             "heed.policy_names(), parameters: docs/policies.md)");
             } else {
               if (params.size() > 0)
                 fail(status::invalid_argument,
                      "policy parameters are for built-in policies given by name");
               auto st = std::make_shared<python_policy_state>();
               st->obj = policy;
               st->token = py::capsule(new int(0), [](void* x) { delete static_cast<int*>(x); });
               st->label =
                   py::str(py::getattr(policy, "name", py::type::of(policy).attr("__name__")));
               if (!py::hasattr(policy, "score"))
                 fail(status::invalid_argument, "a policy object needs a score(input) method");
               st->wants = parse_needs(py::getattr(policy, "needs", py::none()));
               const py::object prot = py::getattr(policy, "protect", py::none());
               if (!prot.is_none()) {
                 py::dict d = prot.cast<py::dict>();
                 if (d.contains("sinks"))
                   st->select.protect.n_sink = d["sinks"].cast<std::int64_t>();
                 if (d.contains("recent"))
                   st->select.protect.n_recent = d["recent"].cast<std::int64_t>();
               }
               r->custom = st;
               p = python_policy{{}, st};
             }
             eviction_config cfg;
             if (!budget.is_none()) {
               try {
                 cfg.budget = budget.cast<std::int64_t>();
               } catch (const py::cast_error&) {
                 fail(status::invalid_argument, "EvictionLoop: budget must be an integer");
               }
             }
             cfg.high_budget = high_budget;
             cfg.budget_bytes = std::size_t(budget_bytes);
             cfg.slack = slack;
             cfg.every = every;
             cfg.seed = seed;
             if (!scale.is_none()) cfg.logits.scale = scale.cast<float>();
             if (!softcap.is_none()) cfg.logits.softcap = softcap.cast<float>();
             if (!layer_budgets.is_none()) cfg.layer_budgets = int64_list(layer_budgets);
             const int need = p.needs().channels;
             const status s = r->loop.init(&r->cache->cache, std::move(p), std::move(cfg), q_heads);
             if (s != status::ok) {
               std::string why;
               if (s == status::invalid_argument && r->cache->cache.config().score_channels < need)
                 why = " (the policy needs " + std::to_string(need) + " score channels)";
               fail(s, std::string("EvictionLoop: ") + status_string(s) + why);
             }
             return r;
           }),
           py::arg("cache"), py::arg("policy") = "h2o", py::kw_only(),
           py::arg("budget") = py::none(), py::arg("q_heads"), py::arg("slack") = 0,
           py::arg("every") = 0, py::arg("seed") = 0, py::arg("scale") = py::none(),
           py::arg("softcap") = py::none(), py::arg("layer_budgets") = py::none(),
           py::arg("high_budget") = -1, py::arg("budget_bytes") = 0)
      .def_property_readonly("policy_name",
                             [](py_loop& l) { return std::string(l.loop.policy().name()); })
      .def_property_readonly("cache", [](py_loop& l) { return l.cache_obj; })
      .def_property_readonly("high_budget", [](py_loop& l) { return l.loop.config().high_budget; })
      .def(
          "budget", [](py_loop& l, int layer) { return l.loop.budget(layer); }, py::arg("layer"))
      .def(
          "step",
          [](py_loop& l, int layer, py::object q, py::object k, py::object v, bool return_lse,
             bool return_entropy, int threads) {
            const int t = resolve_threads(threads);
            kv_cache& c = l.cache->cache;
            if (layer < 0 || layer >= c.layers())
              fail(status::invalid_argument, "layer out of range");
            array_view qa = input_view(q, "q", layout::seq_head_dim, true);
            array_view ka = input_view(k, "k", layout::seq_head_dim, false);
            array_view va = input_view(v, "v", layout::seq_head_dim, false);
            const std::int64_t n = qa.view.seq;
            if (qa.view.heads != l.q_heads || qa.view.dim != c.head_dim())
              fail(status::shape_mismatch, "q must be [n, q_heads, head_dim] = [n, " +
                                               std::to_string(l.q_heads) + ", " +
                                               std::to_string(c.head_dim()) + "]");
            for (const tensor_view* x : {&ka.view, &va.view})
              if (x->seq != n || x->heads != c.kv_heads() || x->dim != c.head_dim())
                fail(status::shape_mismatch,
                     "k and v must be [n, kv_heads, head_dim] = [" + std::to_string(n) + ", " +
                         std::to_string(c.kv_heads()) + ", " + std::to_string(c.head_dim()) + "]");
            output_array o = make_output(n, l.q_heads, c.head_dim(), layout::seq_head_dim);
            py::array_t<float> lse, ent;
            if (return_lse) lse = py::array_t<float>({py::ssize_t(l.q_heads), py::ssize_t(n)});
            if (return_entropy) ent = py::array_t<float>({py::ssize_t(l.q_heads), py::ssize_t(n)});
            cache_guard g(*l.cache, true);
            status s;
            {
              py::gil_scoped_release nogil;
              g.own();
              executor_lease ex(t);
              s = l.loop.step(layer, qa.view, ka.view, va.view, o.view, ex.get(),
                              return_lse ? lse.mutable_data() : nullptr,
                              return_entropy ? ent.mutable_data() : nullptr);
            }
            l.finish(s, "EvictionLoop.step");
            if (!return_lse && !return_entropy) return py::object(o.array);
            py::list out;
            out.append(o.array);
            if (return_lse) out.append(lse);
            if (return_entropy) out.append(ent);
            return py::object(py::tuple(out));
          },
          py::arg("layer"), py::arg("q"), py::arg("k"), py::arg("v"), py::kw_only(),
          py::arg("return_lse") = false, py::arg("return_entropy") = false, py::arg("threads") = 1)
      .def(
          "evict_to",
          [](py_loop& l, int layer, std::int64_t target) {
            cache_guard g(*l.cache, true);
            status s;
            {
              py::gil_scoped_release nogil;
              g.own();
              s = l.loop.evict_to(layer, target);
            }
            l.finish(s, "EvictionLoop.evict_to");
          },
          py::arg("layer"), py::arg("target"))
      .def(
          "evict_now",
          [](py_loop& l, int layer) {
            if (!l.cache->cache.valid(layer, 0))
              fail(status::invalid_argument, "layer out of range");
            cache_guard g(*l.cache, true);
            status s;
            {
              py::gil_scoped_release nogil;
              g.own();
              s = l.loop.evict_to(layer, l.loop.budget(layer));
            }
            l.finish(s, "EvictionLoop.evict_now");
          },
          py::arg("layer"));
}

}  // namespace python
}  // namespace heed
