#include "core/optim/rmsprop.h"

#include "core/ops/elementwise.h"

namespace dtrain::optim {

void RMSpropOptions::check() const {
  check_option(lr >= 0, kName, "lr", lr, ">= 0");
  check_option(alpha >= 0, kName, "alpha", alpha, ">= 0");
  check_option(eps >= 0, kName, "eps", eps, ">= 0");
  check_option(weight_decay >= 0, kName, "weight_decay", weight_decay, ">= 0");
  check_option(momentum >= 0, kName, "momentum", momentum, ">= 0");
}

void RMSprop::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const RMSpropOptions& o = options(group);
  Tensor g = grad_with_weight_decay(grad, param, o.weight_decay);
  Tensor& square_avg = state.tensor_or_fill("square_avg", param);
  update_moving_average_of_square(square_avg, g, o.alpha);

  Tensor avg;
  if (o.centered) {
    // Variance estimate E[g^2] - E[g]^2 instead of the raw second moment.
    Tensor& grad_avg = state.tensor_or_fill("grad_avg", param);
    update_moving_average(grad_avg, g, o.alpha);
    Tensor centered = square_avg.clone();
    addcmul_(centered, grad_avg, grad_avg, -1.0);
    avg = sqrt(centered);
  } else {
    avg = sqrt(square_avg);
  }
  avg = add(avg, o.eps);

  if (o.momentum > 0) {
    Tensor& buf = state.tensor_or_fill("momentum_buffer", param);
    mul_(buf, o.momentum);
    addcdiv_(buf, g, avg, 1.0);
    add_(param, buf, -o.lr);
  } else {
    addcdiv_(param, g, avg, -o.lr);
  }
}

}  // namespace dtrain::optim
