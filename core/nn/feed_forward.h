// The position-wise feed-forward block of a Transformer (timm's Mlp):
//   y = fc2(dropout(act(fc1(x)))),  fc1: dim -> hidden, fc2: hidden -> dim.
#pragma once
#include <memory>

#include "core/nn/linear.h"

namespace dtrain::nn {

// gelu is the exact erf form x * Phi(x) (timm, BERT); relu is the original Transformer's.
enum class Activation { gelu, gelu_tanh, relu };

Tensor activate(const Tensor& x, Activation activation);

class FeedForward : public Module {
 public:
  FeedForward(int64_t dim, int64_t hidden, double dropout = 0.0,
              Activation activation = Activation::gelu);
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  std::shared_ptr<Linear> fc1;
  std::shared_ptr<Linear> fc2;

 private:
  double dropout_;
  Activation activation_;
};

}  // namespace dtrain::nn
