// Conv2d over NCHW inputs: weight [out, in / groups, k, k], bias [out]; torch's initialisation
// (kaiming-uniform a = sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
#pragma once
#include "core/nn/module.h"

namespace dtrain::nn {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  Tensor weight;
  Tensor bias;

 private:
  int64_t stride_, padding_, groups_;
};

}  // namespace dtrain::nn
