// Per-head offline calibration of sparse prefill: record, over calibration prompts, which
// FlexPrefill pattern each (layer, head) picks and how dense its blocks are; save it as a small
// text file; at inference, fix each head's branch (flexprefill_options::head_kind) or give the
// pooled-block estimator each head's density (pooled_block_options::head_density).
//
// File format (text, one header line, one line per head, '#' lines are comments):
//   heed-sparse-calibration 1 <layers> <heads>
//   <layer> <head> <query_aware|vertical_slash> <density> <samples> <query_aware_votes>
//   <mean_sqrt_jsd>
// kind is the majority vote (ties: vertical_slash), density the mean over the samples.
#pragma once

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "heed/core/detail/no_throw.hpp"
#include "heed/sparse/block_pattern.hpp"
#include "heed/sparse/flexprefill.hpp"

namespace heed {

struct sparse_calibration {
  struct head_record {
    std::int64_t samples = 0;
    std::int64_t query_aware_votes = 0;
    double density_sum = 0.0;
    double jsd_sum = 0.0;

    flex_kind kind() const noexcept {
      return 2 * query_aware_votes > samples ? flex_kind::query_aware : flex_kind::vertical_slash;
    }
    double density() const noexcept { return samples ? density_sum / double(samples) : 1.0; }
    double mean_sqrt_jsd() const noexcept { return samples ? jsd_sum / double(samples) : 0.0; }
  };

  std::int64_t layers = 0, heads = 0;
  std::vector<head_record> records;  // [layers][heads]

  status init(std::int64_t n_layers, std::int64_t n_heads) noexcept {
    return detail::no_throw([&]() -> status {
      if (n_layers < 1 || n_heads < 1 || n_layers * n_heads > (std::int64_t(1) << 24))
        return status::invalid_argument;
      layers = n_layers;
      heads = n_heads;
      records.assign(std::size_t(layers * heads), head_record{});
      return status::ok;
    });
  }

  // One calibration prompt's FlexPrefill result for `layer` (pattern and report of one call).
  status record(std::int64_t layer, const block_pattern& pat, const flexprefill_report& rep,
                bool causal = true) noexcept {
    return detail::no_throw([&]() -> status {
      if (layer < 0 || layer >= layers || pat.heads != heads || !pat.complete() ||
          std::int64_t(rep.kind.size()) != heads || std::int64_t(rep.sqrt_jsd.size()) != heads)
        return status::invalid_argument;
      for (std::int64_t h = 0; h < heads; ++h) {
        head_record& r = records[std::size_t(layer * heads + h)];
        ++r.samples;
        r.query_aware_votes += rep.kind[std::size_t(h)] == flex_kind::query_aware ? 1 : 0;
        r.density_sum += block_density_head(pat, h, causal);
        r.jsd_sum += rep.sqrt_jsd[std::size_t(h)];
      }
      return status::ok;
    });
  }

  const head_record& at(std::int64_t layer, std::int64_t head) const {
    return records[std::size_t(layer * heads + head)];
  }

  // Per-head inputs of the estimators for one layer ([heads] each).
  void kinds(std::int64_t layer, flex_kind* out) const {
    for (std::int64_t h = 0; h < heads; ++h) out[h] = at(layer, h).kind();
  }
  void densities(std::int64_t layer, double* out) const {
    for (std::int64_t h = 0; h < heads; ++h) out[h] = at(layer, h).density();
  }

  std::string to_text() const {
    std::ostringstream os;
    os.precision(17);
    os << "heed-sparse-calibration 1 " << layers << ' ' << heads << '\n';
    os << "# layer head kind density samples query_aware_votes mean_sqrt_jsd\n";
    for (std::int64_t l = 0; l < layers; ++l)
      for (std::int64_t h = 0; h < heads; ++h) {
        const head_record& r = at(l, h);
        os << l << ' ' << h << ' '
           << (r.kind() == flex_kind::query_aware ? "query_aware" : "vertical_slash") << ' '
           << r.density() << ' ' << r.samples << ' ' << r.query_aware_votes << ' '
           << r.mean_sqrt_jsd() << '\n';
      }
    return os.str();
  }

  // Parses to_text()'s format; every (layer, head) must appear exactly once. On error `out` is
  // left unchanged.
  static status parse(const std::string& text, sparse_calibration& out) noexcept {
    return detail::no_throw([&]() -> status {
      std::istringstream is(text);
      std::string line, magic;
      if (!std::getline(is, line)) return status::invalid_argument;
      std::istringstream hs(line);
      int version = 0;
      std::int64_t nl = 0, nh = 0;
      if (!(hs >> magic >> version >> nl >> nh) || magic != "heed-sparse-calibration" ||
          version != 1)
        return status::invalid_argument;
      sparse_calibration c;
      HEED_RETURN_IF_ERROR(c.init(nl, nh));
      std::vector<char> seen(c.records.size(), 0);
      while (std::getline(is, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::int64_t l, h, samples, votes;
        std::string kind;
        double density, jsd;
        if (!(ls >> l >> h >> kind >> density >> samples >> votes >> jsd))
          return status::invalid_argument;
        if (l < 0 || l >= nl || h < 0 || h >= nh || samples < 1 || votes < 0 || votes > samples ||
            !(density >= 0.0 && density <= 1.0) || !(jsd >= 0.0) ||
            (kind != "query_aware" && kind != "vertical_slash"))
          return status::invalid_argument;
        const std::size_t at = std::size_t(l * nh + h);
        if (seen[at]) return status::invalid_argument;
        seen[at] = 1;
        head_record& r = c.records[at];
        r.samples = samples;
        r.query_aware_votes = votes;
        r.density_sum = density * double(samples);
        r.jsd_sum = jsd * double(samples);
        if ((r.kind() == flex_kind::query_aware) != (kind == "query_aware"))
          return status::invalid_argument;  // the kind must agree with the votes
      }
      for (char s : seen)
        if (!s) return status::invalid_argument;
      out = std::move(c);
      return status::ok;
    });
  }

  status save(const std::string& path) const noexcept {
    return detail::no_throw([&]() -> status {
      const std::string t = to_text();
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (!f) return status::invalid_argument;
      const bool ok = std::fwrite(t.data(), 1, t.size(), f) == t.size();
      return std::fclose(f) == 0 && ok ? status::ok : status::invalid_argument;
    });
  }
  static status load(const std::string& path, sparse_calibration& out) noexcept {
    return detail::no_throw([&]() -> status {
      std::FILE* f = std::fopen(path.c_str(), "rb");
      if (!f) return status::invalid_argument;
      std::string t;
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) t.append(buf, n);
      std::fclose(f);
      return parse(t, out);
    });
  }
};

}  // namespace heed
