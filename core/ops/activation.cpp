// Activations and softmax. The pointwise ones run the backend's unary kernel forward and its
// unary_backward (g * f'(x), with f' written out in the CPU kernel) backward. Softmax runs over the
// last dim of a contiguous tensor; another dim is first swapped to the end.
// (dropout lives in core/ops/dropout.cpp.)
#include "core/amp/autocast.h"
#include "core/ops/activation.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

using autograd::record;
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

namespace {

void check_floating(const char* op, const Tensor& x) {
  DTRAIN_CHECK(x.defined(), op, ": got an undefined tensor");
  DTRAIN_CHECK(is_floating(x.dtype()), op, ": needs a floating tensor, got ", dtype_name(x.dtype()),
               " of shape ", shape_str(x.shape()));
}

Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  NoGradGuard no_grad;
  return t.contiguous();
}

Tensor pointwise(UnaryOp op, const char* name, const Tensor& x) {
  check_floating(name, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).unary(op, dense(x), out);
  Tensor saved = x.detach();
  return record(name, {x}, out, [op, saved](const Tensor& g, const Needs&) {
    Tensor dx = Tensor::empty(saved.shape(), saved.dtype(), saved.device());
    if (dx.numel() > 0) {
      backend_for(saved.device()).unary_backward(op, dense(saved), dense(g), dx);
    }
    return Grads{dx};
  });
}

// x with `dim` swapped to the end, contiguous (no graph); x itself when dim is already last.
Tensor to_last(const Tensor& x, int64_t dim) {
  if (dim == x.dim() - 1 || x.dim() == 0) return dense(x);
  NoGradGuard no_grad;
  return x.transpose(dim, -1).contiguous();
}

// The inverse of to_last for a result computed in that layout.
Tensor from_last(const Tensor& t, int64_t dim) {
  if (dim == t.dim() - 1 || t.dim() == 0) return t;
  NoGradGuard no_grad;
  return t.transpose(dim, -1).contiguous();
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - exp(y) sum(dy); sums over `dim`.
Tensor softmax_op(const Tensor& x, int64_t dim, bool log) {
  if (amp::autocast_enabled()) {  // softmax needs f32's range
    Tensor x32 = amp::autocast(amp::OpClass::softmax, x);
    if (!x32.same(x)) return softmax_op(x32, dim, log);
  }
  const char* name = log ? "log_softmax" : "softmax";
  check_floating(name, x);
  const int64_t d = wrap_dim(dim, x.dim(), name);
  Tensor xl = to_last(x, d);
  Tensor yl = Tensor::empty(xl.shape(), xl.dtype(), xl.device());
  if (yl.numel() > 0) backend_for(x.device()).softmax(xl, yl, log);
  Tensor out = from_last(yl, d);
  Tensor y_saved = yl.detach();  // out may be yl itself: the node must not hold its own output
  return record(name, {x}, out, [yl = y_saved, d, log](const Tensor& g, const Needs&) {
    Tensor gl = to_last(g, d);
    Tensor dxl = Tensor::empty(yl.shape(), yl.dtype(), yl.device());
    if (dxl.numel() > 0) backend_for(yl.device()).softmax_backward(yl, gl, dxl, log);
    return Grads{from_last(dxl, d)};
  });
}

}  // namespace

Tensor relu(const Tensor& x) { return pointwise(UnaryOp::relu, "relu", x); }

Tensor gelu(const Tensor& x, GeluApprox approx) {
  return approx == GeluApprox::tanh ? pointwise(UnaryOp::gelu_tanh, "gelu", x)
                                    : pointwise(UnaryOp::gelu_erf, "gelu", x);
}

Tensor tanh(const Tensor& x) { return pointwise(UnaryOp::tanh, "tanh", x); }

Tensor sigmoid(const Tensor& x) { return pointwise(UnaryOp::sigmoid, "sigmoid", x); }

Tensor silu(const Tensor& x) { return pointwise(UnaryOp::silu, "silu", x); }

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false); }

Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true); }

}  // namespace dtrain
