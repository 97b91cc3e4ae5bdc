// The replaced global operator new / delete of the allocation fault tests (fault_allocator.hpp).
// Memory comes from malloc / posix_memalign and goes back with free, so sanitizers still see
// every allocation.
#include "alloc_fault/fault_allocator.hpp"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace fault {
namespace {

std::atomic<bool> armed{false};
std::atomic<long> counted{0};
std::atomic<long> fail_at{0};
std::atomic<bool> hit{false};

// One allocation: false when it is the armed one.
bool may_allocate() noexcept {
  if (!armed.load(std::memory_order_acquire)) return true;
  const long n = counted.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n != fail_at.load(std::memory_order_acquire)) return true;
  hit.store(true, std::memory_order_release);
  return false;
}

void* raw(std::size_t n, std::size_t align) noexcept {
  if (!may_allocate()) return nullptr;
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  void* p = nullptr;
  return posix_memalign(&p, align, n) == 0 ? p : nullptr;
}

void* raw_or_throw(std::size_t n, std::size_t align) {
  void* p = raw(n, align);
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  if (p == nullptr) throw std::bad_alloc();
#else
  if (p == nullptr) std::abort();
#endif
  return p;
}

}  // namespace

void arm(long n) noexcept {
  armed.store(false, std::memory_order_release);
  counted.store(0, std::memory_order_release);
  hit.store(false, std::memory_order_release);
  fail_at.store(n, std::memory_order_release);
  armed.store(true, std::memory_order_release);
}
void disarm() noexcept { armed.store(false, std::memory_order_release); }
long count() noexcept { return counted.load(std::memory_order_acquire); }
bool fired() noexcept { return hit.load(std::memory_order_acquire); }

}  // namespace fault

// The replaced forms. Aligned forms take their alignment; the others malloc's.
void* operator new(std::size_t n) { return fault::raw_or_throw(n, 0); }
void* operator new[](std::size_t n) { return fault::raw_or_throw(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return fault::raw(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return fault::raw(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return fault::raw_or_throw(n, std::size_t(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return fault::raw_or_throw(n, std::size_t(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return fault::raw(n, std::size_t(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return fault::raw(n, std::size_t(a));
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
