// The engine against an independent float64 forward pass written here (plain loops, its own
// checkpoint reader), on the first window of tinystories_dev.txt; the tokenizer round trip; a
// budget that never binds gives exactly the full-cache loss.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "heed/core/thread_pool.hpp"
#include "model.hpp"
#include "policies.hpp"
#include "tokenizer.hpp"

#ifndef HEED_DATA_DIR
#error "HEED_DATA_DIR must point at ../shared/data"
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

double engine_loss(const llama2c::model& m, const std::vector<int>& t, const char* policy,
                   std::int64_t budget, int threads) {
  heed::any_policy p;
  EXPECT_TRUE(llama2c::make_policy(policy, &p));
  llama2c::session s;
  EXPECT_EQ(s.init(m, p, budget), heed::status::ok);
  heed::thread_pool_executor ex(threads);
  double loss = 0;
  const int V = m.cfg().vocab_size;
  for (std::size_t pos = 0; pos + 1 < t.size(); ++pos) {
    const float* logits = s.forward(t[pos], int(pos), ex);
    if (!logits) return NAN;
    double mx = -1e300, z = 0;
    for (int i = 0; i < V; ++i) mx = std::max<double>(mx, logits[i]);
    for (int i = 0; i < V; ++i) z += std::exp(double(logits[i]) - mx);
    loss += std::log(z) + mx - double(logits[t[pos + 1]]);
  }
  return loss / double(t.size() - 1);
}

TEST(Llama2c, FullCacheLossMatchesFloat64Reference) {
  llama2c::model m;
  llama2c::tokenizer tok;
  std::string err;
  ASSERT_TRUE(m.load(data_dir + "/stories260K.bin", &err)) << err;
  ASSERT_TRUE(tok.load(data_dir + "/tok512.bin", m.cfg().vocab_size, &err)) << err;
  const auto window = first_window(tok, m.cfg().seq_len);
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

}  // namespace
