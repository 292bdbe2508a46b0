#include "core/nn/encoder_layer.h"

#include "core/ops/activation.h"
#include "core/ops/elementwise.h"

namespace dtrain::nn {

EncoderLayer::EncoderLayer(int64_t dim, int64_t num_heads, int64_t mlp_hidden,
                           TransformerLayerOptions options)
    : Module("EncoderLayer"), options_(options) {
  check_layer_options("EncoderLayer", options);
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, options.eps));
  attn = register_module(
      "attn", std::make_shared<MultiHeadAttention>(
                  dim, num_heads,
                  AttentionOptions{.qkv_bias = options.qkv_bias, .dropout = options.attn_dropout}));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, options.eps));
  mlp = register_module(
      "mlp", std::make_shared<FeedForward>(dim, mlp_hidden, options.dropout, options.activation));
}

Tensor EncoderLayer::forward(const Tensor& x, const AttentionMask& mask) const {
  auto scope = forward_scope();
  auto drop = [&](const Tensor& branch) {
    return residual_dropout(branch, options_, is_training());
  };
  if (options_.pre_norm) {
    Tensor h = x + drop(attn->forward(norm1->forward(x), mask));
    return h + drop(mlp->forward(norm2->forward(h)));
  }
  Tensor h = norm1->forward(x + drop(attn->forward(x, mask)));
  return norm2->forward(h + drop(mlp->forward(h)));
}

}  // namespace dtrain::nn
