#include "core/nn/gated_fusion.h"

#include "core/ops/activation.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape.h"

namespace dtrain::nn {

GatedFusion::GatedFusion(int64_t dim, bool bias) : Module("GatedFusion"), dim_(dim) {
  DTRAIN_CHECK(dim > 0, "GatedFusion(", dim, "): the width must be positive");
  gate = register_module("gate", std::make_shared<Linear>(2 * dim, dim, bias));
}

Tensor GatedFusion::forward(const Tensor& x_a, const Tensor& x_b) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(x_a.defined() && x_b.defined(), "GatedFusion(", dim_, "): x_a or x_b is undefined");
  DTRAIN_CHECK(x_a.dim() >= 1 && x_a.size(-1) == dim_ && x_a.shape() == x_b.shape(), "GatedFusion(",
               dim_, "): x_a of shape ", shape_str(x_a.shape()), " and x_b of shape ",
               shape_str(x_b.shape()), " must be one shape [..., ", dim_, "]");
  Tensor g = sigmoid(gate->forward(cat({x_a, x_b}, x_a.dim() - 1)));
  return add(x_b, mul(g, sub(x_a, x_b)));
}

}  // namespace dtrain::nn
