// any_policy: a type-erased policy (one virtual call per head per eviction, never per token), so
// engines can pick a policy at run time and plug-ins can supply their own.
//
// Copies share the held policy (reference counted), as copies of a std::shared_ptr would. The
// converting constructor allocates with a throwing new (std::bad_alloc); any_policy::make() is the
// non-throwing way (the policy registry and the C API use it). Both check the policy contract at
// compile time (policy_traits.hpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "heed/core/status.hpp"
#include "heed/policy/policy.hpp"
#include "heed/policy/policy_traits.hpp"

namespace heed {

class any_policy {
 public:
  any_policy() = default;
  template <class P, class = std::enable_if_t<!std::is_same<std::decay_t<P>, any_policy>::value>>
  any_policy(P&& p)  // NOLINT(google-explicit-constructor): any policy converts
      : self_(new_model<std::decay_t<P>>(std::forward<P>(p))) {}

  // Holds p in *out (whose previous policy is released); out_of_memory (out unchanged) when the
  // allocation fails. Moving p must not throw (every heed policy's move is noexcept).
  template <class P>
  static status make(P p, any_policy* out) noexcept {
    static_assert(!std::is_same<P, any_policy>::value, "already an any_policy");
    if constexpr (!detail::check_policy<P>()) {
      (void)p, (void)out;
      return status::invalid_argument;  // not compiled: a contract static_assert failed
    } else {
      if (out == nullptr) return status::null_pointer;
      concept_t* m = new (std::nothrow) model<P>(std::move(p));
      if (m == nullptr) return status::out_of_memory;
      any_policy held;
      held.self_ = m;
      *out = std::move(held);
      return status::ok;
    }
  }

  any_policy(const any_policy& o) noexcept : self_(o.self_) {
    if (self_) self_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  any_policy(any_policy&& o) noexcept : self_(o.self_) { o.self_ = nullptr; }
  any_policy& operator=(const any_policy& o) noexcept {
    any_policy copy(o);
    std::swap(self_, copy.self_);
    return *this;
  }
  any_policy& operator=(any_policy&& o) noexcept {
    any_policy moved(std::move(o));
    std::swap(self_, moved.self_);
    return *this;
  }
  ~any_policy() {
    if (self_ && self_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete self_;
  }

  explicit operator bool() const noexcept { return self_ != nullptr; }

  const char* name() const noexcept { return self_ ? self_->name() : "none"; }
  score_needs needs() const noexcept { return self_ ? self_->needs() : score_needs{}; }
  selection_spec selection(std::int64_t budget) const noexcept {
    return self_ ? self_->selection(budget) : selection_spec{};
  }
  std::size_t score_workspace_size(const policy_input& in) const noexcept {
    return self_ ? self_->score_workspace_size(in) : 0;
  }
  status score(const policy_input& in, int head, float* out, workspace ws) noexcept {
    return self_ ? self_->score(in, head, out, ws) : status::invalid_argument;
  }
  std::int64_t head_budget(const policy_input& in, int head, std::int64_t target) const noexcept {
    return self_ ? self_->head_budget(in, head, target) : target;
  }
  // The held policy's write gate (everything enters when it has none); gates() says whether it
  // has one, so the eviction loop skips the call (one virtual call per step less) when not.
  status admit(const admission_input& in, int head, bool& admitted) noexcept {
    if (!self_) {
      admitted = true;
      return status::ok;
    }
    return self_->admit(in, head, admitted);
  }
  bool gates() const noexcept { return self_ && self_->gates(); }

 private:
  struct concept_t {
    std::atomic<long> refs{1};
    virtual ~concept_t() = default;
    virtual const char* name() const noexcept = 0;
    virtual score_needs needs() const noexcept = 0;
    virtual selection_spec selection(std::int64_t budget) const noexcept = 0;
    virtual std::size_t score_workspace_size(const policy_input& in) const noexcept = 0;
    virtual status score(const policy_input& in, int head, float* out, workspace ws) noexcept = 0;
    virtual std::int64_t head_budget(const policy_input& in, int head,
                                     std::int64_t target) const noexcept = 0;
    virtual status admit(const admission_input& in, int head, bool& admitted) noexcept = 0;
    virtual bool gates() const noexcept = 0;
  };
  template <class P>
  struct model final : concept_t {
    template <class Q>
    explicit model(Q&& q) : p(std::forward<Q>(q)) {}
    const char* name() const noexcept override { return p.name(); }
    score_needs needs() const noexcept override { return p.needs(); }
    selection_spec selection(std::int64_t budget) const noexcept override {
      return p.selection(budget);
    }
    std::size_t score_workspace_size(const policy_input& in) const noexcept override {
      return p.score_workspace_size(in);
    }
    status score(const policy_input& in, int head, float* out, workspace ws) noexcept override {
      return p.score(in, head, out, ws);
    }
    std::int64_t head_budget(const policy_input& in, int head,
                             std::int64_t target) const noexcept override {
      return p.head_budget(in, head, target);
    }
    status admit(const admission_input& in, int head, bool& admitted) noexcept override {
      return detail::policy_admit(p, in, head, admitted);
    }
    bool gates() const noexcept override { return detail::policy_gates(p); }
    P p;
  };
  // The held model of P, once P passed its contract (policy_traits.hpp; a broken P stops at the
  // static_assert, before model<P> is instantiated).
  template <class P, class Q>
  static concept_t* new_model(Q&& q) {
    if constexpr (!detail::check_policy<P>()) {
      (void)q;
      return nullptr;  // not compiled: a contract static_assert failed
    } else {
      return new model<P>(std::forward<Q>(q));
    }
  }

  concept_t* self_ = nullptr;
};

}  // namespace heed
