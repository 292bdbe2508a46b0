// dropout and dropout_add (declared in core/ops/activation.h). Inverted dropout: y = x * m with
// m_i = bernoulli(1 - p) / (1 - p), so E[y] = x and evaluation needs no rescaling.
//   dropout:      the mask is drawn with Backend::random and saved; the backward is dx = dy * m.
//   dropout_add:  out = residual + x * m in one kernel that draws m inline from Philox keyed by a
//                 64-bit seed (drawn once per call from the Generator) and the element index, the
//                 same bits on every backend. Only the seed is saved; the backward recomputes m:
//                 dx = dy * m, dresidual = dy.
#include "core/amp/autocast.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/activation.h"
#include "core/ops/elementwise.h"

namespace dtrain {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  DTRAIN_CHECK(x.defined(), "dropout: x is undefined");
  DTRAIN_CHECK(p >= 0.0 && p <= 1.0, "dropout: p is ", p, "; it must be in [0, 1]");
  DTRAIN_CHECK(is_floating(x.dtype()), "dropout: x is ", dtype_name(x.dtype()),
               "; it needs a floating dtype");
  if (!training || p == 0.0) return x;

  Backend& be = backend_for(x.device());
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (p == 1.0) {
    be.fill(mask, 0.0);  // everything dropped; 1/(1-p) would turn 0 * inf into nan
  } else if (mask.numel() > 0) {
    be.random(RandomKind::bernoulli, 1.0 - p, 0.0, gen ? *gen : default_generator(), mask);
    be.binary_scalar(BinaryOp::mul, mask, 1.0 / (1.0 - p), false, mask);
  }
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) be.binary(BinaryOp::mul, x, mask, out);

  return autograd::record("dropout", {x}, out,
                          [mask](const Tensor& grad_out, const std::vector<bool>& needs) {
                            if (!needs[0]) return std::vector<Tensor>{Tensor()};
                            Tensor dx = Tensor::empty(mask.shape(), mask.dtype(), mask.device());
                            if (dx.numel() > 0)
                              backend_for(mask.device()).binary(BinaryOp::mul, grad_out, mask, dx);
                            return std::vector<Tensor>{dx};
                          });
}

Tensor dropout_add(const Tensor& x_in, const Tensor& residual_in, double p, bool training,
                   Generator* gen) {
  DTRAIN_CHECK(x_in.defined() && residual_in.defined(),
               "dropout_add: x or residual is undefined; pass both tensors");
  DTRAIN_CHECK(p >= 0.0 && p <= 1.0, "dropout_add: p is ", p, "; it must be in [0, 1]");
  DTRAIN_CHECK(x_in.shape() == residual_in.shape(), "dropout_add: x ", shape_str(x_in.shape()),
               " and residual ", shape_str(residual_in.shape()),
               " differ in shape; pass tensors of one shape (no broadcasting)");
  DTRAIN_CHECK(is_floating(x_in.dtype()), "dropout_add: x is ", dtype_name(x_in.dtype()),
               "; it needs a floating dtype");
  if (!training || p == 0.0) return add(residual_in, x_in);

  // As dropout then add under autocast: the add runs in f32 (amp's "other" class).
  const Tensor x = amp::autocast(amp::OpClass::other, x_in);
  const Tensor residual = amp::autocast(amp::OpClass::other, residual_in);
  DTRAIN_CHECK(residual.dtype() == x.dtype(), "dropout_add: residual is ",
               dtype_name(residual.dtype()), " but x is ", dtype_name(x.dtype()),
               "; cast them to one dtype");
  DTRAIN_CHECK(residual.device() == x.device(), "dropout_add: residual is on ",
               residual.device().str(), " but x is on ", x.device().str(),
               "; move them to one device");

  const uint64_t seed = (gen ? *gen : default_generator()).next_u64();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) {
    backend_for(x.device())
        .dropout_add(x.detach().contiguous(), residual.detach().contiguous(), p, seed, out);
  }
  return autograd::record(
      "dropout_add", {x, residual}, out,
      [p, seed, dtype = x.dtype()](const Tensor& grad_out, const std::vector<bool>& needs) {
        Tensor dx;
        if (needs[0]) {
          const Tensor dy =
              (grad_out.dtype() == dtype ? grad_out : grad_out.to(dtype)).contiguous();
          dx = Tensor::empty(dy.shape(), dtype, dy.device());
          if (dx.numel() > 0) backend_for(dy.device()).dropout_add(dy, Tensor(), p, seed, dx);
        }
        return std::vector<Tensor>{dx, needs[1] ? grad_out : Tensor()};
      });
}

}  // namespace dtrain
