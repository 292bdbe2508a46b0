#include "core/nn/feed_forward.h"

#include "core/ops/activation.h"

namespace dtrain::nn {

Tensor activate(const Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::gelu:
      return gelu(x, GeluApprox::none);
    case Activation::gelu_tanh:
      return gelu(x, GeluApprox::tanh);
    case Activation::relu:
      return relu(x);
  }
  throw Error("activate: unknown activation");
}

FeedForward::FeedForward(int64_t dim, int64_t hidden, double dropout, Activation activation)
    : Module("FeedForward"), dropout_(dropout), activation_(activation) {
  DTRAIN_CHECK(dropout >= 0.0 && dropout < 1.0, "FeedForward: dropout ", dropout,
               " must be in [0, 1)");
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim));
}

Tensor FeedForward::forward(const Tensor& x) const {
  auto scope = forward_scope();
  Tensor h = activate(fc1->forward(x), activation_);
  if (is_training() && dropout_ > 0.0) h = dropout(h, dropout_, true);
  return fc2->forward(h);
}

}  // namespace dtrain::nn
