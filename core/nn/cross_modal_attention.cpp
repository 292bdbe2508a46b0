#include "core/nn/cross_modal_attention.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/nn/init.h"
#include "core/ops/attention.h"
#include "core/ops/linalg.h"

namespace dtrain::nn {

CrossModalAttention::CrossModalAttention(int64_t embed_dim, int64_t num_heads,
                                         CrossModalAttentionOptions options)
    : Module("CrossModalAttention"),
      embed_dim_(embed_dim),
      num_heads_(num_heads),
      options_(options) {
  DTRAIN_CHECK(embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0,
               "CrossModalAttention(embed_dim ", embed_dim, ", heads ", num_heads,
               "): embed_dim must be a positive multiple of the number of heads");
  DTRAIN_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, "CrossModalAttention: dropout ",
               options.dropout, " must be in [0, 1)");
  if (options_.kdim == 0) options_.kdim = embed_dim;
  if (options_.vdim == 0) options_.vdim = options_.kdim;
  DTRAIN_CHECK(options_.kdim > 0 && options_.vdim > 0, "CrossModalAttention: kdim ", options_.kdim,
               " and vdim ", options_.vdim, " must be positive");
  q_proj_weight = register_parameter("q_proj_weight", Tensor::empty({embed_dim, embed_dim}));
  k_proj_weight = register_parameter("k_proj_weight", Tensor::empty({embed_dim, options_.kdim}));
  v_proj_weight = register_parameter("v_proj_weight", Tensor::empty({embed_dim, options_.vdim}));
  init::xavier_uniform_(q_proj_weight);
  init::xavier_uniform_(k_proj_weight);
  init::xavier_uniform_(v_proj_weight);
  if (options_.bias)
    in_proj_bias = register_parameter("in_proj_bias", Tensor::zeros({3 * embed_dim}));
  out_proj =
      register_module("out_proj", std::make_shared<Linear>(embed_dim, embed_dim, options_.bias));
  if (options_.bias) {
    NoGradGuard no_grad;  // torch zeroes out_proj.bias after Linear's own initialisation
    out_proj->bias.zero_();
  }
}

std::string CrossModalAttention::describe() const {
  return "CrossModalAttention(embed_dim " + std::to_string(embed_dim_) + ", kdim " +
         std::to_string(options_.kdim) + ", vdim " + std::to_string(options_.vdim) + ")";
}

Tensor CrossModalAttention::forward(const Tensor& query, const Tensor& context,
                                    const Tensor& key_padding_mask) const {
  DTRAIN_CHECK(options_.kdim == options_.vdim, describe(),
               ": keys and values have different widths; call forward(query, key, value, mask)");
  return forward(query, context, context, key_padding_mask);
}

Tensor CrossModalAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const Tensor& key_padding_mask) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(query.defined() && key.defined() && value.defined(), describe(),
               ": query, key or value is undefined");
  DTRAIN_CHECK(query.dim() == 3 && query.size(2) == embed_dim_, describe(), ": query of shape ",
               shape_str(query.shape()), " is not [B, Ta, ", embed_dim_, "]");
  const int64_t batch = query.size(0), tq = query.size(1);
  DTRAIN_CHECK(key.dim() == 3 && key.size(0) == batch && key.size(2) == options_.kdim, describe(),
               ": key of shape ", shape_str(key.shape()), " is not [", batch, ", Tb, ",
               options_.kdim, "] for a query of shape ", shape_str(query.shape()));
  const int64_t tk = key.size(1);
  DTRAIN_CHECK(value.dim() == 3 && value.size(0) == batch && value.size(1) == tk &&
                   value.size(2) == options_.vdim,
               describe(), ": value of shape ", shape_str(value.shape()), " is not [", batch, ", ",
               tk, ", ", options_.vdim, "] for a key of shape ", shape_str(key.shape()));

  const int64_t e = embed_dim_, hd = head_dim();
  auto bias_part = [&](int64_t i) {
    return in_proj_bias.defined() ? in_proj_bias.narrow(0, i * e, e) : Tensor();
  };
  // [B, T, E] -> [B, T, H, hd] -> [B, H, T, hd]
  auto heads = [&](const Tensor& t, int64_t tokens) {
    return t.reshape({batch, tokens, num_heads_, hd}).transpose(1, 2);
  };
  Tensor q = heads(linear(query, q_proj_weight, bias_part(0)), tq);
  Tensor k = heads(linear(key, k_proj_weight, bias_part(1)), tk);
  Tensor v = heads(linear(value, v_proj_weight, bias_part(2)), tk);

  Tensor additive;
  if (key_padding_mask.defined()) {
    DTRAIN_CHECK(key_padding_mask.dim() == 2 && key_padding_mask.size(0) == batch &&
                     key_padding_mask.size(1) == tk,
                 describe(), ": key_padding_mask of shape ", shape_str(key_padding_mask.shape()),
                 " is not [B, Tb] = [", batch, ", ", tk, "]");
    const Tensor pad = key_padding_mask.device() == query.device()
                           ? key_padding_mask
                           : key_padding_mask.to(query.device());
    additive = key_padding_to_attn_mask(pad, q.dtype());  // [B, 1, 1, Tb]
  }
  Tensor attended = scaled_dot_product_attention(q, k, v, additive, /*causal=*/false,
                                                 options_.dropout, is_training());
  // [B, H, Ta, hd] -> [B, Ta, H, hd] -> [B, Ta, E]
  return out_proj->forward(attended.transpose(1, 2).reshape({batch, tq, e}));
}

}  // namespace dtrain::nn
