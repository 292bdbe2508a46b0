// Activations, softmax and dropout.
#pragma once
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"

namespace dtrain {

enum class GeluApprox { none, tanh };  // none = the exact erf form, x * Phi(x)

Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);  // x * sigmoid(x) (also called swish)
// Numerically stable (max subtracted) along `dim`.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Inverted dropout: in training, zeroes each element with probability p and scales the rest by
// 1/(1-p); identity otherwise. Draws from `gen` (the default generator when null).
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);
// residual + dropout(x) in one kernel (x and residual of one shape): the keep mask is drawn inline
// from Philox keyed by one 64-bit seed per call (taken from `gen`, the default generator when null)
// and the element index, the same on every backend, and recomputed in the backward instead of
// saved. A plain add in evaluation or when p is 0.
Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, bool training,
                   Generator* gen = nullptr);

}  // namespace dtrain
