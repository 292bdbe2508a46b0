#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

// Normalises over the last dim: (x - mean) / sqrt(var + eps) * weight + bias (biased variance).
// weight and bias [x.size(-1)] may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace dtrain
