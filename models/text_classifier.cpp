#include "models/text_classifier.h"

#include "core/ops/ops.h"

namespace dtrain::models {

TextClassifierConfig TextClassifierConfig::preset(const std::string& name, int64_t vocab_size,
                                                  int64_t num_classes, int64_t max_len) {
  TextClassifierConfig c;
  c.vocab_size = vocab_size;
  c.num_classes = num_classes;
  c.max_len = max_len;
  if (name == "tiny") {
    c.dim = 32, c.depth = 1, c.heads = 2, c.mlp_dim = 64;
  } else if (name == "small" || name == "fm") {
    c.dim = 64, c.depth = 2, c.heads = 4, c.mlp_dim = 128;
  } else {
    throw Error("unknown text classifier size '" + name + "': use tiny or small");
  }
  return c;
}

TextClassifier::TextClassifier(const TextClassifierConfig& c)
    : Module("TextClassifier"), config_(c) {
  DTRAIN_CHECK(c.dim % c.heads == 0, "text classifier: dim ", c.dim, " is not divisible by ",
               c.heads, " heads");
  DTRAIN_CHECK(c.pad_id >= 0 && c.pad_id < c.vocab_size, "text classifier: pad id ", c.pad_id,
               " is outside the vocabulary [0, ", c.vocab_size, ")");
  tok_embed =
      register_module("tok_embed", std::make_shared<nn::Embedding>(c.vocab_size, c.dim, c.pad_id));
  pos_embed =
      register_module("pos_embed", std::make_shared<nn::PositionalEncoding>(
                                       c.max_len, c.dim, nn::PositionKind::learned, c.dropout));
  blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
  nn::TransformerLayerOptions options{.pre_norm = true, .dropout = c.dropout};
  for (int64_t i = 0; i < c.depth; ++i) {
    blocks->push_back(std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, options));
  }
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim));
  head = register_module("head", std::make_shared<nn::Linear>(c.dim, c.num_classes));
  // GPT-2's initialisation: N(0, 0.02^2) for embeddings and linear weights, zero biases; the padding
  // row stays zero.
  nn::init::normal_(tok_embed->weight, 0.0, 0.02);
  for (auto& [name, module] : named_modules()) {
    if (auto* linear = dynamic_cast<nn::Linear*>(module)) {
      nn::init::normal_(linear->weight, 0.0, 0.02);
      if (linear->bias.defined()) {
        NoGradGuard no_grad;
        linear->bias.zero_();
      }
    }
  }
  NoGradGuard no_grad;
  tok_embed->weight.select(0, c.pad_id).zero_();
}

Tensor TextClassifier::padding_mask(const Tensor& tokens) const {
  return nn::token_padding_mask(tokens, config_.pad_id);
}

Tensor TextClassifier::forward(const Tensor& tokens) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(tokens.dim() == 2 && tokens.size(1) <= config_.max_len,
               "text classifier expects tokens [B, T] with T <= ", config_.max_len, ", got ",
               shape_str(tokens.shape()));
  Tensor h = pos_embed->forward(tok_embed->forward(tokens));
  nn::AttentionMask mask{.key_padding_mask = padding_mask(tokens)};
  for (size_t i = 0; i < blocks->size(); ++i) h = blocks->at<nn::EncoderLayer>(i)->forward(h, mask);
  // The mean over the tokens that are not padding; an all-padding row has none and pools to zero (its
  // count is clamped to 1).
  Tensor keep;
  {
    NoGradGuard no_grad;
    const Tensor pad_id =
        Tensor::full({}, static_cast<double>(config_.pad_id), tokens.dtype(), tokens.device());
    keep = rsub(1.0, eq(tokens, pad_id).to(DType::f32)).to(h.dtype());  // [B, T]
  }
  const Tensor count =
      clamp(sum(keep, {1}, true), 1.0, static_cast<double>(tokens.size(1)));  // [B, 1]
  const Tensor pooled = div(sum(mul(h, keep.unsqueeze(-1)), {1}), count);     // [B, dim]
  return head->forward(norm->forward(pooled));
}

double text_classifier_forward_flops(const TextClassifierConfig& c, int64_t t) {
  const double d = static_cast<double>(c.dim), n = static_cast<double>(t);
  const double per_block = n * 2.0 * (3 * d * d + d * d + 2 * d * c.mlp_dim) + 2.0 * 2 * n * n * d;
  return c.depth * per_block + 2.0 * d * c.num_classes;
}

}  // namespace dtrain::models
