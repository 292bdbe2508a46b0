#include "core/amp/loss_scaler.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace dtrain::amp {

void LossScalerOptions::check() const {
  DTRAIN_CHECK(init_scale > 0 && std::isfinite(init_scale), "DynamicLossScaler: init_scale = ",
               init_scale, " must be positive and finite");
  DTRAIN_CHECK(growth_factor > 1, "DynamicLossScaler: growth_factor = ", growth_factor,
               " must be above 1");
  DTRAIN_CHECK(backoff_factor > 0 && backoff_factor < 1, "DynamicLossScaler: backoff_factor = ",
               backoff_factor, " must be in (0, 1)");
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

bool has_inf_or_nan(const Tensor& t) {
  NoGradGuard no_grad;
  return std::isnan(sum(mul(t, 0.0)).item());
}

bool DynamicLossScaler::unscale(const std::vector<Tensor>& params) {
  if (!options_.enabled) return false;
  if (unscaled_) return found_inf_;
  NoGradGuard no_grad;
  bool local = false;
  const double inv = 1.0 / scale_;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    mul_(g, inv);
    if (!local && has_inf_or_nan(g)) local = true;
  }
  found_inf_ = reducer_ ? reducer_(local) : local;
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
  DTRAIN_CHECK(s.scale > 0 && std::isfinite(s.scale), "DynamicLossScaler::load_state: scale ", s.scale,
               " must be positive and finite");
  DTRAIN_CHECK(s.growth_tracker >= 0, "DynamicLossScaler::load_state: growth_tracker ",
               s.growth_tracker, " must not be negative");
  scale_ = s.scale;
  growth_tracker_ = s.growth_tracker;
  unscaled_ = false;
  found_inf_ = false;
}

}  // namespace dtrain::amp
