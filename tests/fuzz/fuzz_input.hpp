// The fuzz targets' reader of libFuzzer's input bytes, and their failure check.
//
// fuzz_input hands out small integers, choices and floats from the front of the input; once the
// bytes run out every read returns 0 (so a short input is a valid, small case, and libFuzzer's
// mutations of any byte change one decision).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace heed_fuzz {

class fuzz_input {
 public:
  fuzz_input(const std::uint8_t* data, std::size_t size) noexcept : p_(data), n_(size) {}

  bool empty() const noexcept { return n_ == 0; }
  std::size_t remaining() const noexcept { return n_; }

  std::uint8_t byte() noexcept {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint32_t u32() noexcept {
    std::uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x |= std::uint32_t(byte()) << (8 * i);
    return x;
  }
  bool flag() noexcept { return (byte() & 1) != 0; }
  // An integer in [lo, hi] (one byte when the range fits in one, else four).
  std::int64_t range(std::int64_t lo, std::int64_t hi) noexcept {
    const std::uint64_t span = std::uint64_t(hi - lo) + 1;
    const std::uint64_t x = span <= 256 ? byte() : u32();
    return lo + std::int64_t(x % span);
  }
  // One of the n values of a table.
  template <class T, std::size_t N>
  T pick(const T (&table)[N]) noexcept {
    return table[std::size_t(range(0, std::int64_t(N) - 1))];
  }
  // A float of a small grid in [-4, 4) (one byte), the values the kernels are checked on.
  float small_float() noexcept { return float(int(byte()) - 128) / 32.f; }
  // Any float bit pattern, biased toward the special ones (NaN, +-inf, +-0, ties).
  float any_float() noexcept {
    const std::uint8_t kind = byte();
    switch (kind % 8) {
      case 0:
        return __builtin_nanf("");
      case 1:
        return kind & 8 ? __builtin_inff() : -__builtin_inff();
      case 2:
        return kind & 8 ? 0.f : -0.f;
      case 3: {
        const std::uint32_t bits = u32();
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
      }
      default:
        return float(int(byte() % 16) - 8);  // few distinct values: many ties
    }
  }
  // Fills `out` with up to n bytes; the rest is zero. Returns the count read.
  std::size_t bytes(void* out, std::size_t n) noexcept {
    const std::size_t k = n < n_ ? n : n_;
    if (k) std::memcpy(out, p_, k);
    if (n > k) std::memset(static_cast<char*>(out) + k, 0, n - k);
    p_ += k;
    n_ -= k;
    return k;
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

// Set HEED_FUZZ_VERBOSE=1 to have the targets describe each input as they run it (for a crash's
// reproducer).
inline bool verbose() noexcept {
  static const bool v = std::getenv("HEED_FUZZ_VERBOSE") != nullptr;
  return v;
}

// A finding: prints where and why, then aborts (libFuzzer saves the input as a crash).
[[noreturn]] inline void fail(const char* file, int line, const char* what) noexcept {
  std::fprintf(stderr, "heed fuzz check failed at %s:%d: %s\n", file, line, what);
  std::abort();
}

}  // namespace heed_fuzz

#define HEED_FUZZ_TRACE(...)                                       \
  do {                                                             \
    if (::heed_fuzz::verbose()) std::fprintf(stderr, __VA_ARGS__); \
  } while (0)

#define HEED_FUZZ_CHECK(cond)                                                         \
  do {                                                                                \
    if (!(cond)) ::heed_fuzz::fail(__FILE__, __LINE__, "HEED_FUZZ_CHECK(" #cond ")"); \
  } while (0)
