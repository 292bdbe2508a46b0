// The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al.):
//   memory = encoder(src_embed(src) * sqrt(d) + PE)           post-LN blocks, then a final norm
//   h = decoder(tgt_embed(tgt_in) * sqrt(d) + PE, memory)      masked self-attn, cross-attn, MLP
//   logits = generator(h)
// Padding masks hide pad tokens from attention; the decoder's self-attention is causal.
// Checkpoints use torch.nn.Transformer's state_dict names (encoder.layers.N.self_attn.in_proj_weight,
// ...linear1, norm1, decoder.layers.N.multihead_attn..., encoder.norm, decoder.norm) through
// to_torch_state() / from_torch_state() (models/transformer_torch_names.cpp); the embeddings and the
// generator sit beside them.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/nn/nn.h"

namespace dtrain::models {

struct TransformerConfig {
  int64_t src_vocab = 64;
  int64_t tgt_vocab = 64;
  int64_t max_len = 64;
  int64_t dim = 128;
  int64_t encoder_layers = 2;
  int64_t decoder_layers = 2;
  int64_t heads = 4;
  int64_t mlp_dim = 512;
  double dropout = 0.1;
  int64_t pad_id = 0;
  static TransformerConfig preset(const std::string& name, int64_t src_vocab, int64_t tgt_vocab,
                                  int64_t max_len, int64_t pad_id);
};

class Transformer : public nn::Module {
 public:
  explicit Transformer(const TransformerConfig& config);
  // src i64 [B, S], tgt_in i64 [B, T] -> logits [B, T, tgt_vocab]
  Tensor forward(const Tensor& src, const Tensor& tgt_in) const;

  // Recompute each block's forward in backward instead of keeping its activations
  // (core/nn/checkpoint.h): the same gradients for less memory and about one more forward.
  bool checkpoint_activations = false;
  Tensor encode(const Tensor& src) const;
  Tensor decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src) const;
  // Greedy decoding of each source row: starts from bos and appends the arg max token until eos or
  // max_len tokens (at most config().max_len, the length of the position table). Returns the
  // generated ids without bos (and without eos).
  std::vector<std::vector<int64_t>> greedy_decode(const Tensor& src, int64_t bos_id, int64_t eos_id,
                                                  int64_t max_len);
  // Beam search of width `beam` for each source row (see the .cpp for the rules): the hypothesis with
  // the highest log p(y | x) / lp(|y|), GNMT's length penalty lp(L) = ((5 + L) / 6)^length_penalty
  // (Wu et al. 2016), where |y| counts the eos token (a hypothesis cut at max_len has none). Returns
  // the ids without bos and eos, as greedy_decode does; beam 1 gives greedy_decode's result.
  std::vector<std::vector<int64_t>> beam_search(const Tensor& src, int64_t bos_id, int64_t eos_id,
                                                int64_t max_len, int64_t beam,
                                                double length_penalty);
  // The same with a length limit per source row (max_lens[b] for row b), so that a row's result does
  // not depend on the other rows of its batch.
  std::vector<std::vector<int64_t>> beam_search(const Tensor& src, int64_t bos_id, int64_t eos_id,
                                                const std::vector<int64_t>& max_lens, int64_t beam,
                                                double length_penalty);
  const TransformerConfig& config() const { return config_; }

  // This model's state under torch.nn.Transformer's names (fused in_proj for cross-attention), and back.
  NamedTensors to_torch_state() const;
  void from_torch_state(const NamedTensors& state);

  std::shared_ptr<nn::Embedding> src_embed;
  std::shared_ptr<nn::Embedding> tgt_embed;
  std::shared_ptr<nn::PositionalEncoding> position;
  std::shared_ptr<nn::ModuleList> encoder_layers;
  std::shared_ptr<nn::LayerNorm> encoder_norm;
  std::shared_ptr<nn::ModuleList> decoder_layers;
  std::shared_ptr<nn::LayerNorm> decoder_norm;
  std::shared_ptr<nn::Linear> generator;

 private:
  Tensor padding_mask(const Tensor& tokens) const;  // f32 [B, T], 1 where pad (see the .cpp)
  TransformerConfig config_;
};

}  // namespace dtrain::models
