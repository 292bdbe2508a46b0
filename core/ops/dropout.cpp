// dropout (declared in core/ops/activation.h). Inverted dropout: y = x * m with
// m_i = bernoulli(1 - p) / (1 - p), so E[y] = x and evaluation needs no rescaling. The mask is
// saved; the backward is dx = dy * m.
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/activation.h"

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

}  // namespace dtrain
