#include "core/optim/clip_grad.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace dtrain::optim {

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  // Sum of squares per gradient, accumulated on the first gradient's device so that there is a
  // single device-to-host copy at the end. Half-precision gradients are squared in f32.
  Tensor total;
  for (const Tensor& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    Tensor g = p.grad();
    if (is_half(g.dtype())) g = g.to(DType::f32);
    Tensor sq = sum(square(g));
    if (!total.defined()) {
      total = sq;
    } else {
      if (sq.device() != total.device()) sq = sq.to(total.device());
      if (sq.dtype() != total.dtype()) sq = sq.to(total.dtype());
      total = add(total, sq);
    }
  }
  return total.defined() ? std::sqrt(total.item()) : 0.0;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  DTRAIN_CHECK(max_norm > 0, "clip_grad_norm: max_norm = ", max_norm, " must be > 0");
  const double norm = grad_norm(params);
  // PyTorch forms the coefficient from an f32 norm as max_norm * (1 / (norm + 1e-6)), in f32.
  const float coef = (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
  if (coef < 1.0f || std::isnan(coef)) {
    NoGradGuard no_grad;
    for (const Tensor& p : params) {
      if (!p.defined() || !p.grad().defined()) continue;
      Tensor g = p.grad();
      mul_(g, static_cast<double>(coef));
    }
  }
  return norm;
}

void clip_grad_value(const std::vector<Tensor>& params, double clip_value) {
  DTRAIN_CHECK(clip_value >= 0, "clip_grad_value: clip_value = ", clip_value, " must be >= 0");
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    Tensor g = p.grad();
    g.copy_(clamp(g, -clip_value, clip_value));
  }
}

}  // namespace dtrain::optim
