#include "core/optim/adagrad.h"

#include "core/ops/elementwise.h"

namespace dtrain::optim {

void AdagradOptions::check() const {
  check_option(lr >= 0, kName, "lr", lr, ">= 0");
  check_option(lr_decay >= 0, kName, "lr_decay", lr_decay, ">= 0");
  check_option(weight_decay >= 0, kName, "weight_decay", weight_decay, ">= 0");
  check_option(initial_accumulator_value >= 0, kName, "initial_accumulator_value",
               initial_accumulator_value, ">= 0");
  check_option(eps >= 0, kName, "eps", eps, ">= 0");
}

void Adagrad::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const AdagradOptions& o = options(group);
  Tensor g = grad_with_weight_decay(grad, param, o.weight_decay);
  const double clr = o.lr / (1.0 + static_cast<double>(state.step - 1) * o.lr_decay);
  Tensor& state_sum = state.tensor_or_fill("sum", param, o.initial_accumulator_value);
  addcmul_(state_sum, g, g, 1.0);
  Tensor denom = add(sqrt(state_sum), o.eps);
  addcdiv_(param, g, denom, -clr);
}

}  // namespace dtrain::optim
