#include "core/optim/clip_grad.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace dtrain::optim {

Tensor grad_norm_tensor(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  // Sum of squares per gradient, accumulated on the first gradient's device. Half-precision
  // gradients are squared in f32.
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
  return total.defined() ? sqrt(total) : total;
}

double grad_norm(const std::vector<Tensor>& params) {
  const Tensor norm = grad_norm_tensor(params);
  return norm.defined() ? norm.item() : 0.0;
}

Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, double max_norm) {
  DTRAIN_CHECK(max_norm > 0, "clip_grad_norm: max_norm = ", max_norm, " must be > 0");
  Tensor norm = grad_norm_tensor(params);
  if (!norm.defined()) return norm;
  NoGradGuard no_grad;
  // PyTorch forms the coefficient from an f32 norm as max_norm * (1 / (norm + 1e-6)), in f32, and
  // clamps it at 1 (a NaN norm gives a NaN coefficient, which the gradients then carry).
  const Tensor coef = clamp(mul(rdiv(1.0, add(norm, 1e-6)), max_norm), 0.0, 1.0);
  for (const Tensor& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    Tensor g = p.grad();
    mul_(g, coef.device() == g.device() && coef.dtype() == g.dtype()
                ? coef
                : coef.to(g.device()).to(g.dtype()));
  }
  return norm;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  const Tensor norm = clip_grad_norm_tensor(params, max_norm);
  return norm.defined() ? norm.item() : 0.0;
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
