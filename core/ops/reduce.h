// Reductions. dims may be negative; an empty dims list reduces over everything.
#pragma once
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain {

Tensor sum(const Tensor& x);  // scalar (shape [])
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max along one dim; the gradient flows to the (first) arg max.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);                                        // over everything
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, not differentiable

}  // namespace dtrain
