// The llama2.c tokenizer (tokenizer.bin): sentencepiece-style vocabulary with scores, greedy
// highest-score pair merges, byte fallback (<0x00>..<0xFF> at ids 3..258) and a dummy leading
// space.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

namespace llama2c {

class tokenizer {
 public:
  // Reads vocab_size entries (at least 259: ids 3..258 are the byte tokens); returns false with a
  // message on a malformed file.
  bool load(const std::string& path, int vocab_size, std::string* error);

  // Tokens of text: BOS (1) first when bos, the dummy prefix " " when text is non-empty, then
  // merged pieces; EOS (2) last when eos.
  std::vector<int> encode(const std::string& text, bool bos, bool eos) const;
  // The text of `token` following `prev` (a leading space after BOS is dropped; <0xXX> pieces
  // become their byte).
  std::string decode(int prev, int token) const;

  int size() const { return int(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_[std::size_t(id)]; }

 private:
  int lookup(const std::string& s) const {
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : it->second;
  }
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;
};

}  // namespace llama2c
