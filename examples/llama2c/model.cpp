#include "model.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <memory>

#include "heed/core/thread_pool.hpp"
#include "heed/policy/streaming_llm.hpp"
#include "heed/quant/rotation.hpp"
#include "heed/scoring/q_filters.hpp"

namespace llama2c {
namespace {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix = Eigen::Map<const row_major>;
using mmatrix = Eigen::Map<row_major>;
using vec = Eigen::Map<Eigen::VectorXf>;
using cvec = Eigen::Map<const Eigen::VectorXf>;

// out = W x, W row-major [rows, cols]. Large products split their rows across the executor.
void matvec(float* out, const float* w, const float* x, int rows, int cols,
            heed::executor* ex = nullptr) {
  const int parts = ex && std::int64_t(rows) * cols >= (1 << 16) ? ex->concurrency() : 1;
  if (parts <= 1) {
    vec(out, rows).noalias() = matrix(w, rows, cols) * cvec(x, cols);
    return;
  }
  ex->parallel_for(parts, [&](std::int64_t i, int) {
    const int r0 = int(rows * i / parts), r1 = int(rows * (i + 1) / parts);
    vec(out + r0, r1 - r0).noalias() =
        matrix(w + std::size_t(r0) * cols, r1 - r0, cols) * cvec(x, cols);
  });
}

void rmsnorm(float* out, const float* x, const float* w, int n) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float scale = 1.f / std::sqrt(float(ss / n) + 1e-5f);
  for (int i = 0; i < n; ++i) out[i] = w[i] * (scale * x[i]);
}

// Rotary embedding on pairs (2i, 2i+1) of each head, frequency 10000^(-2i/head_dim).
void rope(float* v, int n, int head_dim, int pos) {
  for (int i = 0; i < n; i += 2) {
    const int hd = i % head_dim;
    const float freq = 1.f / std::pow(10000.f, float(hd) / float(head_dim));
    const float a = float(pos) * freq, c = std::cos(a), s = std::sin(a);
    const float v0 = v[i], v1 = v[i + 1];
    v[i] = v0 * c - v1 * s;
    v[i + 1] = v0 * s + v1 * c;
  }
}

// out [n, rows] = x [n, cols] W^T, W row-major [rows, cols]; the n rows split across the executor.
void matmul(float* out, const float* w, const float* x, int n, int rows, int cols,
            heed::executor& ex) {
  const int parts = std::min(ex.concurrency(), std::max(1, n / 16));
  ex.parallel_for(parts, [&](std::int64_t i, int) {
    const int r0 = int(n * i / parts), r1 = int(n * (i + 1) / parts);
    mmatrix(out + std::size_t(r0) * rows, r1 - r0, rows).noalias() =
        matrix(x + std::size_t(r0) * cols, r1 - r0, cols) * matrix(w, rows, cols).transpose();
  });
}

float* sized(std::vector<float>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

bool model::load(const std::string& path, std::string* error) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) {
    *error = "cannot open model " + path;
    return false;
  }
  std::int32_t h[7];
  if (std::fread(h, 4, 7, f.get()) != 7) {
    *error = "truncated header in " + path;
    return false;
  }
  // A negative vocabulary size marks a separate classifier; INT32_MIN has no positive size (its
  // negation overflowed) and is refused as vocabulary 0.
  const std::int32_t vocab = h[5] == INT32_MIN ? 0 : h[5] < 0 ? -h[5] : h[5];
  cfg_ = {h[0], h[1], h[2], h[3], h[4], vocab, h[6], h[5] > 0};
  const config& c = cfg_;
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.vocab_size <= 0 || c.seq_len <= 0 || c.dim % c.n_heads != 0 ||
      c.n_heads % c.n_kv_heads != 0 || c.head_dim() % 2 != 0) {
    *error = "unsupported or corrupt header in " + path;
    return false;
  }
  std::fseek(f.get(), 0, SEEK_END);
  const long bytes = std::ftell(f.get()) - 28;
  std::fseek(f.get(), 28, SEEK_SET);
  data_.resize(std::size_t(bytes / 4));
  if (std::fread(data_.data(), 4, data_.size(), f.get()) != data_.size()) {
    *error = "cannot read " + path;
    return false;
  }
  // The size the header asks for, first in double: with large dimensions the size_t products
  // below wrap around, and a corrupt header passed the size check with weights beyond the file.
  const double Ld = c.n_layers, Dd = c.dim, KVd = c.kv_dim(), Hd = c.hidden_dim, Vd = c.vocab_size;
  const double need_d = Vd * Dd * (c.shared_classifier ? 1 : 2) + Ld * Dd * 2 + Ld * Dd * Dd * 2 +
                        Ld * KVd * Dd * 2 + Ld * Hd * Dd * 3 + Dd +
                        double(c.seq_len) * c.head_dim();
  if (need_d > double(data_.size())) {
    *error = "checkpoint " + path + " is smaller than its header says";
    return false;
  }
  const std::size_t L = std::size_t(c.n_layers), D = std::size_t(c.dim),
                    KV = std::size_t(c.kv_dim()), H = std::size_t(c.hidden_dim),
                    V = std::size_t(c.vocab_size), hs = std::size_t(c.head_dim());
  std::size_t need = V * D + L * D * 2 + L * D * D * 2 + L * KV * D * 2 + L * H * D * 3 + D +
                     std::size_t(c.seq_len) * hs;  // + freq_cis real/imag (skipped)
  if (!c.shared_classifier) need += V * D;
  if (data_.size() < need) {
    *error = "checkpoint " + path + " is smaller than its header says";
    return false;
  }
  const float* p = data_.data();
  auto take = [&p](std::size_t n) {
    const float* r = p;
    p += n;
    return r;
  };
  embedding = take(V * D);
  rms_att = take(L * D);
  wq = take(L * D * D);
  wk = take(L * KV * D);
  wv = take(L * KV * D);
  wo = take(L * D * D);
  wo_layers.clear();
  for (std::size_t l = 0; l < L; ++l) wo_layers.push_back(wo + l * D * D);
  rms_ffn = take(L * D);
  w1 = take(L * H * D);
  w2 = take(L * D * H);
  w3 = take(L * H * D);
  rms_final = take(D);
  take(std::size_t(c.seq_len) * hs);  // freq_cis_real, freq_cis_imag: recomputed instead
  wcls = c.shared_classifier ? embedding : take(V * D);
  return true;
}

int kv_group(heed::dtype kv, std::int64_t head_dim) {
  if (!heed::is_quantized(kv)) return 0;
  for (int g = heed::quant::default_group; g > heed::quant::min_group; g /= 2)
    if (heed::quant::valid_group(head_dim, g)) return g;
  return heed::quant::min_group;
}

heed::status session::init(const model& m, heed::any_policy policy, std::int64_t budget,
                           const kv_options& kv) {
  m_ = &m;
  const config& c = m.cfg();
  heed::kv_cache_config cc;
  cc.layers = c.n_layers;
  cc.kv_heads = c.n_kv_heads;
  cc.head_dim = c.head_dim();
  if (kv.rotate_keys && !heed::quant::rotatable(c.head_dim()))
    return status_ = heed::status::invalid_argument;
  rotate_ = kv.rotate_keys;
  cc.type = kv.type;
  cc.tiered = kv.high_budget >= 0;
  cc.low_type = kv.low_type;
  cc.group =
      std::max(kv_group(kv.type, cc.head_dim), cc.tiered ? kv_group(kv.low_type, cc.head_dim) : 0);
  cc.reserve = budget > 0 ? budget + 1 : c.seq_len;
  cc.score_channels = 2;
  cc.page_rows = kv.page_rows;
  status_ = cache_.init(cc);
  if (status_ != heed::status::ok) return status_;
  heed::eviction_config ec;
  ec.budget = budget;
  ec.high_budget = kv.high_budget;
  ec.budget_bytes = kv.budget_bytes;
  status_ = loop_.init(&cache_, std::move(policy), ec, c.n_heads);
  if (status_ != heed::status::ok) return status_;
  x_.assign(std::size_t(c.dim), 0.f);
  xb_ = xb2_ = q_ = att_ = x_;
  hb_.assign(std::size_t(c.hidden_dim), 0.f);
  hb2_ = hb_;
  k_.assign(std::size_t(c.kv_dim()), 0.f);
  v_ = k_;
  logits_.assign(std::size_t(c.vocab_size), 0.f);
  return status_;
}

const float* session::forward(int token, int pos, heed::executor& ex) {
  const model& m = *m_;
  const config& c = m.cfg();
  const int D = c.dim, KV = c.kv_dim(), H = c.hidden_dim, hs = c.head_dim();
  if (token < 0 || token >= c.vocab_size || pos < 0) {
    status_ = heed::status::invalid_argument;
    return nullptr;
  }
  std::copy(m.embedding + std::size_t(token) * D, m.embedding + std::size_t(token + 1) * D,
            x_.begin());
  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t lD = std::size_t(l) * D;
    rmsnorm(xb_.data(), x_.data(), m.rms_att + lD, D);
    matvec(q_.data(), m.wq + lD * D, xb_.data(), D, D, &ex);
    matvec(k_.data(), m.wk + std::size_t(l) * KV * D, xb_.data(), KV, D, &ex);
    matvec(v_.data(), m.wv + std::size_t(l) * KV * D, xb_.data(), KV, D, &ex);
    rope(q_.data(), D, hs, pos);
    rope(k_.data(), KV, hs, pos);
    if (rotate_) {
      status_ = heed::quant::hadamard_rotate(q_.data(), c.n_heads, hs, hs);
      if (status_ == heed::status::ok)
        status_ = heed::quant::hadamard_rotate(k_.data(), c.n_kv_heads, hs, hs);
      if (status_ != heed::status::ok) return nullptr;
    }
    if (tap_) tap_[l].insert(tap_[l].end(), q_.begin(), q_.end());
    status_ = loop_.step(l, heed::make_view(q_.data(), 1, c.n_heads, hs),
                         heed::make_view(k_.data(), 1, c.n_kv_heads, hs),
                         heed::make_view(v_.data(), 1, c.n_kv_heads, hs),
                         heed::make_mutable_view(att_.data(), 1, c.n_heads, hs), ex);
    if (status_ != heed::status::ok) return nullptr;
    matvec(xb2_.data(), m.wo + lD * D, att_.data(), D, D, &ex);
    for (int i = 0; i < D; ++i) x_[std::size_t(i)] += xb2_[std::size_t(i)];
    rmsnorm(xb_.data(), x_.data(), m.rms_ffn + lD, D);
    matvec(hb_.data(), m.w1 + std::size_t(l) * H * D, xb_.data(), H, D, &ex);
    matvec(hb2_.data(), m.w3 + std::size_t(l) * H * D, xb_.data(), H, D, &ex);
    for (int i = 0; i < H; ++i) {
      const float a = hb_[std::size_t(i)];
      hb_[std::size_t(i)] = a / (1.f + std::exp(-a)) * hb2_[std::size_t(i)];
    }
    matvec(xb_.data(), m.w2 + std::size_t(l) * D * H, hb_.data(), D, H, &ex);
    for (int i = 0; i < D; ++i) x_[std::size_t(i)] += xb_[std::size_t(i)];
  }
  rmsnorm(x_.data(), x_.data(), m.rms_final, D);
  matvec(logits_.data(), m.wcls, x_.data(), c.vocab_size, D, &ex);
  return logits_.data();
}

const float* session::prefill(const int* tokens, int n, int pos, heed::executor& ex,
                              bool all_logits) {
  const model& m = *m_;
  const config& c = m.cfg();
  if (n < 1 || pos < 0) {
    status_ = heed::status::invalid_argument;
    return nullptr;
  }
  const int D = c.dim, KV = c.kv_dim(), H = c.hidden_dim, hs = c.head_dim(), V = c.vocab_size;
  const std::size_t N = std::size_t(n);
  float* x = sized(px_, N * D);
  float* xb = sized(pxb_, N * D);
  float* xb2 = sized(pxb2_, N * D);
  float* hb = sized(phb_, N * H);
  float* hb2 = sized(phb2_, N * H);
  float* q = sized(pq_, N * D);
  float* k = sized(pk_, N * KV);
  float* v = sized(pv_, N * KV);
  float* att = sized(patt_, N * D);
  for (std::size_t i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) {
      status_ = heed::status::invalid_argument;
      return nullptr;
    }
    std::copy(m.embedding + std::size_t(tokens[i]) * D,
              m.embedding + std::size_t(tokens[i] + 1) * D, x + i * D);
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t lD = std::size_t(l) * D;
    for (std::size_t i = 0; i < N; ++i) rmsnorm(xb + i * D, x + i * D, m.rms_att + lD, D);
    matmul(q, m.wq + lD * D, xb, n, D, D, ex);
    matmul(k, m.wk + std::size_t(l) * KV * D, xb, n, KV, D, ex);
    matmul(v, m.wv + std::size_t(l) * KV * D, xb, n, KV, D, ex);
    for (std::size_t i = 0; i < N; ++i) {
      rope(q + i * D, D, hs, pos + int(i));
      rope(k + i * KV, KV, hs, pos + int(i));
    }
    if (rotate_) {
      status_ = heed::quant::hadamard_rotate(q, std::int64_t(n) * c.n_heads, hs, hs);
      if (status_ == heed::status::ok)
        status_ = heed::quant::hadamard_rotate(k, std::int64_t(n) * c.n_kv_heads, hs, hs);
      if (status_ != heed::status::ok) return nullptr;
    }
    if (tap_) tap_[l].insert(tap_[l].end(), q, q + N * D);
    status_ =
        loop_.step(l, heed::make_view(q, n, c.n_heads, hs), heed::make_view(k, n, c.n_kv_heads, hs),
                   heed::make_view(v, n, c.n_kv_heads, hs),
                   heed::make_mutable_view(att, n, c.n_heads, hs), ex);
    if (status_ != heed::status::ok) return nullptr;
    matmul(xb2, m.wo + lD * D, att, n, D, D, ex);
    for (std::size_t i = 0; i < N * D; ++i) x[i] += xb2[i];
    for (std::size_t i = 0; i < N; ++i) rmsnorm(xb + i * D, x + i * D, m.rms_ffn + lD, D);
    matmul(hb, m.w1 + std::size_t(l) * H * D, xb, n, H, D, ex);
    matmul(hb2, m.w3 + std::size_t(l) * H * D, xb, n, H, D, ex);
    for (std::size_t i = 0; i < N * H; ++i) hb[i] = hb[i] / (1.f + std::exp(-hb[i])) * hb2[i];
    matmul(xb, m.w2 + std::size_t(l) * D * H, hb, n, D, H, ex);
    for (std::size_t i = 0; i < N * D; ++i) x[i] += xb[i];
  }
  if (!all_logits) {  // only the last token's prediction is needed
    rmsnorm(x_.data(), x + (N - 1) * D, m.rms_final, D);
    matvec(logits_.data(), m.wcls, x_.data(), V, D, &ex);
    return logits_.data();
  }
  for (std::size_t i = 0; i < N; ++i) rmsnorm(x + i * D, x + i * D, m.rms_final, D);
  float* logits = sized(plogits_, N * V);
  matmul(logits, m.wcls, x, n, V, D, ex);
  return logits;
}

heed::status calibrate_q_filters(const model& m, const std::vector<int>& tokens,
                                 std::vector<float>* filters, const kv_options& kv) {
  const config& c = m.cfg();
  if (tokens.empty() || filters == nullptr) return heed::status::invalid_argument;
  std::vector<std::vector<float>> taps(std::size_t(c.n_layers));
  heed::thread_pool_executor ex(1);
  for (std::size_t at = 0; at < tokens.size(); at += std::size_t(c.seq_len)) {
    const int n = int(std::min(tokens.size() - at, std::size_t(c.seq_len)));
    session s;
    heed::any_policy none = heed::streaming_llm_policy{};  // budget 0: never evicts
    HEED_RETURN_IF_ERROR(s.init(m, none, 0, kv));
    s.set_query_tap(taps.data());
    if (s.prefill(tokens.data() + at, n, 0, ex) == nullptr) return s.status();
  }
  const std::int64_t hs = c.head_dim();
  std::vector<float> out(std::size_t(c.n_layers) * std::size_t(c.n_kv_heads) * std::size_t(hs));
  std::vector<unsigned char> ws(heed::q_filters_calibration_workspace_size(hs));
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& q = taps[std::size_t(l)];
    const std::int64_t rows = std::int64_t(q.size()) / (std::int64_t(c.n_heads) * hs);
    HEED_RETURN_IF_ERROR(heed::q_filters_calibrate(
        heed::make_view(q.data(), rows, c.n_heads, hs), c.n_kv_heads,
        out.data() + std::size_t(l) * std::size_t(c.n_kv_heads) * std::size_t(hs),
        {ws.data(), ws.size()}));
  }
  *filters = std::move(out);
  return heed::status::ok;
}

double next_token_loss(const float* logits, int vocab, int target) {
  double mx = logits[0], z = 0;
  for (int i = 1; i < vocab; ++i) mx = std::max<double>(mx, logits[i]);
  for (int i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - mx);
  return std::log(z) + mx - double(logits[target]);
}

}  // namespace llama2c
