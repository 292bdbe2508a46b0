#include "core/nn/decoder_layer.h"

#include "core/nn/residual.h"

namespace dtrain::nn {

DecoderLayer::DecoderLayer(int64_t dim, int64_t num_heads, int64_t mlp_hidden,
                           TransformerLayerOptions options, int64_t memory_dim)
    : Module("DecoderLayer"), options_(options) {
  check_layer_options("DecoderLayer", options);
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, options.eps));
  attn = register_module(
      "attn", std::make_shared<MultiHeadAttention>(
                  dim, num_heads,
                  AttentionOptions{.qkv_bias = options.qkv_bias, .dropout = options.attn_dropout}));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, options.eps));
  cross_attn = register_module("cross_attn",
                               std::make_shared<MultiHeadAttention>(
                                   dim, num_heads,
                                   AttentionOptions{.qkv_bias = options.qkv_bias,
                                                    .dropout = options.attn_dropout,
                                                    .cross = true,
                                                    .kv_dim = memory_dim > 0 ? memory_dim : dim}));
  norm3 = register_module("norm3", std::make_shared<LayerNorm>(dim, options.eps));
  mlp = register_module(
      "mlp", std::make_shared<FeedForward>(dim, mlp_hidden, options.dropout, options.activation));
}

Tensor DecoderLayer::forward(const Tensor& x, const Tensor& memory, const AttentionMask& self_mask,
                             const AttentionMask& memory_mask) const {
  auto scope = forward_scope();
  const bool training = is_training();
  // The residual adds run fused: into the norm that follows them, or into the dropout before them
  // (core/nn/residual.h).
  if (options_.pre_norm) {
    auto [h1, y1] = residual_add_norm(x, attn->forward(norm1->forward(x), self_mask), *norm2,
                                      options_, training);
    auto [h2, y2] = residual_add_norm(h1, cross_attn->forward(y1, memory, memory_mask), *norm3,
                                      options_, training);
    return residual_add(h2, mlp->forward(y2), options_, training);
  }
  Tensor h = residual_add_norm(x, attn->forward(x, self_mask), *norm1, options_, training).y;
  h = residual_add_norm(h, cross_attn->forward(h, memory, memory_mask), *norm2, options_, training)
          .y;
  return residual_add_norm(h, mlp->forward(h), *norm3, options_, training).y;
}

}  // namespace dtrain::nn
