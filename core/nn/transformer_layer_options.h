// Options shared by EncoderLayer and DecoderLayer, and what the two blocks do alike with them.
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

// Throws unless the options are valid for `layer` (the block's name, for the message).
void check_layer_options(const char* layer, const TransformerLayerOptions& options);

}  // namespace dtrain::nn
