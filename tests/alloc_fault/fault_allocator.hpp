// A test allocator that fails the n-th allocation: fault_allocator.cpp replaces the global
// operator new / delete (every form: plain, array, nothrow, aligned) of the test binary, so every
// allocation heed makes (std::vector growth, new (std::nothrow), aligned K/V memory) goes through
// it. Armed with n, the n-th allocation from then on fails once (a throwing new throws
// std::bad_alloc, a nothrow new returns null); the others succeed.
#pragma once

namespace fault {

// Counts allocations from now on; the n-th (n >= 1) fails. n = 0 only counts.
void arm(long n) noexcept;
// Stops counting and failing.
void disarm() noexcept;
// Allocations counted since arm().
long count() noexcept;
// Whether the armed allocation was reached (and failed) since arm().
bool fired() noexcept;

// Arms on construction, disarms on destruction (a failed ASSERT leaves the allocator disarmed).
class scoped_fault {
 public:
  explicit scoped_fault(long n) noexcept { arm(n); }
  ~scoped_fault() { disarm(); }
  scoped_fault(const scoped_fault&) = delete;
  scoped_fault& operator=(const scoped_fault&) = delete;
};

}  // namespace fault
