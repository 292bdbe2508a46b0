// Multi-head attention, batch first: x [B, T, dim] with dim = num_heads * head_dim.
//
// Self-attention (timm's Attention): one fused projection `qkv` (dim -> 3 dim) whose output is read
// as [B, T, 3, heads, head_dim], so its weight rows are q, then k, then v, each head by head - the
// layout of timm's qkv.weight and of torch.nn.MultiheadAttention's in_proj_weight.
// Cross-attention (decoder over an encoder memory [B, S, kv_dim]): `q` (dim -> dim) from x and `kv`
// (kv_dim -> 2 dim, read as [B, S, 2, heads, head_dim]) from the memory.
// Both end in the output projection `proj` (dim -> dim):
//   out = proj(concat_h softmax(q_h k_h^T / sqrt(head_dim) + mask) v_h).
#pragma once
#include <memory>

#include "core/nn/linear.h"

namespace dtrain::nn {

struct AttentionOptions {
  bool qkv_bias = true;  // bias on the input projections (qkv, or q and kv); proj always has one
  double dropout = 0.0;  // on the attention weights, in training
  bool cross = false;    // cross-attention: separate q and kv projections
  int64_t kv_dim = 0;    // features of the memory in cross-attention (0: dim)
};

// Which keys a query may not attend to; the parts combine (added together).
struct AttentionMask {
  // Additive, -inf (or a large negative) where masked: [Tq, Tk], [B * heads, Tq, Tk] (torch's
  // forms) or anything broadcastable to [B, heads, Tq, Tk].
  Tensor attn_mask = Tensor();
  // [B, Tk], nonzero where the key is padding.
  Tensor key_padding_mask = Tensor();
  // Query i sees keys j <= i only (decoders).
  bool causal = false;
};

// An AttentionMask::key_padding_mask for token ids: f32 [B, T], 1 where the id is `pad_id`. A row
// of nothing but padding (an empty sequence) is left unmasked: with every key masked its softmax
// would be 0/0, and the NaN would spread through the whole batch (torch gives NaN there; on every
// other input the two agree). Formed on the ids' device (no read back), exact for T below 2^24.
Tensor token_padding_mask(const Tensor& tokens, int64_t pad_id);

class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t dim, int64_t num_heads, AttentionOptions options = {});
  // Self-attention over x [B, T, dim] -> [B, T, dim].
  Tensor forward(const Tensor& x, const AttentionMask& mask = AttentionMask()) const;
  // Cross-attention of x [B, T, dim] over memory [B, S, kv_dim] -> [B, T, dim].
  Tensor forward(const Tensor& x, const Tensor& memory,
                 const AttentionMask& mask = AttentionMask()) const;
  int64_t dim() const { return dim_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return dim_ / num_heads_; }
  bool is_cross() const { return options_.cross; }

  std::shared_ptr<Linear> qkv;  // self-attention only
  std::shared_ptr<Linear> q;    // cross-attention only
  std::shared_ptr<Linear> kv;   // cross-attention only
  std::shared_ptr<Linear> proj;

 private:
  // q [B, H, Tq, hd], k and v [B, H, Tk, hd] -> proj(merged heads) [B, Tq, dim].
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask) const;

  int64_t dim_;
  int64_t num_heads_;
  AttentionOptions options_;
};

}  // namespace dtrain::nn
