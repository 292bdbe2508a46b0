#include "core/nn/residual.h"

#include "core/ops/activation.h"

namespace dtrain::nn {

Tensor residual_add(const Tensor& x, const Tensor& branch, const TransformerLayerOptions& options,
                    bool training) {
  return dropout_add(branch, x, options.dropout, training);
}

AddLayerNormResult residual_add_norm(const Tensor& x, const Tensor& branch, const LayerNorm& norm,
                                     const TransformerLayerOptions& options, bool training) {
  if (training && options.dropout > 0.0) {
    Tensor h = dropout_add(branch, x, options.dropout, true);
    return {h, norm.forward(h)};
  }
  auto scope = norm.forward_scope();  // the norm's profiler event, as norm.forward would open
  norm.check_input(x);
  return add_layer_norm(branch, x, norm.weight, norm.bias, norm.eps());
}

}  // namespace dtrain::nn
