// The residual connections of the Transformer blocks (EncoderLayer, DecoderLayer), with each add
// fused into the kernel beside it:
//   residual_add(x, branch)             x + drop(branch)                     (dropout_add)
//   residual_add_norm(x, branch, norm)  h = x + drop(branch) and norm(h)     (add_layer_norm)
// drop is the residual dropout of the options (identity in evaluation or when it is 0). While it
// is active, residual_add_norm runs dropout_add and then the norm: there is no kernel fusing all
// three. Both equal the composed ops up to rounding.
#pragma once
#include "core/nn/layer_norm.h"
#include "core/nn/transformer_layer_options.h"
#include "core/ops/norm.h"

namespace dtrain::nn {

Tensor residual_add(const Tensor& x, const Tensor& branch, const TransformerLayerOptions& options,
                    bool training);

// .h = x + drop(branch), .y = norm(.h).
AddLayerNormResult residual_add_norm(const Tensor& x, const Tensor& branch, const LayerNorm& norm,
                                     const TransformerLayerOptions& options, bool training);

}  // namespace dtrain::nn
