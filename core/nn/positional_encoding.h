// Position information added to token embeddings x [B, T, dim]: y = dropout(x + table[:T]).
//   sinusoidal ("Attention Is All You Need"): table[p, 2i] = sin(p / 10000^(2i/dim)),
//       table[p, 2i+1] = cos(p / 10000^(2i/dim)); a fixed, non-persistent buffer `pe`, so it is in
//       no checkpoint and is rebuilt at construction.
//   learned (GPT): a parameter `weight` [max_len, dim] ~ truncated N(0, 0.02^2).
#pragma once
#include "core/nn/module.h"

namespace dtrain::nn {

enum class PositionKind { sinusoidal, learned };

// The sinusoidal table [max_len, dim] (computed in f64, returned in `dtype`).
Tensor sinusoidal_table(int64_t max_len, int64_t dim, DType dtype = DType::f32);

class PositionalEncoding : public Module {
 public:
  PositionalEncoding(int64_t max_len, int64_t dim, PositionKind kind = PositionKind::sinusoidal,
                     double dropout = 0.0);
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  // The [max_len, dim] table (the buffer or the parameter).
  const Tensor& table() const { return table_; }
  PositionKind kind() const { return kind_; }
  int64_t max_len() const { return max_len_; }

 private:
  Tensor table_;
  int64_t max_len_;
  int64_t dim_;
  PositionKind kind_;
  double dropout_;
};

}  // namespace dtrain::nn
