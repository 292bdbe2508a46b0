#include "core/nn/embedding.h"

#include "core/autograd/grad_mode.h"
#include "core/nn/init.h"
#include "core/ops/embedding.h"

namespace dtrain::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx)
    : Module("Embedding"), num_embeddings_(num_embeddings), dim_(dim), padding_idx_(padding_idx) {
  DTRAIN_CHECK(num_embeddings > 0 && dim > 0, "Embedding(", num_embeddings, ", ", dim,
               "): the table needs at least one row and one column");
  DTRAIN_CHECK(padding_idx >= -1 && padding_idx < num_embeddings, "Embedding(", num_embeddings,
               ", ", dim, "): padding_idx ", padding_idx, " is outside [0, ", num_embeddings,
               "); use -1 for no padding row");
  weight = register_parameter("weight", Tensor::empty({num_embeddings, dim}));
  init::normal_(weight, 0.0, 1.0);
  if (padding_idx >= 0) {
    NoGradGuard no_grad;
    weight.select(0, padding_idx).zero_();
  }
}

Tensor Embedding::forward(const Tensor& indices) const {
  auto scope = forward_scope();
  return embedding(weight, indices, padding_idx_);
}

}  // namespace dtrain::nn
