// layer_norm: normalise over the last dim, then scale and shift. The forward saves each row's mean
// and reciprocal standard deviation, so the backward needs no second pass over the statistics.
// add_layer_norm: the same with the residual add before it fused in (h = x + residual, y =
// layer_norm(h)), forward and backward.
#include "core/ops/norm.h"

#include <memory>
#include <utility>

#include "core/amp/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

namespace {

void check_affine(const char* op, const Tensor& p, const char* what, const Tensor& x) {
  if (!p.defined()) return;
  DTRAIN_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), op, ": ", what, " has shape ",
               shape_str(p.shape()), " but x ", shape_str(x.shape()), " needs [", x.size(-1),
               "] (the size of its last dim)");
  DTRAIN_CHECK(p.dtype() == x.dtype(), op, ": ", what, " is ", dtype_name(p.dtype()), " but x is ",
               dtype_name(x.dtype()), "; cast them to one dtype");
  DTRAIN_CHECK(p.device() == x.device(), op, ": ", what, " is on ", p.device().str(),
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
  check_affine("layer_norm", weight_in, "weight", x_in);
  check_affine("layer_norm", bias_in, "bias", x_in);

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

// ---------------------------------------------------------------------------------------------
// add_layer_norm. Autograd nodes have one output, and this op has two (h and y) whose gradients
// must meet in one backward kernel. So it records three nodes:
//   fused:  (x, residual, weight, bias) -> token   (a [1] CPU placeholder)
//   "h":    token -> h        "y": token -> y
// The backwards of "h" and "y" park dh and dy in a state the three share and pass a zero to the
// token. The engine runs the fused node only after every node that feeds it (here both), so by then
// the state holds dh and dy (either undefined when nothing reached it), and one kernel computes
//   dx = dresidual = dh + d layer_norm(h)/dh (dy),  dweight, dbias.
// The fused node clears the state, so a retained graph can run backward again.

namespace {

struct AddLayerNormGrads {
  Tensor dh, dy;
};

// g as a contiguous tensor of `like`'s dtype (a gradient may arrive in another dtype).
Tensor grad_like(const Tensor& g, const Tensor& like) {
  if (!g.defined()) return g;
  return (g.dtype() == like.dtype() ? g : g.to(like.dtype())).contiguous();
}

}  // namespace

AddLayerNormResult add_layer_norm(const Tensor& x_in, const Tensor& residual_in,
                                  const Tensor& weight_in, const Tensor& bias_in, double eps) {
  if (amp::autocast_enabled() && x_in.defined() && residual_in.defined()) {
    // As add then layer_norm under autocast: the sum in f32 (amp's "other" class), so the
    // statistics are too.
    Tensor x32 = amp::autocast(amp::OpClass::other, x_in);
    Tensor r32 = amp::autocast(amp::OpClass::other, residual_in);
    Tensor w32 = amp::autocast(amp::OpClass::layer_norm, weight_in);
    Tensor b32 = amp::autocast(amp::OpClass::layer_norm, bias_in);
    if (!x32.same(x_in) || !r32.same(residual_in) ||
        (weight_in.defined() && !w32.same(weight_in)) ||
        (bias_in.defined() && !b32.same(bias_in))) {
      return add_layer_norm(x32, r32, w32, b32, eps);
    }
  }
  DTRAIN_CHECK(x_in.defined() && residual_in.defined(),
               "add_layer_norm: x or residual is undefined; pass both tensors");
  DTRAIN_CHECK(x_in.shape() == residual_in.shape(), "add_layer_norm: x ", shape_str(x_in.shape()),
               " and residual ", shape_str(residual_in.shape()),
               " differ in shape; pass tensors of one shape (no broadcasting)");
  DTRAIN_CHECK(x_in.dim() >= 1, "add_layer_norm: x has shape ", shape_str(x_in.shape()),
               "; it needs at least one dim to normalise over");
  DTRAIN_CHECK(is_floating(x_in.dtype()), "add_layer_norm: x is ", dtype_name(x_in.dtype()),
               "; it needs a floating dtype");
  DTRAIN_CHECK(residual_in.dtype() == x_in.dtype(), "add_layer_norm: residual is ",
               dtype_name(residual_in.dtype()), " but x is ", dtype_name(x_in.dtype()),
               "; cast them to one dtype");
  DTRAIN_CHECK(residual_in.device() == x_in.device(), "add_layer_norm: residual is on ",
               residual_in.device().str(), " but x is on ", x_in.device().str(),
               "; move them to one device");
  DTRAIN_CHECK(eps >= 0.0, "add_layer_norm: eps is ", eps, "; it must be >= 0");
  check_affine("add_layer_norm", weight_in, "weight", x_in);
  check_affine("add_layer_norm", bias_in, "bias", x_in);

  const Tensor x = x_in.detach().contiguous();
  const Tensor residual = residual_in.detach().contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.detach().contiguous() : weight_in;
  const Tensor bias = bias_in.defined() ? bias_in.detach().contiguous() : bias_in;
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const DType stat_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;

  Tensor h = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, stat_dtype, x.device());
  Tensor rstd = Tensor::empty({rows}, stat_dtype, x.device());
  if (x.numel() > 0) {
    backend_for(x.device()).add_layer_norm(x, residual, weight, bias, eps, h, y, mean, rstd);
  }
  if (!autograd::grad_enabled() ||
      !autograd::any_requires_grad({x_in, residual_in, weight_in, bias_in})) {
    return {h, y};
  }

  auto grads = std::make_shared<AddLayerNormGrads>();
  Tensor token = autograd::record(
      "add_layer_norm", {x_in, residual_in, weight_in, bias_in}, Tensor::zeros({1}),
      [grads, hd = h.detach(), wd = weight, mean, rstd, has_bias = bias.defined()](
          const Tensor&, const std::vector<bool>& needs) {
        const Tensor dh = grad_like(std::exchange(grads->dh, Tensor()), hd);
        const Tensor dy = grad_like(std::exchange(grads->dy, Tensor()), hd);
        // y got no gradient: only the direct one passes to x and residual, none to the affine.
        if (!dy.defined()) return std::vector<Tensor>{dh, dh, Tensor(), Tensor()};
        Tensor dx, dw, db;
        if (needs[0] || needs[1]) dx = Tensor::empty(hd.shape(), hd.dtype(), hd.device());
        if (needs[2] && wd.defined()) dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
        if (needs[3] && has_bias) db = Tensor::empty({hd.size(-1)}, hd.dtype(), hd.device());
        if (hd.numel() > 0) {
          backend_for(hd.device()).add_layer_norm_backward(dy, dh, hd, wd, mean, rstd, dx, dw, db);
        } else {
          if (dw.defined()) dw.zero_();
          if (db.defined()) db.zero_();
        }
        return std::vector<Tensor>{dx, dx, dw, db};
      });
  auto park = [grads](Tensor AddLayerNormGrads::*slot) {
    return [grads, slot](const Tensor& g, const std::vector<bool>&) {
      (*grads).*slot = g;
      return std::vector<Tensor>{Tensor::zeros({1})};
    };
  };
  h = autograd::record("add_layer_norm.h", {token}, h, park(&AddLayerNormGrads::dh));
  y = autograd::record("add_layer_norm.y", {token}, y, park(&AddLayerNormGrads::dy));
  return {h, y};
}

}  // namespace dtrain
