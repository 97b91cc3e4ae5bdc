// any_policy: a type-erased policy (one virtual call per head per eviction, never per token), so
// engines can pick a policy at run time and plug-ins can supply their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include "heed/policy/policy.hpp"

namespace heed {

class any_policy {
 public:
  any_policy() = default;
  template <class P, class = std::enable_if_t<!std::is_same<std::decay_t<P>, any_policy>::value>>
  any_policy(P&& p)  // NOLINT(google-explicit-constructor): any policy converts
      : self_(new model<std::decay_t<P>>(std::forward<P>(p))) {}

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

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual const char* name() const noexcept = 0;
    virtual score_needs needs() const noexcept = 0;
    virtual selection_spec selection(std::int64_t budget) const noexcept = 0;
    virtual std::size_t score_workspace_size(const policy_input& in) const noexcept = 0;
    virtual status score(const policy_input& in, int head, float* out, workspace ws) noexcept = 0;
    virtual std::int64_t head_budget(const policy_input& in, int head,
                                     std::int64_t target) const noexcept = 0;
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
    P p;
  };
  std::shared_ptr<concept_t> self_;
};

}  // namespace heed
