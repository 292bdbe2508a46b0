// One Transformer encoder block; children norm1, attn, norm2, mlp, the names of timm's ViT Block
// (blocks.N.attn.qkv.weight, blocks.N.mlp.fc1.weight, ...).
//   pre-LN:  x = x + drop(attn(norm1(x)));  x = x + drop(mlp(norm2(x)))
//   post-LN: x = norm1(x + drop(attn(x)));  x = norm2(x + drop(mlp(x)))
#pragma once
#include <memory>

#include "core/nn/layer_norm.h"
#include "core/nn/multi_head_attention.h"
#include "core/nn/transformer_layer_options.h"

namespace dtrain::nn {

class EncoderLayer : public Module {
 public:
  EncoderLayer(int64_t dim, int64_t num_heads, int64_t mlp_hidden,
               TransformerLayerOptions options = {});
  // x [B, T, dim]; mask for the self-attention (padding of x, causal for a decoder-only model).
  Tensor forward(const Tensor& x, const AttentionMask& mask = AttentionMask()) const;
  Tensor operator()(const Tensor& x, const AttentionMask& mask = AttentionMask()) const {
    return forward(x, mask);
  }
  const TransformerLayerOptions& options() const { return options_; }

  std::shared_ptr<LayerNorm> norm1;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<LayerNorm> norm2;
  std::shared_ptr<FeedForward> mlp;

 private:
  TransformerLayerOptions options_;
};

}  // namespace dtrain::nn
