// Host-side helpers the CUDA kernel files share (plain C++).
#pragma once
#include <string>

#include "core/tensor/tensor.h"

namespace dtrain::cuda {

// t itself when it is contiguous and of dtype d, else a contiguous copy of it in dtype d (same device).
// Kernels written for one dtype per operand use it to accept mixed-dtype calls.
Tensor contiguous_as(const Tensor& t, DType d);
// An f32 tensor of t's shape on t's device, or an undefined tensor when t is undefined.
Tensor f32_like(const Tensor& t);
// Throws a dtrain::Error naming `op` unless t is defined, on a CUDA device, and contiguous.
void check_cuda_tensor(const Tensor& t, const char* op, const char* what);

}  // namespace dtrain::cuda
