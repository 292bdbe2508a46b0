// Grad mode: when off, ops record no graph. NoGradGuard turns it off for a scope (thread-local).
#pragma once

namespace dtrain::autograd {

bool grad_enabled();
void set_grad_enabled(bool enabled);

class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace dtrain::autograd

namespace dtrain {
using autograd::NoGradGuard;
}
