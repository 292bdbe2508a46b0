// embedding: a row gather from the table; its gradient scatters the output gradient back into the
// rows that were read (summing repeats), except the padding row.
#include "core/ops/embedding.h"

#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

Tensor embedding(const Tensor& weight_in, const Tensor& indices_in, int64_t padding_idx) {
  DTRAIN_CHECK(weight_in.defined() && indices_in.defined(),
               "embedding: weight or indices is undefined");
  DTRAIN_CHECK(weight_in.dim() == 2, "embedding: weight has shape ", shape_str(weight_in.shape()),
               "; it must be [num_embeddings, embedding_dim]");
  DTRAIN_CHECK(indices_in.dtype() == DType::i64 || indices_in.dtype() == DType::i32,
               "embedding: indices are ", dtype_name(indices_in.dtype()),
               "; they must be i64 (or i32)");
  DTRAIN_CHECK(indices_in.device() == weight_in.device(), "embedding: indices are on ",
               indices_in.device().str(), " but weight is on ", weight_in.device().str(),
               "; move them to one device");
  const int64_t vocab = weight_in.size(0), dim = weight_in.size(1);
  DTRAIN_CHECK(padding_idx < vocab, "embedding: padding_idx ", padding_idx,
               " is outside the table of ", vocab, " rows; use a value in [0, ", vocab,
               ") or -1 for none");

  const Tensor indices =
      (indices_in.dtype() == DType::i64 ? indices_in : indices_in.to(DType::i64)).contiguous();
  // On the CPU the indices are checked here, where it costs no wait: an index out of range would read
  // (or, in backward, write) outside the table, and the error should say which one. Device indices are
  // not read back (a wait on every step): the data pipeline checks them on the host before the copy
  // (launch/workload.cpp), and the device kernels leave an out-of-range row NaN and its gradient unsent.
  if (indices.device().is_cpu()) {
    const int64_t* idx = indices.data<int64_t>();
    for (int64_t i = 0; i < indices.numel(); ++i) {
      DTRAIN_CHECK(idx[i] >= 0 && idx[i] < vocab, "embedding: index ", idx[i], " at position ", i,
                   " of indices ", shape_str(indices.shape()), " is outside [0, ", vocab,
                   ") for weight ", shape_str(weight_in.shape()));
    }
  }

  const Tensor weight = weight_in.detach().contiguous();
  Shape out_shape = indices.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  if (out.numel() > 0) backend_for(weight.device()).embedding(weight, indices, out);

  return autograd::record(
      "embedding", {weight_in}, out,
      [indices, padding_idx, wshape = weight.shape(), wdtype = weight.dtype(),
       device = weight.device()](const Tensor& grad_out, const std::vector<bool>& needs) {
        if (!needs[0]) return std::vector<Tensor>{Tensor()};
        Tensor dweight = Tensor::zeros(wshape, wdtype, device);
        if (grad_out.numel() > 0) {
          backend_for(device).embedding_backward(grad_out.contiguous(), indices, padding_idx,
                                                 dweight);
        }
        return std::vector<Tensor>{dweight};
      });
}

}  // namespace dtrain
