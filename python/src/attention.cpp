// heed.attention and its sparse and linear siblings.
#include <vector>

#include "common.hpp"
#include "heed/attention/dense_dispatch.hpp"
#include "heed/attention/sparse_dispatch.hpp"
#include "heed/linear/linear_dispatch.hpp"

namespace heed {
namespace python {

namespace {

// Inputs, outputs and options of one dense / sparse call, kept alive until it returns.
struct dense_call {
  array_view q, k, v;
  output_array o;
  py::array_t<float> lse, entropy, alibi, sinks;
  dense_params p;
  layout l = layout::seq_head_dim;
};

dense_call prepare_dense(const py::object& q, const py::object& k, const py::object& v, bool causal,
                         const py::object& window, const py::object& softcap,
                         const py::object& alibi, const py::object& sinks, const py::object& scale,
                         const py::object& q_offset, bool return_lse, bool return_entropy,
                         const std::string& layout_name) {
  dense_call c;
  c.l = parse_layout(layout_name);
  c.q = input_view(q, "q", c.l, /*f32_only=*/true);
  c.k = input_view(k, "k", c.l, false);
  c.v = input_view(v, "v", c.l, false);
  const tensor_view &qv = c.q.view, &kv = c.k.view, &vv = c.v.view;
  if (kv.type != vv.type) fail(status::unsupported_dtype, "k and v must have the same dtype");
  if (kv.dim != qv.dim || vv.dim != qv.dim)
    fail(status::shape_mismatch, "q, k and v must have the same head_dim");
  if (vv.seq != kv.seq || vv.heads != kv.heads)
    fail(status::shape_mismatch, "k and v must have the same shape");
  if (qv.heads % kv.heads != 0)
    fail(status::shape_mismatch, "q heads (" + std::to_string(qv.heads) +
                                     ") must be a multiple of the k / v heads (" +
                                     std::to_string(kv.heads) + ")");
  c.o = make_output(qv.seq, qv.heads, qv.dim, c.l);
  dense_params& p = c.p;
  p.q = qv;
  p.k = kv;
  p.v = vv;
  p.o = c.o.view;
  p.causal = causal;
  if (!scale.is_none()) p.scale = scale.cast<float>();
  if (!q_offset.is_none()) p.q_offset = q_offset.cast<std::int64_t>();
  if (!window.is_none()) {
    p.window_left = window.cast<std::int64_t>();
    if (p.window_left < 0) fail(status::invalid_argument, "window must be >= 0 (None: off)");
  }
  if (!softcap.is_none()) p.softcap = softcap.cast<float>();
  c.alibi = per_head(alibi, qv.heads, "alibi");
  if (c.alibi.size() > 0) p.alibi_slopes = c.alibi.data();
  c.sinks = per_head(sinks, qv.heads, "sinks");
  if (c.sinks.size() > 0) p.sink_logits = c.sinks.data();
  if (return_lse) {
    c.lse = py::array_t<float>({py::ssize_t(qv.heads), py::ssize_t(qv.seq)});
    p.lse = c.lse.mutable_data();
  }
  if (return_entropy) {
    c.entropy = py::array_t<float>({py::ssize_t(qv.heads), py::ssize_t(qv.seq)});
    p.entropy = c.entropy.mutable_data();
  }
  p.row_head_stride = qv.seq;
  check(validate_dense(p), "attention");
  return c;
}

py::object results(dense_call& c, bool return_lse, bool return_entropy) {
  if (!return_lse && !return_entropy) return std::move(c.o.array);
  py::list out;
  out.append(c.o.array);
  if (return_lse) out.append(c.lse);
  if (return_entropy) out.append(c.entropy);
  return py::tuple(out);
}

// Runs fn(workspace, executor) without the GIL, with a workspace of `bytes`.
template <class F>
void run_kernel(int threads, std::size_t bytes, const char* what, F&& fn) {
  if (bytes == 0) fail(status::invalid_argument, std::string(what) + ": invalid parameters");
  std::unique_ptr<unsigned char[]> ws(new unsigned char[bytes]);  // not zeroed
  status s;
  {
    py::gil_scoped_release nogil;
    executor_lease ex(threads);
    s = fn(workspace{ws.get(), bytes}, ex.get());
  }
  check(s, what);
}

#define HEED_DENSE_ARGS                                                                            \
  py::arg("q"), py::arg("k"), py::arg("v"), py::kw_only(),                                         \
      py::arg("causal") = true, py::arg("window") = py::none(), py::arg("softcap") = py::none(),   \
      py::arg("alibi") = py::none(), py::arg("sinks") = py::none(), py::arg("scale") = py::none(), \
      py::arg("q_offset") = py::none(), py::arg("return_lse") = false,                             \
      py::arg("return_entropy") = false, py::arg("threads") = 1, py::arg("layout") = "shd"

std::vector<std::int32_t> int32_list(const py::object& obj, const char* name) {
  auto a = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a || a.ndim() != 1) {
    PyErr_Clear();
    fail(status::invalid_argument, std::string(name) + " must be a 1-D array of integers");
  }
  return std::vector<std::int32_t>(a.data(), a.data() + a.size());
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention",
      [](py::object q, py::object k, py::object v, bool causal, py::object window,
         py::object softcap, py::object alibi, py::object sinks, py::object scale,
         py::object q_offset, bool return_lse, bool return_entropy, int threads,
         std::string layout_name) {
        const int t = resolve_threads(threads);
        dense_call c = prepare_dense(q, k, v, causal, window, softcap, alibi, sinks, scale,
                                     q_offset, return_lse, return_entropy, layout_name);
        run_kernel(t, dense_workspace_size(c.p, t), "attention",
                   [&](workspace ws, executor& ex) { return dense_attention(c.p, ws, ex); });
        return results(c, return_lse, return_entropy);
      },
      HEED_DENSE_ARGS);

  m.def(
      "block_sparse_attention",
      [](py::object q, py::object k, py::object v, py::object row_ptr, py::object col_idx,
         int block_q, int block_k, bool force_sink, bool force_diagonal, bool causal,
         py::object window, py::object softcap, py::object alibi, py::object sinks,
         py::object scale, py::object q_offset, bool return_lse, bool return_entropy, int threads,
         std::string layout_name) {
        const int t = resolve_threads(threads);
        dense_call c = prepare_dense(q, k, v, causal, window, softcap, alibi, sinks, scale,
                                     q_offset, return_lse, return_entropy, layout_name);
        const std::vector<std::int32_t> rp = int32_list(row_ptr, "row_ptr");
        const std::vector<std::int32_t> ci = int32_list(col_idx, "col_idx");
        block_sparse_layout l;
        l.block_q = block_q;
        l.block_k = block_k;
        l.force_sink = force_sink;
        l.force_diagonal = force_diagonal;
        if (!valid_sparse_block(block_q) || !valid_sparse_block(block_k))
          fail(status::invalid_argument, "block_q and block_k must be 32, 64, 128 or 256");
        const std::int64_t rows = c.p.q_heads() * ceil_div(c.p.q_len(), block_q);
        if (std::int64_t(rp.size()) != rows + 1)
          fail(status::shape_mismatch, "row_ptr must have Hq * ceil(Lq / block_q) + 1 = " +
                                           std::to_string(rows + 1) + " entries");
        if (rp.back() != std::int32_t(ci.size()))
          fail(status::shape_mismatch, "col_idx must have row_ptr[-1] entries");
        l.row_ptr = rp.data();
        l.col_idx = ci.empty() ? nullptr : ci.data();
        check(validate(c.p, l), "block_sparse_attention");
        run_kernel(
            t, block_sparse_workspace_size(c.p, l, t), "block_sparse_attention",
            [&](workspace ws, executor& ex) { return block_sparse_attention(c.p, l, ws, ex); });
        return results(c, return_lse, return_entropy);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("row_ptr"), py::arg("col_idx"),
      py::kw_only(), py::arg("block_q") = 64, py::arg("block_k") = 64, py::arg("force_sink") = true,
      py::arg("force_diagonal") = true, py::arg("causal") = true, py::arg("window") = py::none(),
      py::arg("softcap") = py::none(), py::arg("alibi") = py::none(), py::arg("sinks") = py::none(),
      py::arg("scale") = py::none(), py::arg("q_offset") = py::none(),
      py::arg("return_lse") = false, py::arg("return_entropy") = false, py::arg("threads") = 1,
      py::arg("layout") = "shd");

  m.def(
      "vertical_slash_attention",
      [](py::object q, py::object k, py::object v, py::object v_ptr, py::object v_idx,
         py::object s_ptr, py::object s_off, bool causal, py::object window, py::object softcap,
         py::object alibi, py::object sinks, py::object scale, py::object q_offset, bool return_lse,
         bool return_entropy, int threads, std::string layout_name) {
        const int t = resolve_threads(threads);
        dense_call c = prepare_dense(q, k, v, causal, window, softcap, alibi, sinks, scale,
                                     q_offset, return_lse, return_entropy, layout_name);
        const std::vector<std::int32_t> vp = int32_list(v_ptr, "v_ptr"),
                                        vi = int32_list(v_idx, "v_idx"),
                                        sp = int32_list(s_ptr, "s_ptr"),
                                        so = int32_list(s_off, "s_off");
        const std::size_t hq = std::size_t(c.p.q_heads());
        if (vp.size() != hq + 1 || sp.size() != hq + 1)
          fail(status::shape_mismatch, "v_ptr and s_ptr must have Hq + 1 entries");
        if (vp.back() != std::int32_t(vi.size()) || sp.back() != std::int32_t(so.size()))
          fail(status::shape_mismatch, "v_idx / s_off must have v_ptr[-1] / s_ptr[-1] entries");
        vertical_slash_layout l;
        l.v_ptr = vp.data();
        l.v_idx = vi.empty() ? nullptr : vi.data();
        l.s_ptr = sp.data();
        l.s_off = so.empty() ? nullptr : so.data();
        check(validate(c.p, l), "vertical_slash_attention");
        run_kernel(
            t, vertical_slash_workspace_size(c.p, l, t), "vertical_slash_attention",
            [&](workspace ws, executor& ex) { return vertical_slash_attention(c.p, l, ws, ex); });
        return results(c, return_lse, return_entropy);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("v_ptr"), py::arg("v_idx"),
      py::arg("s_ptr"), py::arg("s_off"), py::kw_only(), py::arg("causal") = true,
      py::arg("window") = py::none(), py::arg("softcap") = py::none(),
      py::arg("alibi") = py::none(), py::arg("sinks") = py::none(), py::arg("scale") = py::none(),
      py::arg("q_offset") = py::none(), py::arg("return_lse") = false,
      py::arg("return_entropy") = false, py::arg("threads") = 1, py::arg("layout") = "shd");

  m.def(
      "linear_attention",
      [](py::object q, py::object k, py::object v, bool causal, std::string feature_map,
         std::string norm, float eps, py::object gates, int chunk, py::object state,
         bool return_state, int threads, std::string layout_name) {
        const int t = resolve_threads(threads);
        const layout lay = parse_layout(layout_name);
        array_view qa = input_view(q, "q", lay, true), ka = input_view(k, "k", lay, false),
                   va = input_view(v, "v", lay, false);
        if (ka.view.type != va.view.type)
          fail(status::unsupported_dtype, "k and v must have the same dtype");
        feature_map_spec map;
        if (feature_map == "identity")
          map.kind = feature_map_kind::identity;
        else if (feature_map == "elu_plus_one")
          map.kind = feature_map_kind::elu_plus_one;
        else if (feature_map == "relu")
          map.kind = feature_map_kind::relu;
        else
          fail(status::invalid_argument,
               "feature_map must be 'identity', 'elu_plus_one' or 'relu'");
        linear_params p;
        p.q = qa.view;
        p.k = ka.view;
        p.v = va.view;
        output_array o = make_output(qa.view.seq, qa.view.heads, va.view.dim, lay);
        p.o = o.view;
        p.causal = causal;
        if (norm == "none")
          p.norm = linear_norm::none;
        else if (norm == "sum")
          p.norm = linear_norm::sum;
        else if (norm == "mala")
          p.norm = linear_norm::mala;
        else
          fail(status::invalid_argument, "norm must be 'none', 'sum' or 'mala'");
        p.eps = eps;
        p.chunk = chunk;
        py::array_t<float> g = per_head(gates, ka.view.heads, "gates");
        if (g.size() > 0) p.gates = g.data();
        const std::int64_t f = linear_feature_dim(map, qa.view.dim);
        const std::int64_t floats = linear_state_floats(f, va.view.dim);
        py::array_t<float> st;
        if (!state.is_none()) {
          auto in = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(state);
          if (!in || in.ndim() != 2 || in.shape(0) != ka.view.heads || in.shape(1) != floats) {
            PyErr_Clear();
            fail(status::shape_mismatch,
                 "state must be a float32 array of shape (Hkv, " + std::to_string(floats) + ")");
          }
          st = py::array_t<float>({py::ssize_t(ka.view.heads), py::ssize_t(floats)});
          std::copy(in.data(), in.data() + in.size(), st.mutable_data());
          p.state_in = true;
        } else if (return_state) {
          st = py::array_t<float>({py::ssize_t(ka.view.heads), py::ssize_t(floats)});
        }
        if (st.size() > 0) p.state = st.mutable_data();
        check(validate(p), "linear_attention");
        run_kernel(t, linear_workspace_size(p, map, t), "linear_attention",
                   [&](workspace ws, executor& ex) { return linear_attention(p, map, ws, ex); });
        if (return_state) return py::object(py::make_tuple(o.array, st));
        return py::object(o.array);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::kw_only(), py::arg("causal") = true,
      py::arg("feature_map") = "elu_plus_one", py::arg("norm") = "sum", py::arg("eps") = 1e-6f,
      py::arg("gates") = py::none(), py::arg("chunk") = 64, py::arg("state") = py::none(),
      py::arg("return_state") = false, py::arg("threads") = 1, py::arg("layout") = "shd");
}

}  // namespace python
}  // namespace heed
