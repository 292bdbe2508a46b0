#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

// weight [V, D], indices i64 of any shape -> [*indices.shape, D]. Rows at padding_idx get no gradient
// (padding_idx < 0: none). An index outside [0, V) is an error naming it.
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);

}  // namespace dtrain
