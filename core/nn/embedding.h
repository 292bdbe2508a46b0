// Embedding: a lookup table [num_embeddings, dim] indexed by i64 token ids.
#pragma once
#include "core/nn/module.h"

namespace dtrain::nn {

class Embedding : public Module {
 public:
  // weight ~ N(0, 1) (torch's initialisation). padding_idx >= 0 names a row that is zeroed and gets
  // no gradient (a padding token); -1 means none.
  Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx = -1);
  // indices i64 of any shape -> [*indices.shape, dim]
  Tensor forward(const Tensor& indices) const;
  Tensor operator()(const Tensor& indices) const { return forward(indices); }
  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t dim() const { return dim_; }
  int64_t padding_idx() const { return padding_idx_; }

  Tensor weight;  // [num_embeddings, dim]

 private:
  int64_t num_embeddings_;
  int64_t dim_;
  int64_t padding_idx_;
};

}  // namespace dtrain::nn
