// Joining and splitting (views are Tensor methods, defined in core/ops/view.cpp).
#pragma once
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Pieces of `split_size` along dim (the last may be smaller); each is a view.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);

}  // namespace dtrain
