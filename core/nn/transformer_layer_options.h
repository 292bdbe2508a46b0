// Options shared by EncoderLayer and DecoderLayer.
#pragma once
#include "core/nn/feed_forward.h"

namespace dtrain::nn {

struct TransformerLayerOptions {
  // Pre-LN (timm, GPT): x + f(norm(x)). Post-LN ("Attention Is All You Need"): norm(x + f(x)).
  bool pre_norm = true;
  double dropout = 0.0;       // on each residual branch and inside the feed-forward block
  double attn_dropout = 0.0;  // on the attention weights
  double eps = 1e-5;          // LayerNorm eps (timm's ViT: 1e-6)
  Activation activation = Activation::gelu;
  bool qkv_bias = true;
};

}  // namespace dtrain::nn
