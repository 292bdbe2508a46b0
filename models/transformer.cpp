#include "models/transformer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops/ops.h"

namespace dtrain::models {

TransformerConfig TransformerConfig::preset(const std::string& name, int64_t src_vocab,
                                            int64_t tgt_vocab, int64_t max_len, int64_t pad_id) {
  TransformerConfig c;
  c.src_vocab = src_vocab, c.tgt_vocab = tgt_vocab, c.max_len = max_len, c.pad_id = pad_id;
  if (name == "tiny") {
    c.dim = 64, c.encoder_layers = 2, c.decoder_layers = 2, c.heads = 4, c.mlp_dim = 256;
  } else if (name == "small" || name == "fm") {
    c.dim = 128, c.encoder_layers = 3, c.decoder_layers = 3, c.heads = 4, c.mlp_dim = 512;
  } else if (name == "base") {  // the paper's base model
    c.dim = 512, c.encoder_layers = 6, c.decoder_layers = 6, c.heads = 8, c.mlp_dim = 2048;
  } else {
    throw Error("unknown Transformer size '" + name + "': use tiny, small or base");
  }
  return c;
}

Transformer::Transformer(const TransformerConfig& c) : Module("Transformer"), config_(c) {
  DTRAIN_CHECK(c.dim % c.heads == 0, "Transformer: dim ", c.dim, " is not divisible by ", c.heads,
               " heads");
  src_embed =
      register_module("src_embed", std::make_shared<nn::Embedding>(c.src_vocab, c.dim, c.pad_id));
  tgt_embed =
      register_module("tgt_embed", std::make_shared<nn::Embedding>(c.tgt_vocab, c.dim, c.pad_id));
  position =
      register_module("position", std::make_shared<nn::PositionalEncoding>(
                                      c.max_len, c.dim, nn::PositionKind::sinusoidal, c.dropout));
  nn::TransformerLayerOptions options{
      .pre_norm = false, .dropout = c.dropout, .activation = nn::Activation::relu};
  encoder_layers = register_module("encoder_layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    encoder_layers->push_back(
        std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, options));
  }
  encoder_norm = register_module("encoder_norm", std::make_shared<nn::LayerNorm>(c.dim));
  decoder_layers = register_module("decoder_layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    decoder_layers->push_back(
        std::make_shared<nn::DecoderLayer>(c.dim, c.heads, c.mlp_dim, options));
  }
  decoder_norm = register_module("decoder_norm", std::make_shared<nn::LayerNorm>(c.dim));
  generator = register_module("generator", std::make_shared<nn::Linear>(c.dim, c.tgt_vocab));
  // torch.nn.Transformer initialises every matrix with Glorot uniform; the embeddings' pad rows stay
  // zero, as nn::Embedding promises (pad tokens are masked as keys, so this only keeps them inert).
  for (const Tensor& p : parameters()) {
    if (p.dim() > 1) nn::init::xavier_uniform_(p);
  }
  NoGradGuard no_grad;
  src_embed->weight.select(0, c.pad_id).zero_();
  tgt_embed->weight.select(0, c.pad_id).zero_();
}

Tensor Transformer::padding_mask(const Tensor& tokens) const {
  return nn::token_padding_mask(tokens, config_.pad_id);
}

Tensor Transformer::encode(const Tensor& src) const {
  double scale = std::sqrt(static_cast<double>(config_.dim));
  Tensor x = position->forward(src_embed->forward(src) * scale);
  nn::AttentionMask mask{.key_padding_mask = padding_mask(src)};
  for (size_t i = 0; i < encoder_layers->size(); ++i) {
    auto layer = encoder_layers->at<nn::EncoderLayer>(i);
    x = nn::maybe_checkpoint(
        checkpoint_activations, *layer, {x},
        [layer, mask](const std::vector<Tensor>& in) { return layer->forward(in[0], mask); });
  }
  return encoder_norm->forward(x);
}

Tensor Transformer::decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src) const {
  double scale = std::sqrt(static_cast<double>(config_.dim));
  Tensor x = position->forward(tgt_embed->forward(tgt_in) * scale);
  nn::AttentionMask self_mask{.key_padding_mask = padding_mask(tgt_in), .causal = true};
  nn::AttentionMask memory_mask{.key_padding_mask = padding_mask(src)};
  for (size_t i = 0; i < decoder_layers->size(); ++i) {
    auto layer = decoder_layers->at<nn::DecoderLayer>(i);
    x = nn::maybe_checkpoint(checkpoint_activations, *layer, {x, memory},
                             [layer, self_mask, memory_mask](const std::vector<Tensor>& in) {
                               return layer->forward(in[0], in[1], self_mask, memory_mask);
                             });
  }
  return generator->forward(decoder_norm->forward(x));
}

Tensor Transformer::forward(const Tensor& src, const Tensor& tgt_in) const {
  auto scope = forward_scope();
  return decode(tgt_in, encode(src), src);
}

std::vector<std::vector<int64_t>> Transformer::greedy_decode(const Tensor& src, int64_t bos_id,
                                                             int64_t eos_id, int64_t max_len) {
  NoGradGuard no_grad;
  bool was_training = is_training();
  eval();
  int64_t batch = src.size(0);
  Tensor memory = encode(src);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(batch));
  std::vector<int64_t> prefix(static_cast<size_t>(batch), bos_id);  // [B, t] row-major
  std::vector<bool> done(static_cast<size_t>(batch), false);
  max_len = std::min(max_len, config_.max_len);
  for (int64_t t = 1; t <= max_len; ++t) {
    Tensor tgt = Tensor::from_vector(prefix, {batch, t}, DType::i64, src.device());
    Tensor next = argmax(decode(tgt, memory, src).select(1, t - 1), -1);
    std::vector<int64_t> ids = next.to_vector<int64_t>();
    std::vector<int64_t> grown;
    grown.reserve(static_cast<size_t>(batch * (t + 1)));
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      auto bi = static_cast<size_t>(b);
      int64_t id = done[bi] ? config_.pad_id : ids[bi];
      if (!done[bi] && id == eos_id) done[bi] = true;
      if (!done[bi]) out[bi].push_back(id);
      all_done = all_done && done[bi];
      grown.insert(grown.end(), prefix.begin() + b * t, prefix.begin() + (b + 1) * t);
      grown.push_back(id);
    }
    prefix = std::move(grown);
    if (all_done) break;
  }
  train(was_training);
  return out;
}

namespace {
// GNMT's length penalty (Wu et al. 2016, without its coverage penalty): lp(L) = ((5 + L) / 6)^alpha; a
// finished hypothesis scores log p(y | x) / lp(|y|).
double gnmt_length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

struct Hypothesis {
  std::vector<int64_t> tokens;  // generated so far, without bos
  double log_prob = 0;          // sum of the tokens' log-probabilities
};

// One source row's search: its live hypotheses (at most `beam`, best first) and its best finished one.
struct BeamItem {
  std::vector<Hypothesis> live;
  std::vector<int64_t> best;
  double best_score =
      -std::numeric_limits<double>::infinity();  // normalised; -inf: none finished yet
  int64_t max_len = 0;

  void finish(const std::vector<int64_t>& tokens, double log_prob, int64_t length, double alpha) {
    const double score = log_prob / gnmt_length_penalty(length, alpha);
    if (score > best_score)
      best = tokens, best_score = score;  // strict: the first found wins a tie
  }
  // Whether a live hypothesis of `tokens` tokens (fewer than max_len) might still beat the best finished.
  // Log-probabilities only fall as tokens are added, so its final score is at most s / lp(L) with s its
  // log-probability now (<= 0) and L its final length, somewhere in tokens + 1 .. max_len (eos counted);
  // s / lp(L) is monotonic in L, so the larger of the two ends bounds it.
  bool can_improve(int64_t tokens, double alpha) const {
    for (const Hypothesis& h : live) {
      const double s = std::min(h.log_prob, 0.0);
      const double bound = std::max(s / gnmt_length_penalty(tokens + 1, alpha),
                                    s / gnmt_length_penalty(max_len, alpha));
      if (bound > best_score) return true;
    }
    return false;
  }
};

// A token candidate of one item: a live hypothesis (its slot) extended by `token`.
struct Candidate {
  double log_prob;
  int64_t token;
  size_t slot;
};
}  // namespace

std::vector<std::vector<int64_t>> Transformer::beam_search(const Tensor& src, int64_t bos_id,
                                                           int64_t eos_id, int64_t max_len,
                                                           int64_t beam, double length_penalty) {
  return beam_search(src, bos_id, eos_id,
                     std::vector<int64_t>(static_cast<size_t>(src.size(0)), max_len), beam,
                     length_penalty);
}

// Batched over the rows, on the model's device: the sources are encoded once, and each item (source
// row) keeps `beam` decoder rows, [b * beam, (b + 1) * beam) of the repeated memory and source, whose
// prefixes are its live hypotheses (a slot without one repeats the first; its output is ignored). Each
// step re-runs the decoder over the whole prefixes, as greedy_decode does, and per item:
//   1. every live hypothesis is extended by its `beam` most probable next tokens (log-softmax in f32,
//      or f64 for an f64 model);
//   2. the `beam` best of these candidates by log-probability are kept, ties going to the lower token
//      id, then the lower slot (the better hypothesis of the step before);
//   3. a kept candidate ending in eos is finished (length: its tokens plus the eos); the others are the
//      new live hypotheses, so the beam narrows as hypotheses finish (with beam 1 this is greedy
//      decoding exactly);
//   4. the item stops when no live hypothesis is left, when none can still beat its best finished one
//      (BeamItem::can_improve, an exact bound: stopping never changes the result), or at its max_len,
//      where the live hypotheses count as finished with length max_len (no eos).
// The result is the finished hypothesis with the highest log-probability / lp(length). Items that
// stop leave the batch, so the decoder runs only over rows still searching.
std::vector<std::vector<int64_t>> Transformer::beam_search(const Tensor& src, int64_t bos_id,
                                                           int64_t eos_id,
                                                           const std::vector<int64_t>& max_lens,
                                                           int64_t beam, double length_penalty) {
  const int64_t batch = src.size(0), width = src.size(1);
  DTRAIN_CHECK(beam >= 1, "beam_search: beam width ", beam,
               " is not positive: give 1 (greedy) or more");
  DTRAIN_CHECK(static_cast<int64_t>(max_lens.size()) == batch, "beam_search: ", max_lens.size(),
               " length limits for ", batch, " source rows: give one per row");
  NoGradGuard no_grad;
  bool was_training = is_training();
  eval();
  const Device device = src.device();
  std::vector<BeamItem> items(static_cast<size_t>(batch));
  std::vector<int64_t> active;  // the items still searching, in order
  int64_t longest = 0;
  for (int64_t b = 0; b < batch; ++b) {
    BeamItem& item = items[static_cast<size_t>(b)];
    item.max_len = std::min(max_lens[static_cast<size_t>(b)], config_.max_len);
    item.live.push_back(Hypothesis{});
    if (item.max_len > 0) active.push_back(b);
    longest = std::max(longest, item.max_len);
  }
  Tensor memory = encode(src);
  const int64_t memory_len = memory.size(1), dim = memory.size(2);
  const Tensor memory_rows = memory.unsqueeze(1)
                                 .expand({batch, beam, memory_len, dim})
                                 .reshape({batch * beam, memory_len, dim});
  const Tensor src_rows =
      src.unsqueeze(1).expand({batch, beam, width}).reshape({batch * beam, width});
  // The rows of the active items: runs of consecutive items are narrowed and joined.
  auto gather = [&](const Tensor& rows) {
    std::vector<Tensor> runs;
    for (size_t i = 0; i < active.size();) {
      size_t j = i + 1;
      while (j < active.size() && active[j] == active[j - 1] + 1) ++j;
      runs.push_back(rows.narrow(0, active[i] * beam, static_cast<int64_t>(j - i) * beam));
      i = j;
    }
    return cat(runs, 0);
  };
  // A row's next tokens are taken by arg max, `top` times, each taken entry pushed far below any
  // log-probability before the next (argmax keeps the first of equal values: the lower token id).
  const int64_t top = std::min(beam, config_.tgt_vocab);
  const Tensor vocab_ids = Tensor::arange(config_.tgt_vocab, DType::i64, device);
  constexpr double kTaken = 1e30;
  std::vector<int64_t> gathered_for;
  Tensor memory_active, src_active;
  for (int64_t t = 1; t <= longest && !active.empty(); ++t) {
    if (active != gathered_for) {
      memory_active = gather(memory_rows), src_active = gather(src_rows);
      gathered_for = active;
    }
    const auto rows = static_cast<int64_t>(active.size()) * beam;
    std::vector<int64_t> prefix;  // [rows, t]: bos, then each slot's tokens
    prefix.reserve(static_cast<size_t>(rows * t));
    for (int64_t b : active) {
      const std::vector<Hypothesis>& live = items[static_cast<size_t>(b)].live;
      for (int64_t slot = 0; slot < beam; ++slot) {
        const Hypothesis& h =
            live[static_cast<size_t>(slot) < live.size() ? static_cast<size_t>(slot) : 0];
        prefix.push_back(bos_id);
        prefix.insert(prefix.end(), h.tokens.begin(), h.tokens.end());
      }
    }
    Tensor tgt = Tensor::from_vector(prefix, {rows, t}, DType::i64, device);
    Tensor logits = decode(tgt, memory_active, src_active).select(1, t - 1);
    Tensor log_probs =
        log_softmax(logits.dtype() == DType::f64 ? logits : logits.to(DType::f32), -1);
    std::vector<Tensor> values, ids;
    for (int64_t k = 0; k < top; ++k) {
      Tensor id = argmax(log_probs, -1, true);  // [rows, 1]
      values.push_back(max(log_probs, -1, true).to(DType::f64));
      ids.push_back(id.to(DType::f64));
      if (k + 1 < top) log_probs = log_probs - eq(vocab_ids, id).to(log_probs.dtype()) * kTaken;
    }
    // One read back per step: [rows, 2 * top], the log-probabilities then the token ids (exact in f64).
    const std::vector<double> best = cat({cat(values, 1), cat(ids, 1)}, 1).to_vector<double>();
    std::vector<int64_t> still_active;
    for (size_t a = 0; a < active.size(); ++a) {
      BeamItem& item = items[static_cast<size_t>(active[a])];
      std::vector<Candidate> candidates;
      for (size_t slot = 0; slot < item.live.size(); ++slot) {
        const double* row =
            best.data() + (a * static_cast<size_t>(beam) + slot) * static_cast<size_t>(2 * top);
        for (int64_t k = 0; k < top; ++k) {
          candidates.push_back(
              {item.live[slot].log_prob + row[k], std::llround(row[top + k]), slot});
        }
      }
      std::sort(candidates.begin(), candidates.end(), [](const Candidate& x, const Candidate& y) {
        if (x.log_prob != y.log_prob) return x.log_prob > y.log_prob;
        if (x.token != y.token) return x.token < y.token;
        return x.slot < y.slot;
      });
      candidates.resize(std::min(candidates.size(), static_cast<size_t>(beam)));
      std::vector<Hypothesis> next;
      for (const Candidate& c : candidates) {
        const Hypothesis& parent = item.live[c.slot];
        if (c.token == eos_id) {
          item.finish(parent.tokens, c.log_prob, t, length_penalty);  // t - 1 tokens and the eos
        } else {
          Hypothesis h{parent.tokens, c.log_prob};
          h.tokens.push_back(c.token);
          next.push_back(std::move(h));
        }
      }
      item.live = std::move(next);
      if (t == item.max_len) {
        for (const Hypothesis& h : item.live) item.finish(h.tokens, h.log_prob, t, length_penalty);
      } else if (!item.live.empty() && item.can_improve(t, length_penalty)) {
        still_active.push_back(active[a]);
      }
    }
    active = std::move(still_active);
  }
  train(was_training);
  std::vector<std::vector<int64_t>> out;
  out.reserve(items.size());
  for (BeamItem& item : items) out.push_back(std::move(item.best));
  return out;
}

}  // namespace dtrain::models
