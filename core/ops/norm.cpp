// layer_norm: normalise over the last dim, then scale and shift. The forward saves each row's mean
// and reciprocal standard deviation, so the backward needs no second pass over the statistics.
#include "core/amp/autocast.h"
#include "core/ops/norm.h"

#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

namespace {

void check_affine(const Tensor& p, const char* what, const Tensor& x) {
  if (!p.defined()) return;
  DTRAIN_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), "layer_norm: ", what, " has shape ",
               shape_str(p.shape()), " but x ", shape_str(x.shape()), " needs [", x.size(-1),
               "] (the size of its last dim)");
  DTRAIN_CHECK(p.dtype() == x.dtype(), "layer_norm: ", what, " is ", dtype_name(p.dtype()),
               " but x is ", dtype_name(x.dtype()), "; cast them to one dtype");
  DTRAIN_CHECK(p.device() == x.device(), "layer_norm: ", what, " is on ", p.device().str(),
               " but x is on ", x.device().str(), "; move them to one device");
}

}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, double eps) {
  if (amp::autocast_enabled() && x_in.defined()) {  // statistics in f32
    Tensor x32 = amp::autocast(amp::OpClass::layer_norm, x_in);
    Tensor w32 = amp::autocast(amp::OpClass::layer_norm, weight_in);
    Tensor b32 = amp::autocast(amp::OpClass::layer_norm, bias_in);
    if (!x32.same(x_in) || (weight_in.defined() && !w32.same(weight_in)) ||
        (bias_in.defined() && !b32.same(bias_in))) {
      return layer_norm(x32, w32, b32, eps);
    }
  }
  DTRAIN_CHECK(x_in.defined(), "layer_norm: x is undefined");
  DTRAIN_CHECK(x_in.dim() >= 1, "layer_norm: x has shape ", shape_str(x_in.shape()),
               "; it needs at least one dim to normalise over");
  DTRAIN_CHECK(is_floating(x_in.dtype()), "layer_norm: x is ", dtype_name(x_in.dtype()),
               "; it needs a floating dtype");
  DTRAIN_CHECK(eps >= 0.0, "layer_norm: eps is ", eps, "; it must be >= 0");
  check_affine(weight_in, "weight", x_in);
  check_affine(bias_in, "bias", x_in);

  const Tensor x = x_in.detach().contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.detach().contiguous() : weight_in;
  const Tensor bias = bias_in.defined() ? bias_in.detach().contiguous() : bias_in;
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const DType stat_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;

  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, stat_dtype, x.device());
  Tensor rstd = Tensor::empty({rows}, stat_dtype, x.device());
  Backend& be = backend_for(x.device());
  if (x.numel() > 0) be.layer_norm(x, weight, bias, eps, out, mean, rstd);

  return autograd::record(
      "layer_norm", {x_in, weight_in, bias_in}, out,
      [xd = x, wd = weight, mean, rstd, has_bias = bias.defined()](const Tensor& grad_out,
                                                                   const std::vector<bool>& needs) {
        const Tensor dy = grad_out.contiguous();
        Tensor dx, dw, db;
        if (needs[0]) dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
        if (needs[1] && wd.defined()) dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
        if (needs[2] && has_bias) db = Tensor::empty({xd.size(-1)}, xd.dtype(), xd.device());
        if (xd.numel() > 0) {
          backend_for(xd.device()).layer_norm_backward(dy, xd, wd, mean, rstd, dx, dw, db);
        } else {
          if (dw.defined()) dw.zero_();
          if (db.defined()) db.zero_();
        }
        return std::vector<Tensor>{dx, dw, db};
      });
}

}  // namespace dtrain
