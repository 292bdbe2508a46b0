#include "core/optim/nadam.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace dtrain::optim {

void NAdamOptions::check() const {
  check_adam_family_options(*this);
  check_option(momentum_decay >= 0, kName, "momentum_decay", momentum_decay, ">= 0");
}

void NAdam::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const NAdamOptions& o = options(group);
  Tensor g = grad_with_weight_decay(grad, param, o.weight_decay);
  const double t = static_cast<double>(state.step);
  const double bias_correction2 = 1.0 - std::pow(o.beta2, t);
  const double mu = o.beta1 * (1.0 - 0.5 * std::pow(0.96, t * o.momentum_decay));
  const double mu_next = o.beta1 * (1.0 - 0.5 * std::pow(0.96, (t + 1.0) * o.momentum_decay));

  // PyTorch keeps the product of the mu's in an f32 tensor, so it is rounded to f32 after every
  // multiplication here as well.
  auto it = state.scalars.find("mu_product");
  float mu_product = it == state.scalars.end() ? 1.0f : static_cast<float>(it->second);
  mu_product *= static_cast<float>(mu);
  const float mu_product_next = mu_product * static_cast<float>(mu) * static_cast<float>(mu_next);
  state.scalars["mu_product"] = mu_product;

  Tensor& exp_avg = state.tensor_or_fill("exp_avg", param);
  Tensor& exp_avg_sq = state.tensor_or_fill("exp_avg_sq", param);
  update_moving_average(exp_avg, g, o.beta1);
  update_moving_average_of_square(exp_avg_sq, g, o.beta2);

  Tensor denom = sqrt(mul(exp_avg_sq, 1.0 / bias_correction2));
  denom = add(denom, o.eps);
  addcdiv_(param, g, denom, -o.lr * (1.0 - mu) / (1.0 - mu_product));
  addcdiv_(param, exp_avg, denom, -o.lr * mu_next / (1.0 - mu_product_next));
}

}  // namespace dtrain::optim
