#include "core/nn/linear.h"

#include <cmath>

#include "core/nn/init.h"
#include "core/ops/linalg.h"

namespace dtrain::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : Module("Linear"), in_features_(in_features), out_features_(out_features) {
  DTRAIN_CHECK(in_features >= 0 && out_features >= 0, "Linear(", in_features, ", ", out_features,
               "): feature counts must not be negative");
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias) {
    this->bias = register_parameter("bias", Tensor::empty({out_features}));
    double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
    init::uniform_(this->bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "Linear(", in_features_, ", ",
               out_features_, "): input of shape ", shape_str(x.shape()), " does not end in ",
               in_features_, " features");
  return linear(x, weight, bias);
}

}  // namespace dtrain::nn
