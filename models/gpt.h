// GPT: a decoder-only Transformer (Radford et al.), causal, with learned positions and an output head
// tied to the token embedding:
//   h0 = tok_embed[idx] + pos_embed[0..T)
//   h_l = block_l(h_{l-1}) with causal self-attention (pre-LN)
//   logits = norm(h_L) tok_embed.weight^T
#pragma once
#include <memory>
#include <string>

#include "core/nn/nn.h"
#include "core/tensor/random.h"

namespace dtrain::models {

struct GptConfig {
  int64_t vocab_size = 128;
  int64_t max_len = 128;
  int64_t dim = 128;
  int64_t depth = 4;
  int64_t heads = 4;
  int64_t mlp_dim = 512;
  double dropout = 0.0;
  static GptConfig preset(const std::string& name, int64_t vocab_size, int64_t max_len);
};

class Gpt : public nn::Module {
 public:
  explicit Gpt(const GptConfig& config);
  // tokens i64 [B, T] (T <= max_len) -> logits [B, T, vocab]
  Tensor forward(const Tensor& tokens) const;

  // Recompute each block's forward in backward instead of keeping its activations
  // (core/nn/checkpoint.h): the same gradients for less memory and about one more forward.
  bool checkpoint_activations = false;
  // Appends `count` tokens to `prompt` (ids in [0, vocab_size)), each sampled with `gen` from
  // softmax(logits / temperature) restricted to the top_k likeliest tokens (top_k <= 0: all; equal
  // logits rank in id order, so top_k 1 is greedy); temperature <= 0 picks the arg max (the lowest id
  // among equals). The context is the last max_len tokens. The same seed gives the same tokens.
  std::vector<int64_t> generate(std::vector<int64_t> prompt, int64_t count, double temperature,
                                int64_t top_k, Generator& gen);
  const GptConfig& config() const { return config_; }

  std::shared_ptr<nn::Embedding> tok_embed;
  std::shared_ptr<nn::PositionalEncoding> pos_embed;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::LayerNorm> norm;

 private:
  GptConfig config_;
};

// Forward FLOPs per token (multiply-adds count 2) at context length T.
double gpt_forward_flops_per_token(const GptConfig& config, int64_t seq_len);

}  // namespace dtrain::models
