// Joining and splitting. cat copies each input into its slice of one output (the backend copy takes
// any strides); its backward hands each input the matching slice of the gradient. split and chunk
// are narrow views, whose backward lives with narrow (core/ops/view.cpp).
#include "core/ops/shape.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  DTRAIN_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  DTRAIN_CHECK(first.defined(), "cat: tensor 0 is undefined");
  const int64_t nd = first.dim();
  DTRAIN_CHECK(nd > 0, "cat: cannot concatenate 0-dim tensors; unsqueeze them or use stack");
  const int64_t d = wrap_dim(dim, nd, "cat");
  for (size_t i = 1; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    DTRAIN_CHECK(t.defined(), "cat: tensor ", i, " is undefined");
    DTRAIN_CHECK(t.dtype() == first.dtype(), "cat: tensor ", i, " has dtype ",
                 dtype_name(t.dtype()), " but tensor 0 has ", dtype_name(first.dtype()),
                 "; convert with .to(dtype)");
    DTRAIN_CHECK(t.device() == first.device(), "cat: tensor ", i, " is on ", t.device().str(),
                 " but tensor 0 is on ", first.device().str());
    bool match = t.dim() == nd;
    for (int64_t k = 0; match && k < nd; ++k) {
      match = k == d || t.shape()[static_cast<size_t>(k)] == first.shape()[static_cast<size_t>(k)];
    }
    DTRAIN_CHECK(match, "cat: tensor ", i, " of shape ", shape_str(t.shape()),
                 " does not match tensor 0 of shape ", shape_str(first.shape()), " outside dim ",
                 d);
  }
  if (tensors.size() == 1) return tensors[0];

  Shape shape = first.shape();
  int64_t total = 0;
  for (const Tensor& t : tensors) total += t.shape()[static_cast<size_t>(d)];
  shape[static_cast<size_t>(d)] = total;
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  Backend& backend = backend_for(first.device());
  const int64_t dim_stride = out.strides()[static_cast<size_t>(d)];
  std::vector<int64_t> sizes;
  sizes.reserve(tensors.size());
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    int64_t len = t.shape()[static_cast<size_t>(d)];
    sizes.push_back(len);
    if (t.numel() > 0) {
      backend.copy(t, make_view(out, t.shape(), out.strides(), offset * dim_stride));
    }
    offset += len;
  }
  return autograd::record("cat", tensors, out, [sizes, d](const Tensor& g, const Needs& needs) {
    Grads grads(sizes.size());
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (needs[i]) grads[i] = g.narrow(d, start, sizes[i]).contiguous();
      start += sizes[i];
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  DTRAIN_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  DTRAIN_CHECK(tensors[0].defined(), "stack: tensor 0 is undefined");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    DTRAIN_CHECK(tensors[i].defined(), "stack: tensor ", i, " is undefined");
    DTRAIN_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " of shape ",
                 shape_str(tensors[i].shape()), " differs from tensor 0 of shape ",
                 shape_str(tensors[0].shape()), "; stack needs equal shapes");
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  DTRAIN_CHECK(x.defined(), "split: got an undefined tensor");
  DTRAIN_CHECK(x.dim() > 0, "split: cannot split a 0-dim tensor");
  DTRAIN_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < n || (n == 0 && pieces.empty()); start += split_size) {
    pieces.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  }
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  DTRAIN_CHECK(x.defined(), "chunk: got an undefined tensor");
  DTRAIN_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  DTRAIN_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-dim tensor");
  const int64_t n = x.size(wrap_dim(dim, x.dim(), "chunk"));
  // As torch.chunk: pieces of ceil(n / chunks), so there may be fewer than `chunks`.
  const int64_t size = std::max<int64_t>(1, (n + chunks - 1) / chunks);
  return split(x, size, dim);
}

}  // namespace dtrain
