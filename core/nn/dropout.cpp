#include "core/nn/dropout.h"

#include "core/ops/activation.h"

namespace dtrain::nn {

Dropout::Dropout(double p) : Module("Dropout"), p_(p) {
  DTRAIN_CHECK(p >= 0.0 && p < 1.0, "Dropout(", p, "): p must be in [0, 1)");
}

Tensor Dropout::forward(const Tensor& x) const {
  auto scope = forward_scope();
  if (!is_training() || p_ == 0.0) return x;
  return dropout(x, p_, true);
}

}  // namespace dtrain::nn
