#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

// NCHW. weight [C_out, C_in / groups, KH, KW]; bias [C_out] may be undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              int64_t stride = 1, int64_t padding = 0, int64_t groups = 1);
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);

}  // namespace dtrain
