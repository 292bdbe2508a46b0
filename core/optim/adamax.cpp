#include "core/optim/adamax.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace dtrain::optim {

void AdamaxOptions::check() const {
  check_option(lr >= 0, kName, "lr", lr, ">= 0");
  check_option(eps >= 0, kName, "eps", eps, ">= 0");
  check_option(beta1 >= 0 && beta1 < 1, kName, "beta1", beta1, "in [0, 1)");
  check_option(beta2 >= 0 && beta2 < 1, kName, "beta2", beta2, "in [0, 1)");
  check_option(weight_decay >= 0, kName, "weight_decay", weight_decay, ">= 0");
}

void Adamax::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const AdamaxOptions& o = options(group);
  Tensor g = grad_with_weight_decay(grad, param, o.weight_decay);
  Tensor& exp_avg = state.tensor_or_fill("exp_avg", param);
  Tensor& exp_inf = state.tensor_or_fill("exp_inf", param);
  mul_(exp_avg, o.beta1);
  add_(exp_avg, g, 1.0 - o.beta1);
  mul_(exp_inf, o.beta2);
  exp_inf.copy_(maximum(exp_inf, add(abs(g), o.eps)));
  const double clr = o.lr / (1.0 - std::pow(o.beta1, static_cast<double>(state.step)));
  addcdiv_(param, exp_avg, exp_inf, -clr);
}

}  // namespace dtrain::optim
