// Caller-provided scratch memory. Kernels never allocate: they report the bytes they need
// (workspace_size) and carve what they are given into aligned pieces.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heed/config.hpp"

namespace heed {

struct workspace {
  void* data = nullptr;
  std::size_t size = 0;
};

HEED_ISA_BEGIN
constexpr std::size_t workspace_alignment = 64;

constexpr std::size_t align_up(std::size_t n, std::size_t a = workspace_alignment) noexcept {
  return (n + a - 1) / a * a;
}

// Hands out aligned sub-buffers of a workspace in order. The same sequence of take() calls
// run with data == nullptr computes the size needed (plus alignment slack).
class workspace_carver {
 public:
  explicit workspace_carver(void* base) noexcept : base_(static_cast<char*>(base)) {}

  template <class T>
  T* take(std::size_t count) noexcept {
    const std::size_t at = offset_;
    offset_ = align_up(offset_ + count * sizeof(T));
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  // Bytes taken so far (each piece aligned).
  std::size_t bytes_taken() const noexcept { return offset_; }
  // Bytes taken so far, plus slack to align an unaligned base.
  std::size_t bytes_needed() const noexcept { return offset_ + workspace_alignment; }

  // Aligns the base pointer (call once, before take()).
  static void* align_base(void* p) noexcept {
    const auto u = reinterpret_cast<std::uintptr_t>(p);
    return reinterpret_cast<void*>((u + workspace_alignment - 1) & ~(workspace_alignment - 1));
  }

 private:
  char* base_;
  std::size_t offset_ = 0;
};
HEED_ISA_END

}  // namespace heed
