#include "core/nn/encoder_layer.h"

#include "core/ops/activation.h"
#include "core/ops/elementwise.h"

namespace dtrain::nn {

EncoderLayer::EncoderLayer(int64_t dim, int64_t num_heads, int64_t mlp_hidden,
                           TransformerLayerOptions options)
    : Module("EncoderLayer"), options_(options) {
  DTRAIN_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, "EncoderLayer: dropout ",
               options.dropout, " must be in [0, 1)");
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, options.eps));
  attn = register_module(
      "attn", std::make_shared<MultiHeadAttention>(
                  dim, num_heads,
                  AttentionOptions{.qkv_bias = options.qkv_bias, .dropout = options.attn_dropout}));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, options.eps));
  mlp = register_module(
      "mlp", std::make_shared<FeedForward>(dim, mlp_hidden, options.dropout, options.activation));
}

Tensor EncoderLayer::residual_dropout(const Tensor& x) const {
  if (!is_training() || options_.dropout == 0.0) return x;
  return dropout(x, options_.dropout, true);
}

Tensor EncoderLayer::forward(const Tensor& x, const AttentionMask& mask) const {
  if (options_.pre_norm) {
    Tensor h = x + residual_dropout(attn->forward(norm1->forward(x), mask));
    return h + residual_dropout(mlp->forward(norm2->forward(h)));
  }
  Tensor h = norm1->forward(x + residual_dropout(attn->forward(x, mask)));
  return norm2->forward(h + residual_dropout(mlp->forward(h)));
}

}  // namespace dtrain::nn
