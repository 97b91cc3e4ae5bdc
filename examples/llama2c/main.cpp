// heed-eval: generate text or measure perplexity with a llama2.c checkpoint, attention on heed.
//
//   heed-eval generate --model FILE --tokenizer FILE [--prompt TEXT] [--steps N]
//                      [--temperature T] [--seed S] [--policy NAME --budget N] [--threads N]
//   heed-eval ppl --model FILE --tokenizer FILE --text FILE [--windows N]
//                 [--policy NAME --budget N] [--threads N]
//   heed-eval sweep --model FILE --tokenizer FILE --text FILE [--windows N] --out DIR
//                   [--threads N]: every policy at 12.5%, 25%, 50% and 100% of the context;
//                   the CSV is written as it goes
//   heed-eval speed --model FILE --tokenizer FILE --text FILE [--reps N] [--threads N]
//                   [--policy NAME --budget N]: prefill and decode tokens per second (medians)
// --model, --tokenizer and --text default to the shipped files in data/ (see data/PROVENANCE.md).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "heed/core/thread_pool.hpp"
#include "heed/policy/registry.hpp"
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
               "       heed-eval sweep --model FILE --tokenizer FILE --text FILE [--windows N] "
               "--out DIR [--threads N]\n"
               "       heed-eval speed --model FILE --tokenizer FILE --text FILE [--reps N] "
               "[--threads N] [--policy NAME --budget N]\n"
               "every command also takes --page-rows N (a paged KV cache, N >= 16) and --kv-dtype "
               "f32|f16|bf16|q8|q4 (the KV cache's storage type, default f32) and --rotate-keys "
               "0|1 (Hadamard-rotated queries and keys) and --demote-to q8|q4 --high-budget N (a "
               "two-precision cache: N entries per layer and head at --kv-dtype, the others "
               "demoted before any is evicted) and --budget-bytes B (the budget in bytes per layer "
               "and head instead of --budget); --model, "
               "--tokenizer and --text default to the shipped stories260K.bin, tok512.bin and "
               "tinystories_dev.txt in data/; --policy-params name=value,... sets or overrides "
               "the policy's parameters (docs/policies.md, \"Policies by name\")\n"
               "policies (the sweep's):");
  for (const auto& n : llama2c::policy_names()) std::fprintf(stderr, " %s", n.c_str());
  std::fprintf(stderr, "\nand every other name of heed's registry (a caote_ prefix wraps any):");
  for (int i = 0; i < heed::policy_count(); ++i) std::fprintf(stderr, " %s", heed::policy_name(i));
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

// --name value pairs; a name given twice is refused (which one would win is a guess).
bool parse(int argc, char** argv, args* a) {
  for (int i = 2; i < argc; i += 2) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || k.size() < 3 || i + 1 >= argc) return false;
    if (!a->kv.emplace(k.substr(2), argv[i + 1]).second) return false;
  }
  return true;
}

// The options of each command (without the leading --); every command also takes the common
// ones. An option a command does not take (a typo, a flag of another command) is refused: it
// would otherwise be ignored and the run would measure something else than was asked.
const std::map<std::string, std::set<std::string>>& command_options() {
  static const std::map<std::string, std::set<std::string>> m = {
      {"generate", {"prompt", "steps", "temperature", "seed", "policy", "policy-params", "budget"}},
      {"ppl", {"text", "windows", "policy", "policy-params", "budget"}},
      {"sweep", {"text", "windows", "out"}},
      {"speed", {"text", "reps", "policy", "policy-params", "budget"}},
  };
  return m;
}
const std::set<std::string> common_options = {
    "model",       "tokenizer", "threads",     "page-rows",    "kv-dtype",
    "rotate-keys", "demote-to", "high-budget", "budget-bytes", "calib-text"};

// Empty when every option of `a` belongs to `cmd`, else the message naming the first that does
// not.
std::string unknown_option(const std::string& cmd, const args& a) {
  const auto& own = command_options().at(cmd);
  for (const auto& kv : a.kv)
    if (own.count(kv.first) == 0 && common_options.count(kv.first) == 0)
      return "unknown option --" + kv.first + " for " + cmd;
  return "";
}

// Whole-string numbers only: "12x", "" and out-of-range values are refused.
bool to_long(const std::string& s, long* out) {
  char* end = nullptr;
  errno = 0;
  *out = std::strtol(s.c_str(), &end, 10);
  return !s.empty() && end && *end == '\0' && errno == 0;
}
bool to_double(const std::string& s, double* out) {
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' && errno == 0 && std::isfinite(*out);
}

struct engine {
  llama2c::model model;
  llama2c::tokenizer tok;
  heed::any_policy policy;
  long budget = 0;
  long threads = 1;
  llama2c::kv_options kv;  // storage type, pages, rotation, demotion, byte budget
};

// --kv-dtype names: f32, f16, bf16, q8, q4.
bool to_dtype(const std::string& s, heed::dtype* out) {
  for (heed::dtype t :
       {heed::dtype::f32, heed::dtype::f16, heed::dtype::bf16, heed::dtype::q8, heed::dtype::q4})
    if (s == heed::dtype_name(t)) {
      *out = t;
      return true;
    }
  return false;
}

// --model, --tokenizer and --text default to the shipped files (data/ of the source tree, the
// path compiled in as HEED_DEFAULT_DATA_DIR).
std::string data_file(const args& a, const char* key, const char* shipped) {
#ifdef HEED_DEFAULT_DATA_DIR
  return a.get(key, std::string(HEED_DEFAULT_DATA_DIR) + "/" + shipped);
#else
  return a.get(key);
#endif
}

bool read_stream(const engine& e, const std::string& path, std::vector<int>* stream);
int calibrate(const args& a, const engine& e);

int load(const args& a, engine* e) {
  std::string err;
  if (!e->model.load(data_file(a, "model", "stories260K.bin"), &err)) return usage(err.c_str());
  if (!e->tok.load(data_file(a, "tokenizer", "tok512.bin"), e->model.cfg().vocab_size, &err))
    return usage(err.c_str());
  const std::string pname = a.get("policy", "full");
  if (!to_long(a.get("budget", "0"), &e->budget) || e->budget < 0) return usage("bad --budget");
  if (!to_long(a.get("threads", "1"), &e->threads) || e->threads < 1 || e->threads > 256)
    return usage("bad --threads");
  long page_rows = 0, high = -1, bytes = 0;
  if (!to_long(a.get("page-rows", "0"), &page_rows) || page_rows < 0)
    return usage("bad --page-rows");
  e->kv.page_rows = page_rows;
  if (!to_dtype(a.get("kv-dtype", "f32"), &e->kv.type)) return usage("bad --kv-dtype");
  const std::string rot = a.get("rotate-keys", "0");
  if (rot != "0" && rot != "1") return usage("bad --rotate-keys (0 or 1)");
  e->kv.rotate_keys = rot == "1";
  if (a.has("demote-to") != a.has("high-budget"))
    return usage("--demote-to and --high-budget come together");
  if (a.has("demote-to")) {
    if (!to_dtype(a.get("demote-to"), &e->kv.low_type)) return usage("bad --demote-to");
    if (!to_long(a.get("high-budget"), &high) || high < 0) return usage("bad --high-budget");
    e->kv.high_budget = high;
  }
  if (a.has("budget-bytes")) {
    if (!to_long(a.get("budget-bytes"), &bytes) || bytes < 1) return usage("bad --budget-bytes");
    if (a.has("budget")) return usage("--budget and --budget-bytes exclude each other");
    e->kv.budget_bytes = std::size_t(bytes);
  }
  if (pname == "full") e->budget = 0, e->kv.budget_bytes = 0;  // the full cache: no eviction
  // The policy last: Q-Filters' calibration runs the model with this cache's storage.
  if (llama2c::uses_q_filters(pname))
    if (int r = calibrate(a, *e)) return r;
  if (!llama2c::make_policy(pname, a.get("policy-params", ""), &e->policy, &err, &e->model))
    return usage(err.c_str());
  return 0;
}

int generate(const args& a) {
  engine e;
  if (int r = load(a, &e)) return r;
  long steps = 256, seed = 0;
  if (!to_long(a.get("steps", "256"), &steps) || steps < 1) return usage("bad --steps");
  if (!to_long(a.get("seed", "0"), &seed)) return usage("bad --seed");
  double temperature = 0;
  if (!to_double(a.get("temperature", "0"), &temperature) || !(temperature >= 0))
    return usage("bad --temperature");
  const auto& c = e.model.cfg();
  if (steps > c.seq_len) steps = c.seq_len;
  llama2c::session s;
  if (s.init(e.model, e.policy, e.budget, e.kv) != heed::status::ok)
    return usage(heed::status_string(s.status()));
  heed::thread_pool_executor ex(int(e.threads));
  std::vector<int> prompt = e.tok.encode(a.get("prompt"), true, false);
  if (long(prompt.size()) > c.seq_len) prompt.resize(std::size_t(c.seq_len));
  if (steps < long(prompt.size())) steps = long(prompt.size());
  std::mt19937_64 rng{static_cast<std::uint64_t>(seed)};
  using clock = std::chrono::steady_clock;
  // The prompt in one prefill pass (a lone BOS goes through the decode path), then one token
  // at a time.
  const auto t0 = clock::now();
  const int P = int(prompt.size());
  const float* logits = P > 1 ? s.prefill(prompt.data(), P, 0, ex) : s.forward(prompt[0], 0, ex);
  if (!logits) return usage(heed::status_string(s.status()));
  const auto t1 = clock::now();
  for (int i = 1; i < P; ++i) std::fputs(e.tok.decode(prompt[i - 1], prompt[i]).c_str(), stdout);
  int token = prompt.back();
  long produced = 0;
  for (long pos = P;; ++pos) {
    int next;
    if (temperature == 0) {
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
    if (pos >= steps) break;
    logits = s.forward(token, int(pos), ex);
    if (!logits) return usage(heed::status_string(s.status()));
  }
  std::fputs("\n", stdout);
  const double pre = std::chrono::duration<double>(t1 - t0).count();
  const double dec = std::chrono::duration<double>(clock::now() - t1).count();
  std::fprintf(stderr, "prompt_tokens=%d prefill_tok_per_s=%.1f tokens=%ld tok_per_s=%.1f\n", P,
               pre > 0 ? P / pre : 0.0, produced, dec > 0 ? produced / dec : 0.0);
  return 0;
}

// The protocol's token stream: paragraphs (split on blank lines), each with BOS, no EOS.
bool read_stream(const engine& e, const std::string& path, std::vector<int>* stream) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line, para;
  auto flush = [&] {
    if (!para.empty()) {
      const auto t = e.tok.encode(para, true, false);
      stream->insert(stream->end(), t.begin(), t.end());
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
  return true;
}

// Q-Filters' calibration (llama2c::calibrate_q_filters) on the last 4 context windows of
// --calib-text (default: the shipped tinystories_dev.txt; the evaluations read the first
// windows of their text), for the engine's "q_filters", in a full cache of the engine's storage
// type (and Hadamard rotation: the filters live in the basis the keys are stored in).
int calibrate(const args& a, const engine& e) {
  std::vector<int> stream;
  const std::string path = data_file(a, "calib-text", "tinystories_dev.txt");
  if (!read_stream(e, path, &stream)) return usage("cannot open --calib-text");
  const std::size_t ctx = std::size_t(e.model.cfg().seq_len), windows = stream.size() / ctx;
  if (windows < 1) return usage("--calib-text shorter than one context window");
  const std::size_t first = windows > 4 ? windows - 4 : 0;
  const std::vector<int> tokens(stream.begin() + long(first * ctx),
                                stream.begin() + long(windows * ctx));
  std::vector<float> filters;
  llama2c::kv_options kv;  // the queries as this engine attends them: storage and rotation
  kv.type = e.kv.type;
  kv.rotate_keys = e.kv.rotate_keys;
  kv.page_rows = e.kv.page_rows;
  const heed::status st = llama2c::calibrate_q_filters(e.model, tokens, &filters, kv);
  if (st != heed::status::ok) return usage(heed::status_string(st));
  llama2c::set_q_filters(std::move(filters));
  std::fprintf(stderr, "heed-eval: q_filters calibrated on %zu tokens of %s\n", tokens.size(),
               path.c_str());
  return 0;
}

struct result {
  double loss = 0;  // mean nats per scored token
  long scored = 0;
  double seconds = 0;
  heed::status st = heed::status::ok;
};

// Every window from an empty cache, one token at a time, scoring token t + 1 from 0..t.
// Progress of a long run on stderr: windows done of the total, tokens per second and the time
// left, at most one line every 5 seconds (nothing for runs shorter than that).
struct progress {
  long total = 0, done = 0, tokens = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last = start;
  void advance(long windows, long scored) {
    done += windows;
    tokens += scored;
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last).count() < 5 && done < total) return;
    const double el = std::chrono::duration<double>(now - start).count();
    if (el < 5) return;
    last = now;
    const double left = done > 0 ? el * double(total - done) / double(done) : 0;
    std::fprintf(stderr, "heed-eval: %ld / %ld windows, %.0f tok/s, %.0f s elapsed, %.0f s left\n",
                 done, total, double(tokens) / el, el, left);
  }
};

result evaluate(const engine& e, const std::vector<int>& stream, long n_windows,
                const heed::any_policy& policy, long budget, progress* prog = nullptr) {
  const auto& c = e.model.cfg();
  heed::thread_pool_executor ex(int(e.threads));
  result r;
  double loss = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long w = 0; w < n_windows; ++w) {
    llama2c::session s;
    if ((r.st = s.init(e.model, policy, budget, e.kv)) != heed::status::ok) return r;
    const int* t = stream.data() + w * c.seq_len;
    for (int pos = 0; pos + 1 < c.seq_len; ++pos) {
      const float* logits = s.forward(t[pos], pos, ex);
      if (!logits) {
        r.st = s.status();
        return r;
      }
      loss += llama2c::next_token_loss(logits, c.vocab_size, t[pos + 1]);
      ++r.scored;
    }
    if (prog) prog->advance(1, c.seq_len - 1);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.loss = loss / double(r.scored);
  return r;
}

int windows_of(const args& a, const engine& e, const std::vector<int>& stream, long* n) {
  long windows = -1;
  if (a.has("windows") && (!to_long(a.get("windows"), &windows) || windows < 1))
    return usage("bad --windows");
  const long all = long(stream.size()) / e.model.cfg().seq_len;
  *n = windows > 0 ? std::min(windows, all) : all;
  if (*n < 1) return usage("text shorter than one context window");
  return 0;
}

int ppl(const args& a) {
  engine e;
  if (int r = load(a, &e)) return r;
  std::vector<int> stream;
  if (!read_stream(e, data_file(a, "text", "tinystories_dev.txt"), &stream))
    return usage("cannot open --text");
  long n = 0;
  if (int r = windows_of(a, e, stream, &n)) return r;
  progress prog;
  prog.total = n;
  const result r = evaluate(e, stream, n, e.policy, e.budget, &prog);
  if (r.st != heed::status::ok) return usage(heed::status_string(r.st));
  std::printf("loss=%.6f ppl=%.6f tokens=%ld tok_per_s=%.1f\n", r.loss, std::exp(r.loss), r.scored,
              r.seconds > 0 ? double(r.scored) / r.seconds : 0.0);
  return 0;
}

// Prefill and decode speed on the first context window of the text: prefill runs the window in
// one pass, decode runs it one token at a time from an empty cache. Medians of --reps runs.
int speed(const args& a) {
  engine e;
  if (int r = load(a, &e)) return r;
  long reps = 5;
  if (!to_long(a.get("reps", "5"), &reps) || reps < 1) return usage("bad --reps");
  std::vector<int> stream;
  if (!read_stream(e, data_file(a, "text", "tinystories_dev.txt"), &stream))
    return usage("cannot open --text");
  const auto& c = e.model.cfg();
  if (long(stream.size()) < c.seq_len) return usage("text shorter than one context window");
  heed::thread_pool_executor ex(int(e.threads));
  using clock = std::chrono::steady_clock;
  std::vector<double> pre, dec;
  for (long r = 0; r < reps; ++r) {
    llama2c::session s;
    if (s.init(e.model, e.policy, e.budget, e.kv) != heed::status::ok)
      return usage(heed::status_string(s.status()));
    auto t0 = clock::now();
    if (!s.prefill(stream.data(), c.seq_len, 0, ex)) return usage(heed::status_string(s.status()));
    pre.push_back(c.seq_len / std::chrono::duration<double>(clock::now() - t0).count());
    if (s.init(e.model, e.policy, e.budget, e.kv) != heed::status::ok)
      return usage(heed::status_string(s.status()));
    t0 = clock::now();
    for (int pos = 0; pos < c.seq_len; ++pos)
      if (!s.forward(stream[std::size_t(pos)], pos, ex))
        return usage(heed::status_string(s.status()));
    dec.push_back(c.seq_len / std::chrono::duration<double>(clock::now() - t0).count());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  std::printf("dim=%d layers=%d heads=%d kv_heads=%d seq_len=%d threads=%ld reps=%ld\n", c.dim,
              c.n_layers, c.n_heads, c.n_kv_heads, c.seq_len, e.threads, reps);
  std::printf("prefill_tok_per_s=%.1f decode_tok_per_s=%.1f\n", median(pre), median(dec));
  return 0;
}

// Perplexity vs budget, one line per policy, as an SVG.
void write_svg(const std::string& path, const std::vector<std::string>& policies,
               const std::vector<long>& budgets, const std::vector<std::vector<double>>& ppl,
               double full) {
  const double W = 760, H = 460, l = 70, r = 180, t = 30, b = 50;
  double lo = full, hi = full;
  for (const auto& row : ppl)
    for (double v : row) lo = std::min(lo, v), hi = std::max(hi, v);
  hi = std::min(hi, full * 3);  // keep the useful range readable; worse points are clipped
  if (hi <= lo) hi = lo + 1;
  const double bmax = double(budgets.back());
  auto X = [&](double budget) { return l + (W - l - r) * budget / bmax; };
  auto Y = [&](double v) { return H - b - (H - t - b) * (std::min(v, hi) - lo) / (hi - lo); };
  std::ofstream f(path);
  f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
       "fill='white'/>\n";
  f << "<line x1='" << l << "' y1='" << H - b << "' x2='" << W - r << "' y2='" << H - b
    << "' stroke='black'/><line x1='" << l << "' y1='" << t << "' x2='" << l << "' y2='" << H - b
    << "' stroke='black'/>\n";
  for (long bu : budgets)
    f << "<text x='" << X(double(bu)) << "' y='" << H - b + 18 << "' text-anchor='middle'>" << bu
      << "</text>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = lo + (hi - lo) * i / 4;
    char txt[32];
    std::snprintf(txt, sizeof txt, "%.3f", v);
    f << "<text x='" << l - 6 << "' y='" << Y(v) + 4 << "' text-anchor='end'>" << txt
      << "</text>\n";
  }
  f << "<text x='" << (l + W - r) / 2 << "' y='" << H - 10
    << "' text-anchor='middle'>KV budget (entries per layer and head)</text>\n";
  f << "<text x='16' y='" << (t + H - b) / 2 << "' transform='rotate(-90 16 " << (t + H - b) / 2
    << ")' text-anchor='middle'>perplexity</text>\n";
  f << "<line x1='" << l << "' y1='" << Y(full) << "' x2='" << W - r << "' y2='" << Y(full)
    << "' stroke='gray' stroke-dasharray='4'/>\n";
  static const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
  for (std::size_t p = 0; p < policies.size(); ++p) {
    const char* col = colors[p % 12];
    f << "<polyline fill='none' stroke='" << col << "' stroke-width='2' points='";
    for (std::size_t i = 0; i < budgets.size(); ++i)
      f << X(double(budgets[i])) << "," << Y(ppl[p][i]) << " ";
    f << "'/>\n<text x='" << W - r + 8 << "' y='" << t + 16 * double(p) << "' fill='" << col << "'>"
      << policies[p] << "</text>\n";
  }
  f << "</svg>\n";
}

int sweep(const args& a) {
  engine e;
  if (int r = load(a, &e)) return r;
  if (!a.has("out")) return usage("--out is required");
  if (int r = calibrate(a, e)) return r;  // for q_filters
  std::vector<int> stream;
  if (!read_stream(e, data_file(a, "text", "tinystories_dev.txt"), &stream))
    return usage("cannot open --text");
  long n = 0;
  if (int r = windows_of(a, e, stream, &n)) return r;
  const std::string out = a.get("out");
  std::ofstream csv(out + "/sweep.csv");
  if (!csv) return usage("cannot write --out/sweep.csv (does the directory exist?)");
  const long ctx = e.model.cfg().seq_len;
  const std::vector<long> budgets = {ctx / 8, ctx / 4, ctx / 2, ctx};
  csv << "policy,budget,loss,ppl\n";
  heed::any_policy full;
  llama2c::make_policy("full", &full);
  // The CSV is written as the sweep goes, so an interrupted run keeps what it measured.
  progress prog;
  prog.total = n * (1 + long(llama2c::policy_names().size() - 1) * long(budgets.size() - 1));
  const result base = evaluate(e, stream, n, full, 0, &prog);
  if (base.st != heed::status::ok) return usage(heed::status_string(base.st));
  csv << "full," << ctx << "," << base.loss << "," << std::exp(base.loss) << std::endl;
  std::printf("%-20s %6s %10s %10s\n", "policy", "budget", "loss", "ppl");
  std::printf("%-20s %6ld %10.5f %10.5f\n", "full", ctx, base.loss, std::exp(base.loss));
  std::vector<std::string> names;
  std::vector<std::vector<double>> table;
  for (const auto& name : llama2c::policy_names()) {
    if (name == "full") continue;
    heed::any_policy p;
    llama2c::make_policy(name, &p, &e.model);
    names.push_back(name);
    table.emplace_back();
    for (long bu : budgets) {
      // At the full context nothing is evicted: the loss is the full-cache loss.
      const result r = bu >= ctx ? base : evaluate(e, stream, n, p, bu, &prog);
      if (r.st != heed::status::ok) return usage(heed::status_string(r.st));
      table.back().push_back(std::exp(r.loss));
      csv << name << "," << bu << "," << r.loss << "," << std::exp(r.loss) << std::endl;
      std::printf("%-20s %6ld %10.5f %10.5f\n", name.c_str(), bu, r.loss, std::exp(r.loss));
      std::fflush(stdout);
    }
  }
  write_svg(out + "/sweep.svg", names, budgets, table, std::exp(base.loss));
  std::printf("wrote %s/sweep.csv and %s/sweep.svg\n", out.c_str(), out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(nullptr);
  args a;
  if (!parse(argc, argv, &a)) return usage("arguments come as --name value pairs, each name once");
  const std::string cmd = argv[1];
  if (command_options().count(cmd) == 0) return usage("unknown command");
  const std::string bad = unknown_option(cmd, a);
  if (!bad.empty()) return usage(bad.c_str());
  if (cmd == "generate") return generate(a);
  if (cmd == "ppl") return ppl(a);
  if (cmd == "sweep") return sweep(a);
  if (cmd == "speed") return speed(a);
  return usage("unknown command");
}
