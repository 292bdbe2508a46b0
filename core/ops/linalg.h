// Matrix products through the backend GEMM; transposed views are passed as transposed operands, not
// copied.
#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

// a [.., m, k] @ b [.., k, n] with batch dims broadcast; 1-D operands as in torch.matmul.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [.., in] @ weight[out, in]^T + bias[out] (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace dtrain
