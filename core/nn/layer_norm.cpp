#include "core/nn/layer_norm.h"

#include "core/ops/norm.h"

namespace dtrain::nn {

LayerNorm::LayerNorm(int64_t dim, double eps, bool elementwise_affine)
    : Module("LayerNorm"), dim_(dim), eps_(eps) {
  DTRAIN_CHECK(dim > 0, "LayerNorm(", dim, "): the normalised dim must be positive");
  DTRAIN_CHECK(eps > 0.0, "LayerNorm(", dim, "): eps ", eps, " must be positive");
  if (elementwise_affine) {
    weight = register_parameter("weight", Tensor::ones({dim}));
    bias = register_parameter("bias", Tensor::zeros({dim}));
  }
}

void LayerNorm::check_input(const Tensor& x) const {
  DTRAIN_CHECK(x.dim() >= 1 && x.size(-1) == dim_, "LayerNorm(", dim_, "): input of shape ",
               shape_str(x.shape()), " does not end in ", dim_, " features");
}

Tensor LayerNorm::forward(const Tensor& x) const {
  auto scope = forward_scope();
  check_input(x);
  return layer_norm(x, weight, bias, eps_);
}

}  // namespace dtrain::nn
