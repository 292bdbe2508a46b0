#include "core/nn/conv2d.h"

#include <cmath>

#include "core/nn/init.h"
#include "core/ops/conv.h"

namespace dtrain::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, int64_t groups, bool bias)
    : Module("Conv2d"), stride_(stride), padding_(padding), groups_(groups) {
  DTRAIN_CHECK(groups > 0 && in_channels % groups == 0 && out_channels % groups == 0,
               "Conv2d: ", in_channels, " input and ", out_channels,
               " output channels are not divisible by ", groups, " groups");
  weight = register_parameter(
      "weight", Tensor::empty({out_channels, in_channels / groups, kernel_size, kernel_size}));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(init::fan_in_and_fan_out(weight).first));
    this->bias = register_parameter("bias", Tensor::empty({out_channels}));
    init::uniform_(this->bias, -bound, bound);
  }
}

Tensor Conv2d::forward(const Tensor& x) const {
  auto scope = forward_scope();
  return conv2d(x, weight.to(x.dtype()), bias.defined() ? bias.to(x.dtype()) : Tensor(), stride_,
                padding_, groups_);
}

}  // namespace dtrain::nn
