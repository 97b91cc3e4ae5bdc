// The scores of include/heed/scoring (and sink detection) as functions on NumPy arrays. They are
// header-only templates, compiled here for the module's own target (the default xsimd arch).
#include <memory>
#include <string>

#include "common.hpp"
#include "heed/scoring/caote.hpp"
#include "heed/scoring/expected_attention.hpp"
#include "heed/scoring/key_diff.hpp"
#include "heed/scoring/key_norm.hpp"
#include "heed/scoring/lagkv.hpp"
#include "heed/scoring/observation_window.hpp"
#include "heed/sinks/sink_detection.hpp"

namespace heed {
namespace python {

namespace {

head_reduce parse_reduce(const std::string& r) {
  if (r == "mean") return head_reduce::mean;
  if (r == "max") return head_reduce::max;
  fail(status::invalid_argument, "reduce must be 'mean' or 'max'");
}

py::array_t<float> rows(std::int64_t heads, std::int64_t n) {
  return py::array_t<float>({py::ssize_t(heads), py::ssize_t(n)});
}

struct scratch {
  explicit scratch(std::size_t n)
      : bytes(n + workspace_alignment), data(new unsigned char[bytes]) {}
  workspace ws() const noexcept { return {data.get(), bytes}; }
  std::size_t bytes;
  std::unique_ptr<unsigned char[]> data;
};

// A float32 [rows, n] array (forcecast, C order) or an error.
py::array_t<float, py::array::c_style | py::array::forcecast> matrix(const py::object& obj,
                                                                     const char* name) {
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a || a.ndim() != 2) {
    PyErr_Clear();
    fail(status::shape_mismatch, std::string(name) + " must be a 2-D array of floats");
  }
  return a;
}

}  // namespace

void bind_scores(py::module_& m) {
  m.def(
      "observation_window_scores",
      [](py::object q, py::object k, py::object lse, bool causal, py::object q_offset,
         py::object scale, std::string pool, int pool_kernel, std::string reduce,
         py::object outputs, std::string layout_name) {
        const layout l = parse_layout(layout_name);
        array_view qa = input_view(q, "q", l, true), ka = input_view(k, "k", l, false);
        const tensor_view &qv = qa.view, &kv = ka.view;
        if (qv.dim != kv.dim) fail(status::shape_mismatch, "q and k must have the same head_dim");
        if (qv.heads % kv.heads != 0)
          fail(status::shape_mismatch, "q heads must be a multiple of k heads");
        observation_window_options opt;
        opt.causal = causal;
        if (!q_offset.is_none()) opt.q_offset = q_offset.cast<std::int64_t>();
        if (!scale.is_none()) opt.logits.scale = scale.cast<float>();
        if (pool == "none")
          opt.pool = pool_kind::none;
        else if (pool == "max")
          opt.pool = pool_kind::max;
        else if (pool == "avg")
          opt.pool = pool_kind::avg;
        else
          fail(status::invalid_argument, "pool must be 'none', 'max' or 'avg'");
        opt.pool_kernel = pool_kernel;
        opt.reduce = parse_reduce(reduce);
        py::array_t<float, py::array::c_style | py::array::forcecast> lse_a;
        const float* lse_p = nullptr;
        if (!lse.is_none()) {
          lse_a = matrix(lse, "lse");
          if (lse_a.shape(0) != qv.heads || lse_a.shape(1) != qv.seq)
            fail(status::shape_mismatch, "lse must have shape (Hq, W)");
          lse_p = lse_a.data();
        }
        const std::int64_t lk = kv.seq;
        observation_window_outputs out;
        py::dict result;
        for (auto item : outputs) {
          const std::string name = py::str(item);
          if (name == "window") {
            auto a = rows(kv.heads, lk);
            out.window = a.mutable_data();
            result["window"] = a;
          } else if (name == "vertical") {
            auto a = rows(qv.heads, lk);
            out.vertical = a.mutable_data();
            result["vertical"] = a;
          } else if (name == "slash") {
            auto a = rows(qv.heads, lk);
            out.slash = a.mutable_data();
            result["slash"] = a;
          } else if (name == "colmean") {
            auto a = rows(kv.heads, lk);
            out.colmean = a.mutable_data();
            result["colmean"] = a;
          } else {
            fail(status::invalid_argument,
                 "unknown output '" + name + "' (window, vertical, slash, colmean)");
          }
        }
        const std::size_t bytes = observation_window_workspace_size(lk, opt);
        if (bytes == 0) fail(status::invalid_argument, "observation_window_scores: pool_kernel");
        scratch s(bytes);
        status st;
        {
          py::gil_scoped_release nogil;
          st = observation_window_scores(qv, kv, lse_p, qv.seq, opt, out, s.ws());
        }
        check(st, "observation_window_scores");
        return result;
      },
      py::arg("q"), py::arg("k"), py::kw_only(), py::arg("lse") = py::none(),
      py::arg("causal") = true, py::arg("q_offset") = py::none(), py::arg("scale") = py::none(),
      py::arg("pool") = "avg", py::arg("pool_kernel") = 7, py::arg("reduce") = "mean",
      py::arg("outputs") = py::make_tuple("window"), py::arg("layout") = "shd");

  m.def(
      "key_norm_scores",
      [](py::object k, std::string layout_name) {
        array_view ka = input_view(k, "k", parse_layout(layout_name), false);
        auto out = rows(ka.view.heads, ka.view.seq);
        check(key_norm_scores(ka.view, out.mutable_data()), "key_norm_scores");
        return out;
      },
      py::arg("k"), py::kw_only(), py::arg("layout") = "shd");
  m.def(
      "key_diff_scores",
      [](py::object k, std::string layout_name) {
        array_view ka = input_view(k, "k", parse_layout(layout_name), false);
        auto out = rows(ka.view.heads, ka.view.seq);
        const scratch s(key_diff_workspace_size(ka.view.dim));
        check(key_diff_scores(ka.view, out.mutable_data(), 0, s.ws()), "key_diff_scores");
        return out;
      },
      py::arg("k"), py::kw_only(), py::arg("layout") = "shd");
  m.def(
      "value_norm_scores",
      [](py::object v, std::string layout_name) {
        array_view va = input_view(v, "v", parse_layout(layout_name), false);
        auto out = rows(va.view.heads, va.view.seq);
        check(value_norm_scores(va.view, out.mutable_data()), "value_norm_scores");
        return out;
      },
      py::arg("v"), py::kw_only(), py::arg("layout") = "shd");

  m.def(
      "expected_attention_scores",
      [](py::object q, py::object k, py::object v, py::object scale, bool use_covariance,
         bool weight_by_value_norm, std::string reduce, std::string layout_name) {
        const layout l = parse_layout(layout_name);
        array_view qa = input_view(q, "q", l, true), ka = input_view(k, "k", l, false);
        array_view va;
        if (weight_by_value_norm) {
          if (v.is_none()) fail(status::null_pointer, "v is needed with weight_by_value_norm");
          va = input_view(v, "v", l, false);
        }
        expected_attention_options opt;
        if (!scale.is_none()) opt.scale = scale.cast<float>();
        opt.use_covariance = use_covariance;
        opt.weight_by_value_norm = weight_by_value_norm;
        opt.reduce = parse_reduce(reduce);
        auto out = rows(ka.view.heads, ka.view.seq);
        scratch s(expected_attention_workspace_size(qa.view.seq, ka.view.seq, ka.view.dim, opt));
        status st;
        {
          py::gil_scoped_release nogil;
          st = expected_attention_scores(qa.view, ka.view, va.view, opt, out.mutable_data(), 0,
                                         s.ws());
        }
        check(st, "expected_attention_scores");
        return out;
      },
      py::arg("q"), py::arg("k"), py::arg("v") = py::none(), py::kw_only(),
      py::arg("scale") = py::none(), py::arg("use_covariance") = true,
      py::arg("weight_by_value_norm") = true, py::arg("reduce") = "mean",
      py::arg("layout") = "shd");

  m.def(
      "lagkv_scores",
      [](py::object k, py::object v, std::int64_t sinks, std::int64_t lag, float eps,
         std::string layout_name) {
        const layout l = parse_layout(layout_name);
        array_view ka = input_view(k, "k", l, false), va = input_view(v, "v", l, false);
        lagkv_options opt;
        opt.n_sink = sinks;
        opt.lag = lag;
        opt.eps = eps;
        const std::size_t bytes = lagkv_workspace_size(ka.view.dim, opt);
        if (bytes == 0) fail(status::invalid_argument, "lagkv_scores: lag must be >= 1");
        auto out = rows(ka.view.heads, ka.view.seq);
        scratch s(bytes);
        status st;
        {
          py::gil_scoped_release nogil;
          st = lagkv_scores(ka.view, va.view, opt, out.mutable_data(), 0, s.ws());
        }
        check(st, "lagkv_scores");
        return out;
      },
      py::arg("k"), py::arg("v"), py::kw_only(), py::arg("sinks") = 4, py::arg("lag") = 128,
      py::arg("eps") = 1e-6f, py::arg("layout") = "shd");

  m.def(
      "caote_scores",
      [](py::object probs, py::object o, py::object v, std::string reduce,
         std::string layout_name) {
        const layout l = parse_layout(layout_name);
        auto p = matrix(probs, "probs");
        array_view oa = input_view(o, "o", l, true), va = input_view(v, "v", l, false);
        if (p.shape(0) != oa.view.heads || p.shape(1) != va.view.seq)
          fail(status::shape_mismatch, "probs must have shape (Hq, Lk)");
        auto out = rows(va.view.heads, va.view.seq);
        check(caote_scores(p.data(), p.shape(1), oa.view, va.view, parse_reduce(reduce),
                           out.mutable_data()),
              "caote_scores");
        return out;
      },
      py::arg("probs"), py::arg("o"), py::arg("v"), py::kw_only(), py::arg("reduce") = "mean",
      py::arg("layout") = "shd");

  m.def(
      "detect_sinks",
      [](py::object colmean, float threshold) {
        auto c = matrix(colmean, "colmean");
        const int heads = int(c.shape(0));
        const std::int64_t lk = c.shape(1);
        std::vector<std::int64_t> counts(std::size_t(heads) + 1), idx(std::size_t(heads * lk) + 1);
        check(detect_sinks_per_head(c.data(), heads, lk, lk, counts.data(), idx.data(), lk,
                                    threshold),
              "detect_sinks");
        py::list out;
        for (int h = 0; h < heads; ++h) {
          py::array_t<std::int64_t> a(counts[std::size_t(h)]);
          std::copy(idx.begin() + h * lk, idx.begin() + h * lk + counts[std::size_t(h)],
                    a.mutable_data());
          out.append(a);
        }
        return out;
      },
      py::arg("colmean"), py::arg("threshold") = default_sink_threshold);
}

}  // namespace python
}  // namespace heed
