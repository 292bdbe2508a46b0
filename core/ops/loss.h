#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

enum class Reduction { mean, sum, none };

// logits [N, C] (or [..., C], flattened), targets i64 [N] (or [...]). Like torch's cross_entropy:
// rows whose target is ignore_index count neither in the loss nor in the mean's denominator.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, Reduction reduction = Reduction::mean);

}  // namespace dtrain
