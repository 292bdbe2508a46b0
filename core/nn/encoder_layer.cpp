#include "core/nn/encoder_layer.h"

#include "core/nn/residual.h"

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
  const bool training = is_training();
  // The residual adds run fused: into the norm that follows them, or into the dropout before them
  // (core/nn/residual.h).
  if (options_.pre_norm) {
    auto [h, y] =
        residual_add_norm(x, attn->forward(norm1->forward(x), mask), *norm2, options_, training);
    return residual_add(h, mlp->forward(y), options_, training);
  }
  Tensor h = residual_add_norm(x, attn->forward(x, mask), *norm1, options_, training).y;
  return residual_add_norm(h, mlp->forward(h), *norm2, options_, training).y;
}

}  // namespace dtrain::nn
