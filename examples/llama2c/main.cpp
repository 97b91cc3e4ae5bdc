// heed-eval: generate text or measure perplexity with a llama2.c checkpoint, attention on heed.
//
//   heed-eval generate --model FILE --tokenizer FILE [--prompt TEXT] [--steps N]
//                      [--temperature T] [--seed S] [--policy NAME --budget N] [--threads N]
//   heed-eval ppl --model FILE --tokenizer FILE --text FILE [--windows N]
//                 [--policy NAME --budget N] [--threads N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "heed/core/thread_pool.hpp"
#include "model.hpp"
#include "policies.hpp"
#include "tokenizer.hpp"

namespace {

int usage(const char* why) {
  if (why) std::fprintf(stderr, "heed-eval: %s\n", why);
  std::fprintf(stderr,
               "usage: heed-eval generate --model FILE --tokenizer FILE [--prompt TEXT] "
               "[--steps N] [--temperature T] [--seed S] [--policy NAME --budget N] "
               "[--threads N]\n"
               "       heed-eval ppl --model FILE --tokenizer FILE --text FILE [--windows N] "
               "[--policy NAME --budget N] [--threads N]\n"
               "policies:");
  for (const auto& n : llama2c::policy_names()) std::fprintf(stderr, " %s", n.c_str());
  std::fprintf(stderr, "\n");
  return 2;
}

struct args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  bool has(const std::string& k) const { return kv.count(k) != 0; }
};

bool parse(int argc, char** argv, args* a) {
  for (int i = 2; i < argc; i += 2) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) return false;
    a->kv[k.substr(2)] = argv[i + 1];
  }
  return true;
}

bool to_long(const std::string& s, long* out) {
  char* end = nullptr;
  *out = std::strtol(s.c_str(), &end, 10);
  return !s.empty() && end && *end == '\0';
}

struct engine {
  llama2c::model model;
  llama2c::tokenizer tok;
  heed::any_policy policy;
  long budget = 0;
  long threads = 1;
};

int load(const args& a, engine* e) {
  std::string err;
  if (!a.has("model") || !a.has("tokenizer")) return usage("--model and --tokenizer are required");
  if (!e->model.load(a.get("model"), &err)) return usage(err.c_str());
  if (!e->tok.load(a.get("tokenizer"), e->model.cfg().vocab_size, &err)) return usage(err.c_str());
  const std::string pname = a.get("policy", "full");
  if (!llama2c::make_policy(pname, &e->policy)) return usage("unknown --policy");
  if (!to_long(a.get("budget", "0"), &e->budget) || e->budget < 0) return usage("bad --budget");
  if (pname == "full") e->budget = 0;
  if (!to_long(a.get("threads", "1"), &e->threads) || e->threads < 1 || e->threads > 256)
    return usage("bad --threads");
  return 0;
}

int generate(const args& a) {
  engine e;
  if (int r = load(a, &e)) return r;
  long steps = 256, seed = 0;
  if (!to_long(a.get("steps", "256"), &steps) || steps < 1) return usage("bad --steps");
  if (!to_long(a.get("seed", "0"), &seed)) return usage("bad --seed");
  const double temperature = std::atof(a.get("temperature", "0").c_str());
  if (!(temperature >= 0)) return usage("bad --temperature");
  const auto& c = e.model.cfg();
  if (steps > c.seq_len) steps = c.seq_len;
  llama2c::session s;
  if (s.init(e.model, e.policy, e.budget) != heed::status::ok)
    return usage(heed::status_string(s.status()));
  heed::thread_pool_executor ex(int(e.threads));
  std::vector<int> prompt = e.tok.encode(a.get("prompt"), true, false);
  std::mt19937_64 rng{static_cast<std::uint64_t>(seed)};
  int token = prompt[0];
  const auto t0 = std::chrono::steady_clock::now();
  long produced = 0;
  for (long pos = 0; pos < steps; ++pos) {
    const float* logits = s.forward(token, int(pos), ex);
    if (!logits) return usage(heed::status_string(s.status()));
    int next;
    if (pos + 1 < long(prompt.size())) {
      next = prompt[std::size_t(pos + 1)];
    } else if (temperature == 0) {
      next = 0;
      for (int i = 1; i < c.vocab_size; ++i)
        if (logits[i] > logits[next]) next = i;
    } else {
      std::vector<double> p(std::size_t(c.vocab_size));
      double mx = logits[0], z = 0;
      for (int i = 1; i < c.vocab_size; ++i) mx = std::max<double>(mx, logits[i]);
      for (int i = 0; i < c.vocab_size; ++i)
        z += p[std::size_t(i)] = std::exp((logits[i] - mx) / temperature);
      std::uniform_real_distribution<double> u(0.0, z);
      double r = u(rng);
      next = c.vocab_size - 1;
      for (int i = 0; i < c.vocab_size; ++i) {
        r -= p[std::size_t(i)];
        if (r <= 0) {
          next = i;
          break;
        }
      }
    }
    if (next == 1) break;  // BOS delimits sequences
    std::fputs(e.tok.decode(token, next).c_str(), stdout);
    token = next;
    ++produced;
  }
  std::fputs("\n", stdout);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "tokens=%ld tok_per_s=%.1f\n", produced, sec > 0 ? produced / sec : 0.0);
  return 0;
}

int ppl(const args& a) {
  engine e;
  if (int r = load(a, &e)) return r;
  if (!a.has("text")) return usage("--text is required");
  long windows = -1;
  if (a.has("windows") && (!to_long(a.get("windows"), &windows) || windows < 1))
    return usage("bad --windows");
  std::ifstream in(a.get("text"));
  if (!in) return usage("cannot open --text");
  // Paragraphs are separated by blank lines; each is tokenized with BOS, no EOS.
  std::vector<int> stream;
  std::string line, para;
  auto flush = [&] {
    if (!para.empty()) {
      const auto t = e.tok.encode(para, true, false);
      stream.insert(stream.end(), t.begin(), t.end());
    }
    para.clear();
  };
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      flush();
    } else {
      if (!para.empty()) para += "\n";
      para += line;
    }
  }
  flush();
  const auto& c = e.model.cfg();
  const long n_windows_all = long(stream.size()) / c.seq_len;
  const long n_windows = windows > 0 ? std::min(windows, n_windows_all) : n_windows_all;
  if (n_windows < 1) return usage("text shorter than one context window");
  heed::thread_pool_executor ex(int(e.threads));
  double loss = 0;
  long scored = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long w = 0; w < n_windows; ++w) {
    llama2c::session s;
    if (s.init(e.model, e.policy, e.budget) != heed::status::ok)
      return usage(heed::status_string(s.status()));
    const int* t = stream.data() + w * c.seq_len;
    for (int pos = 0; pos + 1 < c.seq_len; ++pos) {
      const float* logits = s.forward(t[pos], pos, ex);
      if (!logits) return usage(heed::status_string(s.status()));
      double mx = logits[0], z = 0;
      for (int i = 1; i < c.vocab_size; ++i) mx = std::max<double>(mx, logits[i]);
      for (int i = 0; i < c.vocab_size; ++i) z += std::exp(double(logits[i]) - mx);
      loss += std::log(z) + mx - double(logits[t[pos + 1]]);
      ++scored;
    }
  }
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double mean = loss / double(scored);
  std::printf("loss=%.6f ppl=%.6f tokens=%ld tok_per_s=%.1f\n", mean, std::exp(mean), scored,
              sec > 0 ? double(scored) / sec : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(nullptr);
  args a;
  if (!parse(argc, argv, &a)) return usage("arguments come as --name value pairs");
  const std::string cmd = argv[1];
  if (cmd == "generate") return generate(a);
  if (cmd == "ppl") return ppl(a);
  return usage("unknown command");
}
