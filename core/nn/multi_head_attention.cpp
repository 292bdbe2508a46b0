#include "core/nn/multi_head_attention.h"

#include "core/ops/attention.h"
#include "core/ops/elementwise.h"
#include "core/ops/ops.h"

namespace dtrain::nn {

Tensor token_padding_mask(const Tensor& tokens, int64_t pad_id) {
  NoGradGuard no_grad;
  const Device device = tokens.device();
  const Tensor pad =
      eq(tokens, Tensor::full({}, static_cast<double>(pad_id), tokens.dtype(), device))
          .to(DType::f32);
  const Tensor length = Tensor::full({}, static_cast<double>(tokens.size(1)), DType::f32, device);
  const Tensor all_pad = eq(sum(pad, {1}, true), length);  // [B, 1]
  return mul(pad, rsub(1.0, all_pad));
}

MultiHeadAttention::MultiHeadAttention(int64_t dim, int64_t num_heads, AttentionOptions options)
    : Module("MultiHeadAttention"), dim_(dim), num_heads_(num_heads), options_(options) {
  DTRAIN_CHECK(dim > 0 && num_heads > 0 && dim % num_heads == 0, "MultiHeadAttention(dim ", dim,
               ", heads ", num_heads, "): dim must be a positive multiple of the number of heads");
  DTRAIN_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, "MultiHeadAttention: dropout ",
               options.dropout, " must be in [0, 1)");
  if (options_.kv_dim == 0) options_.kv_dim = dim;
  DTRAIN_CHECK(options_.kv_dim > 0, "MultiHeadAttention: kv_dim ", options_.kv_dim,
               " must be positive");
  DTRAIN_CHECK(options.cross || options_.kv_dim == dim, "MultiHeadAttention: kv_dim ",
               options_.kv_dim, " differs from dim ", dim,
               " in self-attention; set cross = true for a memory of another width");
  if (options_.cross) {
    q = register_module("q", std::make_shared<Linear>(dim, dim, options_.qkv_bias));
    kv = register_module("kv",
                         std::make_shared<Linear>(options_.kv_dim, 2 * dim, options_.qkv_bias));
  } else {
    qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, options_.qkv_bias));
  }
  proj = register_module("proj", std::make_shared<Linear>(dim, dim));
}

Tensor MultiHeadAttention::forward(const Tensor& x, const AttentionMask& mask) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(!options_.cross,
               "MultiHeadAttention: this is a cross-attention module; call "
               "forward(x, memory, mask)");
  DTRAIN_CHECK(x.dim() == 3 && x.size(2) == dim_, "MultiHeadAttention(dim ", dim_,
               "): input of shape ", shape_str(x.shape()), " is not [B, T, ", dim_, "]");
  int64_t batch = x.size(0), tokens = x.size(1);
  // [B, T, 3 dim] -> [B, T, 3, H, hd] -> [3, B, H, T, hd]
  Tensor parts =
      qkv->forward(x).reshape({batch, tokens, 3, num_heads_, head_dim()}).permute({2, 0, 3, 1, 4});
  return attend(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), mask);
}

Tensor MultiHeadAttention::forward(const Tensor& x, const Tensor& memory,
                                   const AttentionMask& mask) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(options_.cross,
               "MultiHeadAttention: this is a self-attention module; call "
               "forward(x, mask), or build it with cross = true to attend over a memory");
  DTRAIN_CHECK(x.dim() == 3 && x.size(2) == dim_, "MultiHeadAttention(dim ", dim_,
               "): query of shape ", shape_str(x.shape()), " is not [B, T, ", dim_, "]");
  DTRAIN_CHECK(
      memory.dim() == 3 && memory.size(0) == x.size(0) && memory.size(2) == options_.kv_dim,
      "MultiHeadAttention(dim ", dim_, "): memory of shape ", shape_str(memory.shape()),
      " is not [", x.size(0), ", S, ", options_.kv_dim, "] for a query of shape ",
      shape_str(x.shape()));
  int64_t batch = x.size(0), tokens = x.size(1), sources = memory.size(1);
  Tensor query = q->forward(x).reshape({batch, tokens, num_heads_, head_dim()}).transpose(1, 2);
  // [B, S, 2 dim] -> [B, S, 2, H, hd] -> [2, B, H, S, hd]
  Tensor parts = kv->forward(memory)
                     .reshape({batch, sources, 2, num_heads_, head_dim()})
                     .permute({2, 0, 3, 1, 4});
  return attend(query, parts.select(0, 0), parts.select(0, 1), mask);
}

Tensor MultiHeadAttention::attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                  const AttentionMask& mask) const {
  int64_t batch = query.size(0), tokens = query.size(2), sources = key.size(2);
  Tensor additive;
  if (mask.attn_mask.defined()) {
    additive = mask.attn_mask;
    // torch's per-head form [B * H, Tq, Tk] is [B, H, Tq, Tk] flattened.
    if (additive.dim() == 3 && additive.size(0) == batch * num_heads_ && batch * num_heads_ > 1)
      additive = additive.reshape({batch, num_heads_, additive.size(1), additive.size(2)});
    if (additive.dtype() != query.dtype()) additive = additive.to(query.dtype());
    if (additive.device() != query.device()) additive = additive.to(query.device());
  }
  if (mask.key_padding_mask.defined()) {
    const Tensor& pad = mask.key_padding_mask;
    DTRAIN_CHECK(pad.dim() == 2 && pad.size(0) == batch && pad.size(1) == sources,
                 "MultiHeadAttention: key_padding_mask of shape ", shape_str(pad.shape()),
                 " is not [B, Tk] = [", batch, ", ", sources, "]");
    Tensor pad_mask = key_padding_to_attn_mask(
        pad.device() == query.device() ? pad : pad.to(query.device()), query.dtype());
    additive = additive.defined() ? add(additive, pad_mask) : pad_mask;
  }
  Tensor heads = scaled_dot_product_attention(query, key, value, additive, mask.causal,
                                              options_.dropout, is_training());
  // [B, H, Tq, hd] -> [B, Tq, H, hd] -> [B, Tq, dim]
  return proj->forward(heads.transpose(1, 2).reshape({batch, tokens, dim_}));
}

}  // namespace dtrain::nn
