// The Transformer's state under torch.nn.Transformer's state_dict names, and back. Encoder and decoder
// layers map suffix by suffix (attn.qkv -> self_attn.in_proj_, mlp.fc1 -> linear1, ...); the decoder's
// cross-attention keeps q and kv apart here where torch fuses them into multihead_attn.in_proj_{weight,
// bias} (q rows first), so saving concatenates and loading narrows. Embeddings and the generator keep
// their names.
#include "models/transformer.h"

#include <map>

#include "core/ops/ops.h"

namespace dtrain::models {

namespace {
// Our name suffix -> torch.nn.Transformer's, per layer kind; cross-attention q and kv are fused there.
const std::vector<std::pair<std::string, std::string>> kEncoderNames = {
    {"attn.qkv.", "self_attn.in_proj_"},
    {"attn.proj.", "self_attn.out_proj."},
    {"mlp.fc1.", "linear1."},
    {"mlp.fc2.", "linear2."},
    {"norm1.", "norm1."},
    {"norm2.", "norm2."}};
const std::vector<std::pair<std::string, std::string>> kDecoderNames = {
    {"attn.qkv.", "self_attn.in_proj_"},
    {"attn.proj.", "self_attn.out_proj."},
    {"cross_attn.proj.", "multihead_attn.out_proj."},
    {"mlp.fc1.", "linear1."},
    {"mlp.fc2.", "linear2."},
    {"norm1.", "norm1."},
    {"norm2.", "norm2."},
    {"norm3.", "norm3."}};

std::string torch_name(const std::string& ours) {
  auto rename = [&](const std::string& prefix, const std::string& torch_prefix,
                    const std::vector<std::pair<std::string, std::string>>& table) -> std::string {
    std::string rest = ours.substr(prefix.size());  // "N.attn.qkv.weight"
    size_t dot = rest.find('.');
    std::string index = rest.substr(0, dot), tail = rest.substr(dot + 1);
    for (const auto& [from, to] : table) {
      if (tail.rfind(from, 0) == 0)
        return torch_prefix + index + "." + to + tail.substr(from.size());
    }
    return "";
  };
  if (ours.rfind("encoder_layers.", 0) == 0)
    return rename("encoder_layers.", "encoder.layers.", kEncoderNames);
  if (ours.rfind("decoder_layers.", 0) == 0)
    return rename("decoder_layers.", "decoder.layers.", kDecoderNames);
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
      std::string layer = name.substr(0, is_q ? at : kv);   // decoder_layers.N
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
