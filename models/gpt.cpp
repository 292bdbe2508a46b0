#include "models/gpt.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/ops/ops.h"

namespace dtrain::models {

GptConfig GptConfig::preset(const std::string& name, int64_t vocab_size, int64_t max_len) {
  GptConfig c;
  c.vocab_size = vocab_size;
  c.max_len = max_len;
  if (name == "tiny") {
    c.dim = 64, c.depth = 2, c.heads = 2, c.mlp_dim = 256;
  } else if (name == "small" || name == "fm") {
    c.dim = 128, c.depth = 4, c.heads = 4, c.mlp_dim = 512;
  } else if (name == "medium") {
    c.dim = 256, c.depth = 6, c.heads = 8, c.mlp_dim = 1024;
  } else if (name == "gpt2") {  // GPT-2 small's shape (124M parameters with 50,257 tokens)
    c.dim = 768, c.depth = 12, c.heads = 12, c.mlp_dim = 3072;
  } else {
    throw Error("unknown GPT size '" + name + "': use tiny, small, medium or gpt2");
  }
  return c;
}

Gpt::Gpt(const GptConfig& c) : Module("Gpt"), config_(c) {
  DTRAIN_CHECK(c.dim % c.heads == 0, "GPT: dim ", c.dim, " is not divisible by ", c.heads,
               " heads");
  tok_embed = register_module("tok_embed", std::make_shared<nn::Embedding>(c.vocab_size, c.dim));
  pos_embed =
      register_module("pos_embed", std::make_shared<nn::PositionalEncoding>(
                                       c.max_len, c.dim, nn::PositionKind::learned, c.dropout));
  blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
  nn::TransformerLayerOptions options{.pre_norm = true, .dropout = c.dropout};
  for (int64_t i = 0; i < c.depth; ++i) {
    blocks->push_back(std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, options));
  }
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim));
  // GPT-2's initialisation: N(0, 0.02^2) for embeddings and linear weights, zero biases.
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
}

Tensor Gpt::forward(const Tensor& tokens) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(tokens.dim() == 2 && tokens.size(1) <= config_.max_len,
               "GPT expects tokens [B, T] with T <= ", config_.max_len, ", got ",
               shape_str(tokens.shape()));
  Tensor h = pos_embed->forward(tok_embed->forward(tokens));
  nn::AttentionMask causal{.causal = true};
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto block = blocks->at<nn::EncoderLayer>(i);
    h = nn::maybe_checkpoint(
        checkpoint_activations, *block, {h},
        [block, causal](const std::vector<Tensor>& in) { return block->forward(in[0], causal); });
  }
  h = norm->forward(h);
  return linear(h, tok_embed->weight.to(h.dtype()));  // the head shares the embedding's weight
}

std::vector<int64_t> Gpt::generate(std::vector<int64_t> tokens, int64_t count, double temperature,
                                   int64_t top_k, Generator& gen) {
  DTRAIN_CHECK(!tokens.empty(), "GPT generate needs a prompt of at least one token");
  DTRAIN_CHECK(count >= 0, "GPT generate: the number of tokens to generate must be >= 0, got ",
               count);
  DTRAIN_CHECK(!std::isnan(temperature), "GPT generate: the temperature is NaN");
  for (int64_t id : tokens) {
    DTRAIN_CHECK(id >= 0 && id < config_.vocab_size, "GPT generate: prompt token ", id,
                 " is outside the vocabulary [0, ", config_.vocab_size, ")");
  }
  NoGradGuard no_grad;
  bool was_training = is_training();
  eval();
  Device device = tok_embed->weight.device();
  for (int64_t step = 0; step < count; ++step) {
    int64_t start = std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - config_.max_len);
    std::vector<int64_t> window(tokens.begin() + start, tokens.end());
    Tensor input =
        Tensor::from_vector(window, {1, static_cast<int64_t>(window.size())}, DType::i64, device);
    std::vector<double> logits = forward(input).select(1, -1).to_vector<double>();
    DTRAIN_CHECK(std::none_of(logits.begin(), logits.end(), [](double l) { return std::isnan(l); }),
                 "GPT generate: the model's logits hold NaN (diverged or damaged weights)");
    int64_t next;
    if (temperature <= 0) {
      next = std::max_element(logits.begin(), logits.end()) - logits.begin();  // the first maximum
    } else {
      // Sample from softmax(logits / temperature) restricted to the top_k likeliest tokens:
      //   p_i = exp((l_i - l_max) / T) / sum over the kept j of exp((l_j - l_max) / T)
      std::vector<int64_t> order(logits.size());
      std::iota(order.begin(), order.end(), 0);
      const size_t keep =
          top_k > 0 ? std::min<size_t>(static_cast<size_t>(top_k), order.size()) : order.size();
      // Likelier first; equal logits in id order, so that top_k 1 picks the arg max greedy picks.
      auto likelier = [&](int64_t a, int64_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      };
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep),
                        order.end(), likelier);
      std::vector<double> weight(keep);
      double total = 0;
      for (size_t i = 0; i < keep; ++i) {
        weight[i] = std::exp((logits[order[i]] - logits[order[0]]) / temperature);
        total += weight[i];
      }
      // Inverse CDF: the first token whose cumulative weight exceeds u (rounding falls to the last kept).
      double u = gen.next_double() * total;
      size_t pick = 0;
      while (pick + 1 < keep && u >= weight[pick]) u -= weight[pick++];
      next = order[pick];
    }
    tokens.push_back(next);
  }
  train(was_training);
  return tokens;
}

double gpt_forward_flops_per_token(const GptConfig& c, int64_t t) {
  double d = static_cast<double>(c.dim);
  double per_block = 2.0 * (3 * d * d + d * d + 2 * d * c.mlp_dim) + 2.0 * 2 * t * d;
  return c.depth * per_block + 2.0 * d * c.vocab_size;
}

}  // namespace dtrain::models
