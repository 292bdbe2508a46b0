#include "core/amp/loss_scaler.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace dtrain::amp {

void LossScalerOptions::check() const {
  DTRAIN_CHECK(init_scale > 0 && std::isfinite(init_scale),
               "DynamicLossScaler: init_scale = ", init_scale, " must be positive and finite");
  DTRAIN_CHECK(growth_factor > 1, "DynamicLossScaler: growth_factor = ", growth_factor,
               " must be above 1");
  DTRAIN_CHECK(backoff_factor > 0 && backoff_factor < 1,
               "DynamicLossScaler: backoff_factor = ", backoff_factor, " must be in (0, 1)");
  DTRAIN_CHECK(growth_interval > 0, "DynamicLossScaler: growth_interval = ", growth_interval,
               " must be positive");
}

DynamicLossScaler::DynamicLossScaler(LossScalerOptions options)
    : options_(options), scale_(options.enabled ? options.init_scale : 1.0) {
  options_.check();
}

Tensor DynamicLossScaler::scale(const Tensor& loss) const {
  if (!options_.enabled) return loss;
  return mul(loss, scale_);
}

Tensor inf_or_nan_sum(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor s = sum(mul(t, 0.0));
  return s.dtype() == DType::f32 ? s : s.to(DType::f32);
}

bool has_inf_or_nan(const Tensor& t) { return std::isnan(inf_or_nan_sum(t).item()); }

bool DynamicLossScaler::unscale(const std::vector<Tensor>& params) {
  if (!options_.enabled) return false;
  if (unscaled_) return found_inf_;
  NoGradGuard no_grad;
  const double inv = 1.0 / scale_;
  Tensor nan_sum;  // NaN when any gradient holds an inf or a NaN
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    mul_(g, inv);
    Tensor s = inf_or_nan_sum(g);
    nan_sum = nan_sum.defined() ? add(nan_sum, s.to(nan_sum.device())) : s;
  }
  if (!nan_sum.defined()) nan_sum = Tensor::zeros({}, DType::f32);
  // 1 where the sum is NaN (NaN is the one value not equal to itself), then every rank's maximum.
  Tensor found = rsub(1.0, eq(nan_sum, nan_sum));
  if (reducer_) reducer_(found);
  found_inf_ = found.item() > 0.0;
  unscaled_ = true;
  return found_inf_;
}

bool DynamicLossScaler::step(const std::vector<Tensor>& params,
                             const std::function<void()>& optimizer_step) {
  if (!options_.enabled) {
    optimizer_step();
    return true;
  }
  const bool overflow = unscale(params);
  if (!overflow) optimizer_step();
  // Scale update: back off on overflow, grow after growth_interval clean steps in a row.
  if (overflow) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    ++skipped_;
  } else if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  unscaled_ = false;
  found_inf_ = false;
  return !overflow;
}

void DynamicLossScaler::load_state(const State& s) {
  DTRAIN_CHECK(s.scale > 0 && std::isfinite(s.scale), "DynamicLossScaler::load_state: scale ",
               s.scale, " must be positive and finite");
  DTRAIN_CHECK(s.growth_tracker >= 0, "DynamicLossScaler::load_state: growth_tracker ",
               s.growth_tracker, " must not be negative");
  scale_ = s.scale;
  growth_tracker_ = s.growth_tracker;
  unscaled_ = false;
  found_inf_ = false;
}

}  // namespace dtrain::amp
