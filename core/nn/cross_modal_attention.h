// Cross-modal attention: queries from modality A x_a [B, Ta, E], keys and values from modality B
// [B, Tb, kdim] and [B, Tb, vdim], each projected to the common width E = heads * head_dim:
//   q = x_a Wq^T + bq,  k = x_k Wk^T + bk,  v = x_v Wv^T + bv
//       (Wq [E, E], Wk [E, kdim], Wv [E, vdim])
//   head_h = softmax(q_h k_h^T / sqrt(head_dim) + mask) v_h   (mask: -inf at padded keys of B)
//   out = concat_h(head_h) Wo^T + bo                           -> [B, Ta, E]
//
// Parameters carry the names of torch.nn.MultiheadAttention(E, heads, kdim=, vdim=):
// q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias [3E] (q, k, v biases in that order),
// out_proj.weight, out_proj.bias - so a PyTorch twin loads the state_dict as is. torch keeps these
// separate names only when kdim or vdim differs from E (otherwise it fuses them into
// in_proj_weight [3E, E], which is cat(Wq, Wk, Wv) in rows). As in torch, the query width is E
// itself; project modality A to E first if it is wider or narrower.
//
// nn::MultiHeadAttention is not reused: its cross-attention form fuses k and v into one `kv`
// projection of a single memory width and names its tensors q.*, kv.*, proj.* (timm's layout).
#pragma once
#include <memory>

#include "core/nn/linear.h"

namespace dtrain::nn {

struct CrossModalAttentionOptions {
  int64_t kdim = 0;      // width of the keys' modality (0: embed_dim)
  int64_t vdim = 0;      // width of the values' modality (0: kdim)
  bool bias = true;      // in_proj_bias and out_proj.bias, both or neither, as in torch
  double dropout = 0.0;  // on the attention weights, in training
};

class CrossModalAttention : public Module {
 public:
  // Initialisation as torch.nn.MultiheadAttention._reset_parameters: q/k/v_proj_weight
  // xavier-uniform, in_proj_bias and out_proj.bias zero, out_proj.weight torch.nn.Linear's
  // kaiming-uniform (a = sqrt(5)).
  CrossModalAttention(int64_t embed_dim, int64_t num_heads,
                      CrossModalAttentionOptions options = {});

  // query [B, Ta, E] over context [B, Tb, kdim] (keys and values both from it; needs kdim == vdim).
  // key_padding_mask [B, Tb], nonzero where the context position is padding (torch's True).
  Tensor forward(const Tensor& query, const Tensor& context,
                 const Tensor& key_padding_mask = Tensor()) const;
  // query [B, Ta, E], key [B, Tb, kdim], value [B, Tb, vdim] -> [B, Ta, E].
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const Tensor& key_padding_mask) const;

  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return embed_dim_ / num_heads_; }
  int64_t kdim() const { return options_.kdim; }
  int64_t vdim() const { return options_.vdim; }

  Tensor q_proj_weight;  // [E, E]
  Tensor k_proj_weight;  // [E, kdim]
  Tensor v_proj_weight;  // [E, vdim]
  Tensor in_proj_bias;   // [3E], undefined without bias
  std::shared_ptr<Linear> out_proj;

 private:
  std::string describe() const;

  int64_t embed_dim_;
  int64_t num_heads_;
  CrossModalAttentionOptions options_;
};

}  // namespace dtrain::nn
