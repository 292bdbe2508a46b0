#include "core/optim/adamax.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace dtrain::optim {

void AdamaxOptions::check() const { check_adam_family_options(*this); }

void Adamax::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const AdamaxOptions& o = options(group);
  Tensor g = grad_with_weight_decay(grad, param, o.weight_decay);
  Tensor& exp_avg = state.tensor_or_fill("exp_avg", param);
  Tensor& exp_inf = state.tensor_or_fill("exp_inf", param);
  update_moving_average(exp_avg, g, o.beta1);
  mul_(exp_inf, o.beta2);
  exp_inf.copy_(maximum(exp_inf, add(abs(g), o.eps)));
  const double clr = o.lr / (1.0 - std::pow(o.beta1, static_cast<double>(state.step)));
  addcdiv_(param, exp_avg, exp_inf, -clr);
}

}  // namespace dtrain::optim
