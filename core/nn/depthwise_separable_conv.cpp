#include "core/nn/depthwise_separable_conv.h"

namespace dtrain::nn {

DepthwiseSeparableConv2d::DepthwiseSeparableConv2d(int64_t in_channels, int64_t out_channels,
                                                   int64_t kernel_size,
                                                   DepthwiseSeparableConv2dOptions options)
    : Module("DepthwiseSeparableConv2d"),
      in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_size_(kernel_size) {
  DTRAIN_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0 && options.stride > 0 &&
                   options.padding >= 0,
               "DepthwiseSeparableConv2d(", in_channels, ", ", out_channels, ", kernel ",
               kernel_size, ", stride ", options.stride, ", padding ", options.padding,
               "): channels, kernel and stride must be positive and padding not negative");
  depthwise = register_module(
      "depthwise", std::make_shared<Conv2d>(in_channels, in_channels, kernel_size, options.stride,
                                            options.padding, in_channels, options.depthwise_bias));
  pointwise = register_module("pointwise", std::make_shared<Conv2d>(in_channels, out_channels, 1, 1,
                                                                    0, 1, options.pointwise_bias));
}

Tensor DepthwiseSeparableConv2d::forward(const Tensor& x) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(x.defined() && x.dim() == 4 && x.size(1) == in_channels_,
               "DepthwiseSeparableConv2d(", in_channels_, ", ", out_channels_, ", kernel ",
               kernel_size_, "): input of shape ",
               x.defined() ? shape_str(x.shape()) : std::string("(undefined)"), " is not [B, ",
               in_channels_, ", H, W]");
  return pointwise->forward(depthwise->forward(x));
}

}  // namespace dtrain::nn
