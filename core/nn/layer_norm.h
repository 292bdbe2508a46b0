// LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias.
#pragma once
#include "core/nn/module.h"

namespace dtrain::nn {

class LayerNorm : public Module {
 public:
  // weight ones, bias zeros (torch's initialisation). timm's ViT uses eps 1e-6.
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) const;
  // Throws the one-line error forward gives for an input whose last dim is not dim().
  void check_input(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  int64_t dim() const { return dim_; }
  double eps() const { return eps_; }

  Tensor weight;  // [dim], undefined without elementwise_affine
  Tensor bias;    // [dim], undefined without elementwise_affine

 private:
  int64_t dim_;
  double eps_;
};

}  // namespace dtrain::nn
