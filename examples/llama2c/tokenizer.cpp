#include "tokenizer.hpp"

#include <cstdint>
#include <cstdio>
#include <memory>

namespace llama2c {

bool tokenizer::load(const std::string& path, int vocab_size, std::string* error) {
  // encode() falls back to the byte tokens <0x00>..<0xFF> at ids 3..258 (and BOS 1, EOS 2): a
  // smaller vocabulary has no such ids (encode used to index past its pieces).
  if (vocab_size < 259) {
    *error = "vocabulary of " + std::to_string(vocab_size) +
             " tokens is too small for the byte tokens 3..258 (tokenizer " + path + ")";
    return false;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) {
    *error = "cannot open tokenizer " + path;
    return false;
  }
  std::int32_t max_len = 0;
  if (std::fread(&max_len, 4, 1, f.get()) != 1 || max_len <= 0) {
    *error = "bad tokenizer header in " + path;
    return false;
  }
  pieces_.assign(std::size_t(vocab_size), {});
  scores_.assign(std::size_t(vocab_size), 0.f);
  ids_.clear();
  for (int i = 0; i < vocab_size; ++i) {
    std::int32_t len = 0;
    if (std::fread(&scores_[std::size_t(i)], 4, 1, f.get()) != 1 ||
        std::fread(&len, 4, 1, f.get()) != 1 || len < 0 || len > 1024) {
      *error = "truncated tokenizer " + path;
      return false;
    }
    std::string s(std::size_t(len), '\0');
    if (len > 0 && std::fread(&s[0], 1, std::size_t(len), f.get()) != std::size_t(len)) {
      *error = "truncated tokenizer " + path;
      return false;
    }
    ids_.emplace(s, i);  // the first id wins for duplicate pieces
    pieces_[std::size_t(i)] = std::move(s);
  }
  return true;
}

std::vector<int> tokenizer::encode(const std::string& text, bool bos, bool eos) const {
  std::vector<int> t;
  if (bos) t.push_back(1);
  if (!text.empty()) {
    const int space = lookup(" ");
    if (space >= 0) t.push_back(space);
  }
  // One token per UTF-8 code point, or its bytes (byte fallback: id = byte + 3).
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = 1;
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0xC0) {
      while (i + n < text.size() && n < 4 &&
             (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
        ++n;
    }
    const std::string cp = text.substr(i, n);
    const int id = lookup(cp);
    if (id >= 0) {
      t.push_back(id);
    } else {
      for (unsigned char b : cp) t.push_back(int(b) + 3);
    }
    i += n;
  }
  // Merge the best-scoring adjacent pair while any pair is in the vocabulary.
  const std::size_t first = bos ? 1 : 0;
  for (;;) {
    float best = -1e30f;
    int best_id = -1;
    std::size_t best_at = 0;
    for (std::size_t i = first; i + 1 < t.size(); ++i) {
      const int id = lookup(pieces_[std::size_t(t[i])] + pieces_[std::size_t(t[i + 1])]);
      if (id >= 0 && scores_[std::size_t(id)] > best) {
        best = scores_[std::size_t(id)];
        best_id = id;
        best_at = i;
      }
    }
    if (best_id < 0) break;
    t[best_at] = best_id;
    t.erase(t.begin() + std::ptrdiff_t(best_at) + 1);
  }
  if (eos) t.push_back(2);
  return t;
}

std::string tokenizer::decode(int prev, int token) const {
  if (token < 0 || token >= size()) return {};
  std::string s = pieces_[std::size_t(token)];
  if (prev == 1 && !s.empty() && s[0] == ' ') s.erase(0, 1);
  unsigned int byte = 0;
  if (s.size() == 6 && std::sscanf(s.c_str(), "<0x%02X>", &byte) == 1)
    return std::string(1, static_cast<char>(byte));
  return s;
}

}  // namespace llama2c
