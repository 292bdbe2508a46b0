// Dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p);
// the identity in eval mode.
#pragma once
#include "core/nn/module.h"

namespace dtrain::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  double p() const { return p_; }

 private:
  double p_;
};

}  // namespace dtrain::nn
