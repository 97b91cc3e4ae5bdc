// Fuzz target: the llama2.c checkpoint and tokenizer readers (examples/llama2c/model.cpp,
// tokenizer.cpp; compiled into this target), fed through a temporary file.
//
// The first input byte picks the reader. Checkpoint: a header of seven int32 (any values, or
// small valid ones drawn from the input) then float32 weights, whole or cut short. Checked: a
// refused file says why; an accepted one has a valid header (positive sizes, dim divisible by
// n_heads, n_heads by n_kv_heads, an even head dim) and at least as many floats as its header
// needs (computed here without overflow), and every weight pointer lies inside it (the first and
// last float of each are read: ASan sees any outside the buffer).
// Tokenizer: a vocabulary size and a tokenizer.bin body (max_len, then per token a float score,
// an int32 length and the bytes). Checked: a refused file says why; an accepted one has the
// vocabulary size asked for; encode() of input text gives ids inside the vocabulary (BOS / EOS
// included) and decode() of each returns without reading out of bounds.
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "model.hpp"
#include "tokenizer.hpp"

namespace {

using heed_fuzz::fuzz_input;

// One temporary file per process, written for every input and removed once read.
const std::string& temp_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/heed_fuzz_llama2c_" +
           std::to_string(long(getpid())) + ".bin";
  }();
  return path;
}

void write_file(const std::vector<std::uint8_t>& bytes) {
  std::FILE* f = std::fopen(temp_path().c_str(), "wb");
  HEED_FUZZ_CHECK(f != nullptr);
  if (!bytes.empty())
    HEED_FUZZ_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
  HEED_FUZZ_CHECK(std::fclose(f) == 0);
}

void put_i32(std::vector<std::uint8_t>& b, std::int32_t x) {
  std::uint8_t c[4];
  std::memcpy(c, &x, 4);
  b.insert(b.end(), c, c + 4);
}

void checkpoint(fuzz_input& in) {
  std::vector<std::uint8_t> file;
  std::int32_t h[7];
  const bool raw = in.flag();
  if (raw) {
    for (auto& x : h) x = std::int32_t(in.u32());
  } else {  // small, mostly valid: dim, hidden, layers, heads, kv_heads, +-vocab, seq_len
    const std::int32_t heads = std::int32_t(in.range(1, 4));
    h[3] = heads;
    h[4] = heads % 2 == 0 && in.flag() ? heads / 2 : heads;
    h[0] = heads * 2 * std::int32_t(in.range(1, 4));
    h[1] = std::int32_t(in.range(1, 16));
    h[2] = std::int32_t(in.range(1, 2));
    h[5] = std::int32_t(in.range(1, 16)) * (in.flag() ? -1 : 1);
    h[6] = std::int32_t(in.range(1, 8));
    if (in.byte() >= 200) {  // one odd value
      static const std::int32_t odd[] = {INT32_MIN, INT32_MAX, 1 << 30, 1 << 16, 46342, 0, -1, -2};
      const std::int64_t at = in.range(0, 6);
      h[at] = in.flag() ? in.pick(odd) : std::int32_t(in.u32());
    }
  }
  for (std::int32_t x : h) put_i32(file, x);
  // The weights: as many floats as the input asks (often exactly what the header needs).
  std::int64_t floats = in.range(0, 4000);
  for (std::int64_t i = 0; i < floats; ++i) {
    const float x = float(i % 7) * 0.125f;
    std::uint8_t c[4];
    std::memcpy(c, &x, 4);
    file.insert(file.end(), c, c + 4);
  }
  if (in.flag() && !file.empty()) file.resize(file.size() - std::size_t(in.range(0, 3)));
  write_file(file);

  llama2c::model m;
  std::string error;
  const bool ok = m.load(temp_path(), &error);
  std::remove(temp_path().c_str());
  HEED_FUZZ_TRACE("checkpoint of %zu bytes: %s\n", file.size(), ok ? "loaded" : error.c_str());
  if (!ok) {
    HEED_FUZZ_CHECK(!error.empty());
    return;
  }
  const llama2c::config& c = m.cfg();
  HEED_FUZZ_CHECK(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.n_heads > 0 &&
                  c.n_kv_heads > 0 && c.vocab_size > 0 && c.seq_len > 0);
  HEED_FUZZ_CHECK(c.dim % c.n_heads == 0 && c.n_heads % c.n_kv_heads == 0 && c.head_dim() % 2 == 0);
  // The floats the header needs, in 128-bit arithmetic.
  using wide = __int128;
  const wide L = c.n_layers, D = c.dim, KV = wide(c.head_dim()) * c.n_kv_heads, H = c.hidden_dim,
             V = c.vocab_size, S = c.seq_len, hs = c.head_dim();
  const wide need = V * D + L * D * 2 + L * D * D * 2 + L * KV * D * 2 + L * H * D * 3 + D +
                    S * hs + (c.shared_classifier ? 0 : V * D);
  const wide have = wide(file.size() - 28) / 4;
  HEED_FUZZ_CHECK(need <= have);
  // Every weight: its first and last float.
  const struct {
    const float* p;
    wide n;
  } weights[] = {{m.embedding, V * D}, {m.rms_att, L * D}, {m.wq, L * D * D},  {m.wk, L * KV * D},
                 {m.wv, L * KV * D},   {m.wo, L * D * D},  {m.rms_ffn, L * D}, {m.w1, L * H * D},
                 {m.w2, L * D * H},    {m.w3, L * H * D},  {m.rms_final, D},   {m.wcls, V * D}};
  volatile float sink = 0.f;
  for (const auto& w : weights) {
    HEED_FUZZ_CHECK(w.p != nullptr);
    sink = sink + w.p[0] + w.p[std::size_t(w.n - 1)];
  }
}

void tokenizer(fuzz_input& in) {
  const int vocab = int(in.range(250, 600));
  std::vector<std::uint8_t> file;
  put_i32(file, in.flag() ? std::int32_t(in.u32()) : std::int32_t(in.range(1, 64)));
  const int tokens = in.flag() ? vocab : int(in.range(0, vocab));
  for (int i = 0; i < tokens && !in.empty(); ++i) {
    const float score = float(int(in.byte()) - 128);
    std::uint8_t c[4];
    std::memcpy(c, &score, 4);
    file.insert(file.end(), c, c + 4);
    std::int32_t len = std::int32_t(in.range(0, 4));
    if (in.byte() >= 250) len = std::int32_t(in.u32());
    put_i32(file, len);
    for (std::int32_t j = 0; j < len && j < 8; ++j) file.push_back(in.byte());
  }
  write_file(file);

  llama2c::tokenizer t;
  std::string error;
  const bool ok = t.load(temp_path(), vocab, &error);
  std::remove(temp_path().c_str());
  HEED_FUZZ_TRACE("tokenizer of %d tokens: %s\n", vocab, ok ? "loaded" : error.c_str());
  if (!ok) {
    HEED_FUZZ_CHECK(!error.empty());
    return;
  }
  HEED_FUZZ_CHECK(t.size() == vocab);
  std::string text;
  const std::size_t n = std::size_t(in.range(0, 32));
  for (std::size_t i = 0; i < n; ++i) text.push_back(char(in.byte()));
  const bool bos = in.flag(), eos = in.flag();
  const std::vector<int> ids = t.encode(text, bos, eos);
  int prev = 1;
  for (int id : ids) {
    HEED_FUZZ_CHECK(id >= 0 && id < t.size());
    (void)t.decode(prev, id);
    prev = id;
  }
  (void)t.decode(1, -1);
  (void)t.decode(1, vocab);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_input in(data, size);
  if (in.flag())
    tokenizer(in);
  else
    checkpoint(in);
  return 0;
}
