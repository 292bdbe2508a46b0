// One Transformer decoder block: masked self-attention, cross-attention over the encoder's memory,
// feed-forward. Children norm1, attn, norm2, cross_attn, norm3, mlp.
//   pre-LN:  x = x + drop(attn(norm1(x)));  x = x + drop(cross_attn(norm2(x), memory));
//            x = x + drop(mlp(norm3(x)))
//   post-LN: x = norm1(x + drop(attn(x)));  x = norm2(x + drop(cross_attn(x, memory)));
//            x = norm3(x + drop(mlp(x)))
#pragma once
#include <memory>

#include "core/nn/layer_norm.h"
#include "core/nn/multi_head_attention.h"
#include "core/nn/transformer_layer_options.h"

namespace dtrain::nn {

class DecoderLayer : public Module {
 public:
  // memory_dim: features of the encoder output (0: dim).
  DecoderLayer(int64_t dim, int64_t num_heads, int64_t mlp_hidden,
               TransformerLayerOptions options = {}, int64_t memory_dim = 0);
  // x [B, T, dim], memory [B, S, memory_dim]. self_mask is for the self-attention (usually causal
  // plus the target's padding); memory_mask for the cross-attention (the source's padding).
  Tensor forward(const Tensor& x, const Tensor& memory,
                 const AttentionMask& self_mask = AttentionMask{.causal = true},
                 const AttentionMask& memory_mask = AttentionMask()) const;
  Tensor operator()(const Tensor& x, const Tensor& memory,
                    const AttentionMask& self_mask = AttentionMask{.causal = true},
                    const AttentionMask& memory_mask = AttentionMask()) const {
    return forward(x, memory, self_mask, memory_mask);
  }
  const TransformerLayerOptions& options() const { return options_; }

  std::shared_ptr<LayerNorm> norm1;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<LayerNorm> norm2;
  std::shared_ptr<MultiHeadAttention> cross_attn;
  std::shared_ptr<LayerNorm> norm3;
  std::shared_ptr<FeedForward> mlp;

 private:
  TransformerLayerOptions options_;
};

}  // namespace dtrain::nn
