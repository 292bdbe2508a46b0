// Elementwise ops with broadcasting, each with its backward right under it. Broadcast operands
// reach the backend as stride-0 views (never materialised); their gradients are summed back with
// sum_to.
#include "core/ops/elementwise.h"

#include <algorithm>

#include "core/amp/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/reduce.h"

namespace dtrain {

using autograd::record;
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

namespace {

void check_defined(const char* op, const Tensor& t) {
  DTRAIN_CHECK(t.defined(), op, ": got an undefined tensor");
}

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  DTRAIN_CHECK(a.device() == b.device(), op, ": tensors are on different devices (",
               a.device().str(), " and ", b.device().str(), "); move one with .to(device)");
  DTRAIN_CHECK(a.dtype() == b.dtype(), op, ": dtypes ", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), " differ (shapes ", shape_str(a.shape()), " and ",
               shape_str(b.shape()), "); convert one with .to(dtype)");
}

void check_floating(const char* op, const Tensor& t) {
  check_defined(op, t);
  DTRAIN_CHECK(is_floating(t.dtype()), op, ": needs a floating tensor, got ", dtype_name(t.dtype()),
               " of shape ", shape_str(t.shape()));
}

// t as a view of `shape` with stride 0 on broadcast dims; a plain handle, not recorded.
Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const size_t lead = shape.size() - t.shape().size();
  Shape strides(shape.size(), 0);
  for (size_t i = lead; i < shape.size(); ++i) {
    strides[i] = t.shape()[i - lead] == shape[i] ? t.strides()[i - lead] : 0;
  }
  return make_view(t, shape, strides, t.offset());
}

// A contiguous tensor with t's values, made without recording.
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  NoGradGuard no_grad;
  return t.contiguous();
}

// Under autocast, elementwise arithmetic runs in f32 (amp's "other" class): 16-bit operands, such as a
// bf16 GEMM output added to an f32 residual, are cast up first. Outside autocast, returns them as given.
std::pair<Tensor, Tensor> autocast_operands(const Tensor& a, const Tensor& b) {
  if (!amp::autocast_enabled()) return {a, b};
  return {amp::autocast(amp::OpClass::other, a), amp::autocast(amp::OpClass::other, b)};
}

// The kernels behind the ops: check, allocate, dispatch. None of them records.
Tensor binary_kernel(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_pair(name, a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() > 0) {
    backend_for(a.device()).binary(op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  }
  return out;
}

Tensor scalar_kernel(BinaryOp op, const Tensor& a, double s, bool scalar_first = false) {
  Tensor ac = dense(a);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (out.numel() > 0) backend_for(a.device()).binary_scalar(op, ac, s, scalar_first, out);
  return out;
}

Tensor unary_kernel(UnaryOp op, const char* name, const Tensor& x) {
  check_floating(name, x);
  Tensor xc = dense(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).unary(op, xc, out);
  return out;
}

// g * d op(x) / dx, for the backward of a unary op.
Tensor unary_grad(UnaryOp op, const Tensor& x, const Tensor& g) {
  Tensor gc = dense(g.dtype() == x.dtype() ? g : g.to(x.dtype()));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).unary_backward(op, dense(x), gc, out);
  return out;
}

// A differentiable unary op whose backward is the backend's unary_backward.
Tensor unary_op(UnaryOp op, const char* name, const Tensor& x) {
  Tensor out = unary_kernel(op, name, x);
  Tensor saved = x.detach();
  return record(name, {x}, out, [op, saved](const Tensor& g, const Needs&) {
    return Grads{unary_grad(op, saved, g)};
  });
}

void check_inplace(const char* op, const Tensor& dst) {
  check_defined(op, dst);
  DTRAIN_CHECK(!(autograd::grad_enabled() && dst.requires_grad()), op,
               ": in-place update of a tensor of shape ", shape_str(dst.shape()),
               " that requires grad while grad mode is on; do it under NoGradGuard (as optimizer "
               "steps do) or use the out-of-place op");
}

// dst = dst op b, with b (already of dst's dtype and device) broadcast to dst's shape.
void apply_inplace(BinaryOp op, const char* name, Tensor& dst, const Tensor& b) {
  Shape shape = broadcast_shapes(dst.shape(), b.shape(), name);
  DTRAIN_CHECK(shape == dst.shape(), name, ": operand of shape ", shape_str(b.shape()),
               " does not broadcast to the destination's shape ", shape_str(dst.shape()));
  if (dst.numel() == 0) return;
  Backend& backend = backend_for(dst.device());
  if (dst.is_contiguous()) {
    backend.binary(op, dst, broadcast_view(b, shape), dst);
  } else {
    Tensor tmp = Tensor::empty(shape, dst.dtype(), dst.device());
    backend.binary(op, dst, broadcast_view(b, shape), tmp);
    backend.copy(tmp, dst);
  }
}

// b converted to dst's dtype (in-place ops accept e.g. a bf16 gradient into an f32 master weight).
Tensor as_dtype_of(const Tensor& dst, const Tensor& b, const char* op) {
  check_defined(op, b);
  DTRAIN_CHECK(dst.device() == b.device(), op, ": tensors are on different devices (",
               dst.device().str(), " and ", b.device().str(), "); move one with .to(device)");
  return b.dtype() == dst.dtype() ? b.detach() : b.detach().to(dst.dtype());
}

}  // namespace

// ---- broadcasting

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    // Align from the right: dim i of the result is dim i - (n - size) of each operand.
    int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    DTRAIN_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ",
                 shape_str(b), " do not broadcast (sizes ", da, " and ", db, " at dim ",
                 static_cast<int64_t>(i) - static_cast<int64_t>(n),
                 "); make the sizes equal or 1 there");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  DTRAIN_CHECK(lead >= 0, "sum_to: cannot sum shape ", shape_str(grad.shape()), " to ",
               shape_str(shape), " which has more dims");
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    int64_t want = shape[static_cast<size_t>(d - lead)];
    int64_t have = grad.shape()[static_cast<size_t>(d)];
    DTRAIN_CHECK(want == have || want == 1, "sum_to: shape ", shape_str(grad.shape()),
                 " is not a broadcast of ", shape_str(shape));
    if (want == 1 && have != 1) dims.push_back(d);
  }
  if (dims.empty()) return grad.reshape(shape);
  return sum(grad, dims, /*keepdim=*/true).reshape(shape);
}

// ---- arithmetic. For out = a op b broadcast, d out/d a is summed back to a's shape (sum_to).

Tensor add(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = autocast_operands(a_in, b_in);
  Tensor out = binary_kernel(BinaryOp::add, "add", a, b);
  Shape sa = a.shape(), sb = b.shape();
  return record("add", {a, b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    return Grads{needs[0] ? sum_to(g, sa) : Tensor(), needs[1] ? sum_to(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = autocast_operands(a_in, b_in);
  Tensor out = binary_kernel(BinaryOp::sub, "sub", a, b);
  Shape sa = a.shape(), sb = b.shape();
  return record("sub", {a, b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    return Grads{needs[0] ? sum_to(g, sa) : Tensor(), needs[1] ? neg(sum_to(g, sb)) : Tensor()};
  });
}

// d(ab) = b da + a db
Tensor mul(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = autocast_operands(a_in, b_in);
  Tensor out = binary_kernel(BinaryOp::mul, "mul", a, b);
  Tensor sa = a.detach(), sb = b.detach();
  return record("mul", {a, b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    return Grads{needs[0] ? sum_to(mul(g, sb), sa.shape()) : Tensor(),
                 needs[1] ? sum_to(mul(g, sa), sb.shape()) : Tensor()};
  });
}

// d(a/b) = da / b - a db / b^2
Tensor div(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = autocast_operands(a_in, b_in);
  Tensor out = binary_kernel(BinaryOp::div, "div", a, b);
  Tensor sa = a.detach(), sb = b.detach();
  return record("div", {a, b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    Tensor ga, gb;
    if (needs[0]) ga = sum_to(div(g, sb), sa.shape());
    if (needs[1]) gb = sum_to(neg(div(mul(g, sa), square(sb))), sb.shape());
    return Grads{ga, gb};
  });
}

// d a^e = e a^(e-1) da
Tensor pow(const Tensor& a, double exponent) {
  check_floating("pow", a);
  Tensor out = scalar_kernel(BinaryOp::pow, a, exponent);
  Tensor sa = a.detach();
  return record("pow", {a}, out, [sa, exponent](const Tensor& g, const Needs&) {
    if (exponent == 0.0) return Grads{Tensor::zeros(sa.shape(), sa.dtype(), sa.device())};
    if (exponent == 1.0) return Grads{g};
    if (exponent == 2.0) return Grads{mul(mul(g, sa), 2.0)};
    return Grads{mul(mul(g, pow(sa, exponent - 1.0)), exponent)};
  });
}

// ---- with a scalar

Tensor add(const Tensor& a, double s) {
  check_defined("add", a);
  Tensor out = scalar_kernel(BinaryOp::add, a, s);
  return record("add_scalar", {a}, out, [](const Tensor& g, const Needs&) { return Grads{g}; });
}

Tensor mul(const Tensor& a, double s) {
  check_defined("mul", a);
  Tensor out = scalar_kernel(BinaryOp::mul, a, s);
  return record("mul_scalar", {a}, out,
                [s](const Tensor& g, const Needs&) { return Grads{mul(g, s)}; });
}

Tensor rsub(double s, const Tensor& a) {
  check_defined("rsub", a);
  Tensor out = scalar_kernel(BinaryOp::sub, a, s, /*scalar_first=*/true);
  return record("rsub", {a}, out, [](const Tensor& g, const Needs&) { return Grads{neg(g)}; });
}

// d(s/a) = -s / a^2 da
Tensor rdiv(double s, const Tensor& a) {
  check_floating("rdiv", a);
  Tensor out = scalar_kernel(BinaryOp::div, a, s, /*scalar_first=*/true);
  Tensor sa = a.detach();
  return record("rdiv", {a}, out, [s, sa](const Tensor& g, const Needs&) {
    return Grads{div(mul(g, -s), square(sa))};
  });
}

// ---- unary. Derivatives are the backend's unary_backward (core/backend/backend.h lists them).

Tensor neg(const Tensor& x) {
  check_defined("neg", x);
  if (!is_floating(x.dtype())) return scalar_kernel(BinaryOp::mul, x, -1.0);
  return unary_op(UnaryOp::neg, "neg", x);
}
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::exp, "exp", x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::log, "log", x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::sqrt, "sqrt", x); }
Tensor rsqrt(const Tensor& x) { return unary_op(UnaryOp::rsqrt, "rsqrt", x); }
Tensor abs(const Tensor& x) { return unary_op(UnaryOp::abs, "abs", x); }
Tensor square(const Tensor& x) { return unary_op(UnaryOp::square, "square", x); }

// ---- maximum / minimum: the gradient goes to the selected operand, to a on ties.

namespace {
Tensor select_op(BinaryOp op, BinaryOp pick_a, const char* name, const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(op, name, a, b);
  Tensor sa = a.detach(), sb = b.detach();
  return record(name, {a, b}, out, [pick_a, name, sa, sb](const Tensor& g, const Needs& needs) {
    Tensor mask_a = binary_kernel(pick_a, name, sa, sb);  // 1 where a was chosen
    Tensor ga_full = mul(g, mask_a);
    Tensor ga, gb;
    if (needs[0]) ga = sum_to(ga_full, sa.shape());
    if (needs[1]) gb = sum_to(sub(g, ga_full), sb.shape());
    return Grads{ga, gb};
  });
}
}  // namespace

Tensor maximum(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = autocast_operands(a_in, b_in);
  return select_op(BinaryOp::maximum, BinaryOp::ge, "maximum", a, b);
}

Tensor minimum(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = autocast_operands(a_in, b_in);
  return select_op(BinaryOp::minimum, BinaryOp::le, "minimum", a, b);
}

// d clamp(x) = dx where lo <= x <= hi, else 0.
Tensor clamp(const Tensor& x, double lo, double hi) {
  check_defined("clamp", x);
  DTRAIN_CHECK(lo <= hi, "clamp: lower bound ", lo, " is above upper bound ", hi);
  Tensor out = scalar_kernel(BinaryOp::minimum, scalar_kernel(BinaryOp::maximum, x, lo), hi);
  Tensor sx = x.detach();
  return record("clamp", {x}, out, [sx, lo, hi](const Tensor& g, const Needs&) {
    Tensor inside = mul(scalar_kernel(BinaryOp::ge, sx, lo), scalar_kernel(BinaryOp::le, sx, hi));
    return Grads{mul(g, inside)};
  });
}

// ---- comparisons (not differentiable)

Tensor eq(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::eq, "eq", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::gt, "gt", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::lt, "lt", a, b); }

// ---- in place, never recorded

Tensor& add_(Tensor& dst, const Tensor& b, double alpha) {
  check_inplace("add_", dst);
  NoGradGuard no_grad;
  Tensor bb = as_dtype_of(dst, b, "add_");
  if (alpha != 1.0) bb = scalar_kernel(BinaryOp::mul, bb, alpha);
  apply_inplace(BinaryOp::add, "add_", dst, bb);
  return dst;
}

Tensor& mul_(Tensor& dst, const Tensor& b) {
  check_inplace("mul_", dst);
  NoGradGuard no_grad;
  apply_inplace(BinaryOp::mul, "mul_", dst, as_dtype_of(dst, b, "mul_"));
  return dst;
}

Tensor& mul_(Tensor& dst, double s) {
  check_inplace("mul_", dst);
  if (dst.numel() == 0) return dst;
  Backend& backend = backend_for(dst.device());
  if (dst.is_contiguous()) {
    backend.binary_scalar(BinaryOp::mul, dst, s, false, dst);
  } else {
    backend.copy(scalar_kernel(BinaryOp::mul, dst, s), dst);
  }
  return dst;
}

Tensor& div_(Tensor& dst, const Tensor& b) {
  check_inplace("div_", dst);
  NoGradGuard no_grad;
  apply_inplace(BinaryOp::div, "div_", dst, as_dtype_of(dst, b, "div_"));
  return dst;
}

Tensor& addcmul_(Tensor& dst, const Tensor& a, const Tensor& b, double value) {
  check_inplace("addcmul_", dst);
  NoGradGuard no_grad;
  Tensor t = binary_kernel(BinaryOp::mul, "addcmul_", as_dtype_of(dst, a, "addcmul_"),
                           as_dtype_of(dst, b, "addcmul_"));
  if (value != 1.0) backend_for(t.device()).binary_scalar(BinaryOp::mul, t, value, false, t);
  apply_inplace(BinaryOp::add, "addcmul_", dst, t);
  return dst;
}

Tensor& addcdiv_(Tensor& dst, const Tensor& a, const Tensor& b, double value) {
  check_inplace("addcdiv_", dst);
  NoGradGuard no_grad;
  Tensor t = binary_kernel(BinaryOp::div, "addcdiv_", as_dtype_of(dst, a, "addcdiv_"),
                           as_dtype_of(dst, b, "addcdiv_"));
  if (value != 1.0) backend_for(t.device()).binary_scalar(BinaryOp::mul, t, value, false, t);
  apply_inplace(BinaryOp::add, "addcdiv_", dst, t);
  return dst;
}

}  // namespace dtrain
