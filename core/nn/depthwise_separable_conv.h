// Depthwise-separable convolution (MobileNet) over NCHW inputs:
//   depthwise: y[b, c] = x[b, c] * K_c (+ b_c)       one k x k filter per channel, K [C, 1, k, k]
//              (torch.nn.Conv2d(C, C, k, stride, padding, groups=C))
//   pointwise: out[b, o] = sum_c P[o, c] y[b, c] (+ p_o)   a 1x1 conv, P [C_out, C, 1, 1]
// C k^2 + C C_out weights instead of a full conv's C C_out k^2. The parts are nn::Conv2d children
// `depthwise` and `pointwise` (depthwise.weight/bias, pointwise.weight/bias, torch's layouts and
// initialisation). The depthwise step is conv2d with groups = C, which core/ops supports directly
// (on CPU the grouped kernel loops over the C groups, each a 1-channel convolution).
#pragma once
#include <memory>

#include "core/nn/conv2d.h"

namespace dtrain::nn {

struct DepthwiseSeparableConv2dOptions {
  int64_t stride = 1;   // of the depthwise step
  int64_t padding = 0;  // of the depthwise step
  bool depthwise_bias = true;
  bool pointwise_bias = true;
};

class DepthwiseSeparableConv2d : public Module {
 public:
  DepthwiseSeparableConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                           DepthwiseSeparableConv2dOptions options = {});
  // x [B, C_in, H, W] -> [B, C_out, H', W'], H' = (H + 2 padding - k) / stride + 1.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  std::shared_ptr<Conv2d> depthwise;  // C_in -> C_in, groups = C_in
  std::shared_ptr<Conv2d> pointwise;  // C_in -> C_out, 1x1

 private:
  int64_t in_channels_, out_channels_, kernel_size_;
};

}  // namespace dtrain::nn
