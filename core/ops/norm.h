#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

// Normalises over the last dim: (x - mean) / sqrt(var + eps) * weight + bias (biased variance).
// weight and bias [x.size(-1)] may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// The residual add of a pre-LN block fused with the layer norm after it:
//   h = x + residual,  y = layer_norm(h, weight, bias, eps)
// computed in one kernel, and differentiated in one kernel: the gradient of x and of residual is
// dh + d y / d h applied to dy. Equal to add then layer_norm up to rounding.
struct AddLayerNormResult {
  Tensor h;  // x + residual (the residual stream)
  Tensor y;  // layer_norm(h)
};
// x and residual of one shape, dtype and device; weight and bias as for layer_norm.
AddLayerNormResult add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                  const Tensor& bias, double eps = 1e-5);

}  // namespace dtrain
