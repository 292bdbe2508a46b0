#include "models/transformer.h"

#include <algorithm>
#include <cmath>
#include <map>

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
  src_embed = register_module("src_embed", std::make_shared<nn::Embedding>(c.src_vocab, c.dim, c.pad_id));
  tgt_embed = register_module("tgt_embed", std::make_shared<nn::Embedding>(c.tgt_vocab, c.dim, c.pad_id));
  position = register_module("position", std::make_shared<nn::PositionalEncoding>(
                                             c.max_len, c.dim, nn::PositionKind::sinusoidal, c.dropout));
  nn::TransformerLayerOptions options{.pre_norm = false, .dropout = c.dropout,
                                      .activation = nn::Activation::relu};
  encoder_layers = register_module("encoder_layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    encoder_layers->push_back(std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, options));
  }
  encoder_norm = register_module("encoder_norm", std::make_shared<nn::LayerNorm>(c.dim));
  decoder_layers = register_module("decoder_layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    decoder_layers->push_back(std::make_shared<nn::DecoderLayer>(c.dim, c.heads, c.mlp_dim, options));
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
  // 1 where the token is padding. A row of nothing but padding (an empty sequence) is left unmasked:
  // with every key masked its softmax would be 0/0, and the NaN would spread through the whole
  // batch's loss. torch.nn.Transformer gives NaN there; on every other input the two agree. Formed on
  // the tokens' device (no read back): f32 [B, L], exact for any length below 2^24.
  NoGradGuard no_grad;
  const Device device = tokens.device();
  const Tensor pad = eq(tokens, Tensor::full({}, static_cast<double>(config_.pad_id), tokens.dtype(), device))
                         .to(DType::f32);
  const Tensor length = Tensor::full({}, static_cast<double>(tokens.size(1)), DType::f32, device);
  const Tensor all_pad = eq(sum(pad, {1}, true), length);  // [B, 1]
  return mul(pad, rsub(1.0, all_pad));
}

Tensor Transformer::encode(const Tensor& src) const {
  double scale = std::sqrt(static_cast<double>(config_.dim));
  Tensor x = position->forward(src_embed->forward(src) * scale);
  nn::AttentionMask mask{.key_padding_mask = padding_mask(src)};
  for (size_t i = 0; i < encoder_layers->size(); ++i) {
    x = encoder_layers->at<nn::EncoderLayer>(i)->forward(x, mask);
  }
  return encoder_norm->forward(x);
}

Tensor Transformer::decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src) const {
  double scale = std::sqrt(static_cast<double>(config_.dim));
  Tensor x = position->forward(tgt_embed->forward(tgt_in) * scale);
  nn::AttentionMask self_mask{.key_padding_mask = padding_mask(tgt_in), .causal = true};
  nn::AttentionMask memory_mask{.key_padding_mask = padding_mask(src)};
  for (size_t i = 0; i < decoder_layers->size(); ++i) {
    x = decoder_layers->at<nn::DecoderLayer>(i)->forward(x, memory, self_mask, memory_mask);
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
// Our name suffix -> torch.nn.Transformer's, per layer kind; cross-attention q and kv are fused there.
const std::vector<std::pair<std::string, std::string>> kEncoderNames = {
    {"attn.qkv.", "self_attn.in_proj_"}, {"attn.proj.", "self_attn.out_proj."},
    {"mlp.fc1.", "linear1."}, {"mlp.fc2.", "linear2."}, {"norm1.", "norm1."}, {"norm2.", "norm2."}};
const std::vector<std::pair<std::string, std::string>> kDecoderNames = {
    {"attn.qkv.", "self_attn.in_proj_"}, {"attn.proj.", "self_attn.out_proj."},
    {"cross_attn.proj.", "multihead_attn.out_proj."}, {"mlp.fc1.", "linear1."},
    {"mlp.fc2.", "linear2."}, {"norm1.", "norm1."}, {"norm2.", "norm2."}, {"norm3.", "norm3."}};

std::string torch_name(const std::string& ours) {
  auto rename = [&](const std::string& prefix, const std::string& torch_prefix,
                    const std::vector<std::pair<std::string, std::string>>& table) -> std::string {
    std::string rest = ours.substr(prefix.size());  // "N.attn.qkv.weight"
    size_t dot = rest.find('.');
    std::string index = rest.substr(0, dot), tail = rest.substr(dot + 1);
    for (const auto& [from, to] : table) {
      if (tail.rfind(from, 0) == 0) return torch_prefix + index + "." + to + tail.substr(from.size());
    }
    return "";
  };
  if (ours.rfind("encoder_layers.", 0) == 0) return rename("encoder_layers.", "encoder.layers.", kEncoderNames);
  if (ours.rfind("decoder_layers.", 0) == 0) return rename("decoder_layers.", "decoder.layers.", kDecoderNames);
  if (ours.rfind("encoder_norm.", 0) == 0) return "encoder.norm." + ours.substr(13);
  if (ours.rfind("decoder_norm.", 0) == 0) return "decoder.norm." + ours.substr(13);
  return ours;  // embeddings and generator keep their names
}
}  // namespace

NamedTensors Transformer::to_torch_state() const {
  NamedTensors out;
  std::map<std::string, Tensor> pending_q;  // torch prefix -> q part waiting for its kv
  for (const auto& [name, t] : state_dict()) {
    size_t at = name.find(".cross_attn.q.");
    size_t kv = name.find(".cross_attn.kv.");
    if (at != std::string::npos || kv != std::string::npos) {
      bool is_q = at != std::string::npos;
      std::string layer = name.substr(0, is_q ? at : kv);  // decoder_layers.N
      std::string kind = name.substr(name.rfind('.') + 1);  // weight | bias
      std::string torch = "decoder.layers." + layer.substr(15) + ".multihead_attn.in_proj_" + kind;
      if (is_q) {
        pending_q[torch] = t;
      } else {
        NoGradGuard no_grad;
        out.emplace_back(torch, cat({pending_q.at(torch), t}, 0));
      }
      continue;
    }
    std::string torch = torch_name(name);
    DTRAIN_CHECK(!torch.empty(), "Transformer: no torch.nn.Transformer name for '", name, "'");
    out.emplace_back(torch, t);
  }
  return out;
}

void Transformer::from_torch_state(const NamedTensors& state) {
  std::map<std::string, Tensor> by_name(state.begin(), state.end());
  NamedTensors ours;
  int64_t d = config_.dim;
  for (const auto& [name, t] : state_dict()) {
    size_t at = name.find(".cross_attn.q.");
    size_t kv = name.find(".cross_attn.kv.");
    if (at != std::string::npos || kv != std::string::npos) {
      bool is_q = at != std::string::npos;
      std::string layer = name.substr(0, is_q ? at : kv);
      std::string kind = name.substr(name.rfind('.') + 1);
      std::string torch = "decoder.layers." + layer.substr(15) + ".multihead_attn.in_proj_" + kind;
      auto it = by_name.find(torch);
      DTRAIN_CHECK(it != by_name.end(), "Transformer checkpoint has no '", torch, "'");
      ours.emplace_back(name, is_q ? it->second.narrow(0, 0, d) : it->second.narrow(0, d, 2 * d));
      continue;
    }
    std::string torch = torch_name(name);
    auto it = by_name.find(torch);
    DTRAIN_CHECK(it != by_name.end(), "Transformer checkpoint has no '", torch, "'");
    ours.emplace_back(name, it->second);
  }
  load_state_dict(ours);
}

}  // namespace dtrain::models
