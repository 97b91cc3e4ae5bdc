// Fuzz target: the eviction loop (include/heed/policy/eviction_loop.hpp) with any registered
// policy (heed::make_policy, include/heed/policy/registry.hpp: every name, its caote_, chunkkv_,
// critical_ and simlayer_ variants,
// parameters by name including the wrappers' -- protect, head_adaptive, with_threshold,
// with_coverage -- and out-of-range ones), any cache (dtype, paged or not, heads, head dim), any
// loop configuration (budget, per-layer budgets, slack, every, seed) and a program of decode
// steps, prefill chunks and evict_to calls over the layers.
// Two loops run the same program side by side, one with the serial executor and one with an
// executor reporting 3 threads (tasks run serially, out of order).
// Checked after every call (docs/policies.md): the status is ok; every (layer, head) holds at most
// budget + slack entries when the layer has a budget (everything appended otherwise; at most the
// target after evict_to); positions are strictly ascending; each kept entry is a row that was
// appended at its position (the stored K and V bytes of that row); a step's own tokens are all
// kept when it fits the budget; the outputs are finite and inside the range of the values (a
// softmax average); and both loops keep the same positions.
#include "heed/policy/eviction_loop.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "heed/cache/kv_cache.hpp"
#include "heed/core/executor.hpp"
#include "heed/policy/registry.hpp"
#include "heed/quant/quantize.hpp"

namespace {

using heed::dtype;
using heed::status;
using heed_fuzz::fuzz_input;
using bytes = std::vector<std::uint8_t>;

// Reports 3 threads, runs the tasks serially in reverse order on rotating thread indices.
class scrambled_executor final : public heed::executor {
 public:
  int concurrency() const noexcept override { return 3; }
  void parallel_for(std::int64_t n, heed::task_fn fn) noexcept override {
    for (std::int64_t i = n - 1; i >= 0; --i) fn(i, int(i % 3));
  }
};

struct param_gen {
  const char* name;
  double lo, hi;
  bool integer;
};

// Parameter names of the registry (docs/policies.md), with ranges a little wider than the valid
// ones so that some values are refused.
const param_gen kParams[] = {
    {"sinks", -1, 8, true},
    {"recent", 0, 8, true},
    {"recent_fraction", 0, 1.2, false},
    {"reduce_max", 0, 1, true},
    {"lambda", 0, 1, false},
    {"tau", 0, 0.2, false},
    {"min_keep", 0, 6, true},
    {"window", 0, 12, true},
    {"pool", 0, 2, true},
    {"pool_kernel", 1, 7, true},
    {"scale", 0, 1, false},
    {"covariance", 0, 1, true},
    {"value_norm", 0, 1, true},
    {"lag", 1, 12, true},
    {"eps", 0, 1e-3, false},
    {"seed", 0, 1000, true},
    {"retrieval", 0, 3, true},
    {"adaptive_floor", 0, 1, false},
    {"threshold_tau", -1, 1, false},
    {"coverage", 0, 1.1, false},
    {"chunk_size", 0, 6, true},
    {"epsilon", 0, 1e-3, false},
    {"first_stage_ratio", 0, 1, false},
    {"lazy_threshold", 0, 1, false},
    {"n_last", 0, 4, true},
    {"n_initial", 0, 4, true},
    {"n_recent", 0, 8, true},
    {"rank", 0, 4, true},
    {"ridge", 0, 0.1, false},
    {"center", 0, 1, true},
    {"sketch", 0, 8, true},
    {"blending", -1, 2, false},
    {"bogus", 0, 1, false},
};

struct slot_history {
  std::map<std::int64_t, std::pair<bytes, bytes>> rows;  // position -> stored K, V bytes
};

struct harness {
  explicit harness(fuzz_input input) : in(input) {}
  fuzz_input in;
  int layers = 1, kv_heads = 1, q_heads = 1;
  std::int64_t d = 8;
  dtype type = dtype::f32;
  int group = 0;
  heed::kv_cache cache[2];
  heed::eviction_loop loop[2];
  heed::serial_executor serial;
  scrambled_executor scrambled;
  std::vector<slot_history> history;
  std::vector<std::int64_t> next_pos;  // per layer
  std::vector<char> manual;            // per layer: evict_to was called
  float vmax = 0.f;
  bool layer_total = false;
  std::vector<std::int64_t> retrieval;  // DuoAttention's retrieval heads: never evicted
  bool busy_keep_all = false;           // simlayer_kv: a layer that is not lazy keeps everything

  heed::executor& ex(int i) { return i == 0 ? static_cast<heed::executor&>(serial) : scrambled; }
  std::size_t row_bytes() const { return cache[0].row_bytes(); }

  bool make_policy(heed::any_policy& out, std::string& name) {
    const int count = heed::policy_count();
    HEED_FUZZ_CHECK(count > 0);
    name = heed::policy_name(int(in.range(0, count - 1)));
    HEED_FUZZ_CHECK(heed::policy_name(count) == nullptr);
    if (in.byte() >= 224) name = "caote_" + name;
    // Issue 22's wrappers by prefix, where the registry takes the combination.
    static const char* const kWraps[] = {"chunkkv_", "critical_", "simlayer_"};
    const int wb = in.byte();
    if (wb >= 208) {
      const std::string wrapped = kWraps[wb % 3] + name;
      heed::any_policy probe;
      if (heed::make_policy(wrapped.c_str(), nullptr, 0, &probe) == status::ok) name = wrapped;
    }
    std::vector<heed::policy_param> params;
    const int n = int(in.range(0, 3));
    for (int i = 0; i < n; ++i) {
      const param_gen& g = in.pick(kParams);
      double v = g.lo + (g.hi - g.lo) * double(in.byte()) / 255.0;
      if (g.integer) v = std::round(v);
      params.push_back({g.name, v});
    }
    const status s = heed::make_policy(name.c_str(), params.data(), params.size(), &out);
    HEED_FUZZ_TRACE("policy %s:", name.c_str());
    for (const auto& p : params) HEED_FUZZ_TRACE(" %s=%g", p.name, p.value);
    HEED_FUZZ_TRACE(" -> status %d\n", int(s));
    // AdaKV's global top-k (adakv, or the adaptive_floor wrapper) budgets the layer's heads
    // together: the bound is then on their total.
    layer_total = name.find("adakv") != std::string::npos;
    busy_keep_all = name.find("simlayer_kv") != std::string::npos;
    if (s == status::ok) {
      for (const auto& p : params) {
        if (std::strcmp(p.name, "adaptive_floor") == 0) layer_total = true;
        if (std::strcmp(p.name, "retrieval") == 0) retrieval.push_back(std::int64_t(p.value));
      }
      return true;
    }
    HEED_FUZZ_CHECK(s == status::invalid_argument);  // refused parameters
    return heed::make_policy(name.c_str(), nullptr, 0, &out) == status::ok;
  }

  bool setup() {
    static const std::int64_t dims[] = {8, 16, 32, 12};
    static const dtype types[] = {dtype::f32, dtype::f16, dtype::bf16, dtype::q8, dtype::q4};
    layers = int(in.range(1, 2));
    kv_heads = int(in.range(1, 2));
    q_heads = kv_heads * int(in.range(1, 2));
    d = in.pick(dims);
    type = in.pick(types);
    group = heed::is_quantized(type) ? (d % 32 == 0 ? 0 : (d % 16 == 0 ? 16 : 8)) : 0;
    if (heed::is_quantized(type) && !heed::quant::valid_group(d, group ? group : 32))
      type = dtype::f32, group = 0;

    heed::any_policy policy;
    std::string name;
    HEED_FUZZ_CHECK(make_policy(policy, name));
    heed::eviction_config cfg;
    cfg.budget = in.range(0, 24);
    if (in.byte() >= 200)
      for (int l = 0; l < layers; ++l) cfg.layer_budgets.push_back(in.range(0, 24));
    cfg.slack = in.flag() ? 0 : in.range(0, 8);
    cfg.every = in.flag() ? 0 : in.range(0, 4);
    cfg.seed = in.u32();

    HEED_FUZZ_TRACE(
        "layers %d kv_heads %d q_heads %d d %lld dtype %d budget %lld slack %lld every %lld",
        layers, kv_heads, q_heads, (long long)d, int(type), (long long)cfg.budget,
        (long long)cfg.slack, (long long)cfg.every);
    for (auto b : cfg.layer_budgets) HEED_FUZZ_TRACE(" layer_budget %lld", (long long)b);
    heed::kv_cache_config cc;
    cc.layers = layers;
    cc.kv_heads = kv_heads;
    cc.head_dim = d;
    cc.type = type;
    cc.group = group;
    cc.score_channels = policy.needs().channels;
    cc.page_rows = in.flag() ? 0 : 16;
    HEED_FUZZ_TRACE(" page_rows %lld\n", (long long)cc.page_rows);
    for (int i = 0; i < 2; ++i) {
      HEED_FUZZ_CHECK(cache[i].init(cc) == status::ok);
      // A valid configuration (no cache limit, enough score channels): init must accept it.
      HEED_FUZZ_CHECK(loop[i].init(&cache[i], policy, cfg, q_heads) == status::ok);
    }
    history.assign(std::size_t(layers * kv_heads), {});
    next_pos.assign(std::size_t(layers), 0);
    manual.assign(std::size_t(layers), 0);
    return true;
  }

  // One step of n tokens on `layer` through both loops, then the checks.
  void step(int layer, std::int64_t n) {
    const int style = in.byte() % 4;
    auto value = [&]() {
      const float x = in.small_float();
      return style == 0 ? x : style == 1 ? float(int(x)) : style == 2 ? x * 0.25f : 0.5f;
    };
    std::vector<float> q(std::size_t(n * q_heads * d)), kf(std::size_t(n * kv_heads * d)),
        vf(kf.size());
    for (auto& x : q) x = value();
    for (auto& x : kf) x = value();
    for (auto& x : vf) x = value();
    // K and V in the cache's own dtype (f16 / bf16 rows copied as they are), or f32 (q8 / q4:
    // quantized by append).
    const dtype in_type = heed::is_quantized(type) ? dtype::f32 : type;
    auto convert = [&](const std::vector<float>& f) {
      bytes b(f.size() * heed::dtype_size(in_type));
      for (std::size_t i = 0; i < f.size(); ++i) {
        if (in_type == dtype::f32) {
          std::memcpy(&b[4 * i], &f[i], 4);
        } else if (in_type == dtype::f16) {
          const heed::f16 y = heed::from_float<heed::f16>(f[i]);
          std::memcpy(&b[2 * i], &y, 2);
        } else {
          const heed::bf16 y = heed::from_float<heed::bf16>(f[i]);
          std::memcpy(&b[2 * i], &y, 2);
        }
      }
      return b;
    };
    const bytes kb = convert(kf), vb = convert(vf);
    for (float x : vf) vmax = std::max(vmax, std::fabs(x));
    heed::tensor_view qv = heed::make_view(q.data(), n, q_heads, d);
    heed::tensor_view kv = heed::make_view<const void*>(kb.data(), in_type, n, kv_heads, d);
    heed::tensor_view vv = heed::make_view<const void*>(vb.data(), in_type, n, kv_heads, d);

    // What the cache must store for each new row.
    const std::size_t row = row_bytes(), in_row = std::size_t(d) * heed::dtype_size(in_type);
    const std::int64_t first = next_pos[std::size_t(layer)];
    for (int h = 0; h < kv_heads; ++h)
      for (std::int64_t i = 0; i < n; ++i) {
        const std::size_t at = std::size_t((i * kv_heads + h)) * in_row;
        bytes k(row), v(row);
        if (heed::is_quantized(type)) {
          const int g = group ? group : 32;
          HEED_FUZZ_CHECK(heed::quant::quantize_row(type, &kf[at / 4], d, g, k.data()) ==
                          status::ok);
          HEED_FUZZ_CHECK(heed::quant::quantize_row(type, &vf[at / 4], d, g, v.data()) ==
                          status::ok);
        } else {
          std::memcpy(k.data(), &kb[at], row);
          std::memcpy(v.data(), &vb[at], row);
        }
        history[std::size_t(layer * kv_heads + h)].rows[first + i] = {k, v};
      }
    next_pos[std::size_t(layer)] += n;

    HEED_FUZZ_TRACE("step layer %d n %lld (positions %lld..)\n", layer, (long long)n,
                    (long long)first);
    std::vector<float> o[2];
    for (int i = 0; i < 2; ++i) {
      o[i].assign(q.size(), -1.f);
      const heed::mutable_tensor_view ov = heed::make_mutable_view(o[i].data(), n, q_heads, d);
      const status s = loop[i].step(layer, qv, kv, vv, ov, ex(i));
      if (s != status::ok) HEED_FUZZ_TRACE("loop %d step: status %d\n", i, int(s));
      HEED_FUZZ_CHECK(s == status::ok);
    }
    // A softmax average of the values (quantized ones may round a little beyond the range).
    const float bound = vmax * (heed::is_quantized(type) ? 1.05f : 1.0001f) + 1e-5f;
    for (int i = 0; i < 2; ++i)
      for (float x : o[i]) HEED_FUZZ_CHECK(std::isfinite(x) && std::fabs(x) <= bound);
    const std::int64_t b = loop[0].budget(layer);
    check(layer, b > 0 ? b + loop[0].config().slack : -1);
    // The step's own tokens stay when they fit the budget (the eviction before the append made
    // room). Not for simlayer_kv: a layer that kept everything while busy is over the budget, and
    // when it turns lazy the eviction after the step keeps its sinks first (budget < n_initial).
    if ((b == 0 || n <= b) && !busy_keep_all)
      for (int h = 0; h < kv_heads; ++h) {
        const std::int64_t len = cache[0].length(layer, h);
        HEED_FUZZ_CHECK(len >= n);
        for (std::int64_t i = 0; i < n; ++i)
          HEED_FUZZ_CHECK(cache[0].positions(layer, h)[len - n + i] == first + i);
      }
  }

  void evict_to(int layer) {
    const std::int64_t target = in.range(0, 20);
    HEED_FUZZ_TRACE("evict_to layer %d target %lld\n", layer, (long long)target);
    for (int i = 0; i < 2; ++i) HEED_FUZZ_CHECK(loop[i].evict_to(layer, target) == status::ok);
    manual[std::size_t(layer)] = 1;
    check(layer, target);
  }

  bool keeps_all(int layer, int h) const {
    if (busy_keep_all) return true;  // whether the layer was lazy is the policy's decision
    return std::find(retrieval.begin(), retrieval.end(), std::int64_t(layer) * kv_heads + h) !=
           retrieval.end();
  }

  // max_len < 0: no bound (no eviction: everything appended is kept).
  void check(int layer, std::int64_t max_len) {
    bytes got_k, got_v;
    // AdaKV: the layer's total within its heads' budgets (a retrieval head's is its length).
    std::int64_t total = 0, bound = 0;
    for (int h = 0; h < kv_heads; ++h) {
      total += cache[0].length(layer, h);
      bound += keeps_all(layer, h) ? cache[0].length(layer, h) : max_len;
      HEED_FUZZ_TRACE("  head %d: %lld entries%s\n", h, (long long)cache[0].length(layer, h),
                      keeps_all(layer, h) ? " (keeps all)" : "");
    }
    if (max_len >= 0 && layer_total) HEED_FUZZ_CHECK(total <= bound);
    for (int h = 0; h < kv_heads; ++h) {
      const std::int64_t len = cache[0].length(layer, h);
      HEED_FUZZ_TRACE("  head %d length %lld:", h, (long long)len);
      for (std::int64_t i = 0; i < len; ++i)
        HEED_FUZZ_TRACE(" %lld", (long long)cache[0].positions(layer, h)[i]);
      HEED_FUZZ_TRACE("\n");
      HEED_FUZZ_CHECK(cache[1].length(layer, h) == len);
      if (max_len >= 0 && !layer_total && !keeps_all(layer, h)) HEED_FUZZ_CHECK(len <= max_len);
      const slot_history& hist = history[std::size_t(layer * kv_heads + h)];
      if (max_len < 0 && !manual[std::size_t(layer)])  // no eviction yet: everything
        HEED_FUZZ_CHECK(len == std::int64_t(hist.rows.size()));
      const std::size_t row = row_bytes();
      got_k.assign(std::max<std::size_t>(1, std::size_t(len) * row), 0);
      got_v.assign(got_k.size(), 0);
      HEED_FUZZ_CHECK(cache[0].gather(layer, h, 0, got_k.data(), got_k.size()) == status::ok);
      HEED_FUZZ_CHECK(cache[0].gather(layer, h, 1, got_v.data(), got_v.size()) == status::ok);
      const std::int64_t* pos = cache[0].positions(layer, h);
      for (std::int64_t i = 0; i < len; ++i) {
        HEED_FUZZ_CHECK(pos[i] == cache[1].positions(layer, h)[i]);
        if (i > 0) HEED_FUZZ_CHECK(pos[i] > pos[i - 1]);
        const auto it = hist.rows.find(pos[i]);
        HEED_FUZZ_CHECK(it != hist.rows.end());
        HEED_FUZZ_CHECK(
            std::memcmp(got_k.data() + std::size_t(i) * row, it->second.first.data(), row) == 0);
        HEED_FUZZ_CHECK(
            std::memcmp(got_v.data() + std::size_t(i) * row, it->second.second.data(), row) == 0);
      }
    }
  }

  void run() {
    if (!setup()) return;
    int calls = 0;
    while (!in.empty() && calls++ < 24) {
      const int layer = int(in.range(0, layers - 1));
      const std::uint8_t kind = in.byte();
      if (kind < 200)
        step(layer, 1);
      else if (kind < 240)
        step(layer, in.range(2, 20));
      else
        evict_to(layer);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness h(fuzz_input(data, size));
  h.run();
  return 0;
}
