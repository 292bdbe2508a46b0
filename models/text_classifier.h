// A Transformer text classifier (the encoder of "Attention Is All You Need", read out as in
// sentence-classification models): token embedding plus learned positions, pre-LN encoder blocks whose
// self-attention skips padding keys, the mean of the non-padding tokens, a LayerNorm and a linear head:
//   h0 = tok_embed[x] + pos_embed[0..T)
//   h_l = block_l(h_{l-1}), keys where x == pad masked
//   logits = head(norm(sum_t m_t h_L[t] / sum_t m_t)),  m_t = 1 where x_t != pad
// Mean pooling rather than a [CLS] token: the topic of a short text shows in a few content words
// anywhere in it, and the mean gives each of them a direct path to the head; a [CLS] token must learn
// to gather them through attention first, which BERT can afford after pre-training and a small model
// trained from scratch on a few thousand texts learns more slowly.
#pragma once
#include <memory>
#include <string>

#include "core/nn/nn.h"

namespace dtrain::models {

struct TextClassifierConfig {
  int64_t vocab_size = 1000;
  int64_t num_classes = 2;
  int64_t max_len = 64;
  int64_t dim = 64;
  int64_t depth = 2;
  int64_t heads = 4;
  int64_t mlp_dim = 128;
  double dropout = 0.0;
  int64_t pad_id = 0;
  // tiny and small, both sized to train in minutes on two CPU cores.
  static TextClassifierConfig preset(const std::string& name, int64_t vocab_size,
                                     int64_t num_classes, int64_t max_len);
};

class TextClassifier : public nn::Module {
 public:
  explicit TextClassifier(const TextClassifierConfig& config);
  // tokens i64 [B, T] (T <= max_len, padding pad_id) -> logits [B, num_classes]. Padding changes
  // nothing: a row's logits are those of its tokens alone.
  Tensor forward(const Tensor& tokens) const;
  // f32 [B, T], 1 where the token is padding; a row of nothing but padding is left unmasked (with every
  // key masked its attention would be 0/0).
  Tensor padding_mask(const Tensor& tokens) const;
  const TextClassifierConfig& config() const { return config_; }

  std::shared_ptr<nn::Embedding> tok_embed;
  std::shared_ptr<nn::PositionalEncoding> pos_embed;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;

 private:
  TextClassifierConfig config_;
};

// Forward FLOPs of one sequence of T tokens (multiply-adds count 2).
double text_classifier_forward_flops(const TextClassifierConfig& config, int64_t seq_len);

}  // namespace dtrain::models
