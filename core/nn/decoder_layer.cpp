#include "core/nn/decoder_layer.h"

#include "core/ops/activation.h"
#include "core/ops/elementwise.h"

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
  auto drop = [&](const Tensor& branch) {
    return residual_dropout(branch, options_, is_training());
  };
  if (options_.pre_norm) {
    Tensor h = x + drop(attn->forward(norm1->forward(x), self_mask));
    h = h + drop(cross_attn->forward(norm2->forward(h), memory, memory_mask));
    return h + drop(mlp->forward(norm3->forward(h)));
  }
  Tensor h = norm1->forward(x + drop(attn->forward(x, self_mask)));
  h = norm2->forward(h + drop(cross_attn->forward(h, memory, memory_mask)));
  return norm3->forward(h + drop(mlp->forward(h)));
}

}  // namespace dtrain::nn
