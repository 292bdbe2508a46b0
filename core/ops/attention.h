#pragma once
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"

namespace dtrain {

// softmax(q k^T * scale + mask) v over q [B, H, Tq, D], k and v [B, H, Tk, D] -> [B, H, Tq, D].
// attn_mask (optional) is additive, broadcastable to [B, H, Tq, Tk] (-inf where a key is masked,
// e.g. padding); causal masks keys after the query position. scale <= 0 means 1/sqrt(D).
// dropout_p applies to the attention weights in training; the fused path draws one 64-bit value
// from gen (or the default generator) per call, which keys the mask of every score.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& attn_mask = Tensor(), bool causal = false,
                                    double dropout_p = 0.0, bool training = false,
                                    double scale = 0.0, Generator* gen = nullptr);
// A [B, 1, 1, Tk] additive mask from a bool-like key padding mask [B, Tk] (nonzero = padding).
Tensor key_padding_to_attn_mask(const Tensor& key_padding_mask, DType dtype);

}  // namespace dtrain
