// Reductions. The backend reduces x viewed as [outer, n, inner] over n; any set of dims is brought
// to that form by at most one copy (none when the reduced dims are adjacent in a contiguous
// tensor).
#include "core/amp/autocast.h"
#include "core/ops/reduce.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"

namespace dtrain {

using autograd::record;
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

namespace {

struct ReducePlan {
  Tensor x;  // contiguous, laid out so the reduced elements of each output are [outer, n, inner]
  int64_t outer = 1, n = 1, inner = 1;
  Shape out_shape;   // without the reduced dims
  Shape keep_shape;  // with the reduced dims kept as 1
};

ReducePlan plan_reduce(const char* op, const Tensor& x, const std::vector<int64_t>& dims) {
  DTRAIN_CHECK(x.defined(), op, ": got an undefined tensor");
  const int64_t nd = x.dim();
  std::vector<bool> reduced(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;  // dim 0 / -1 of a scalar: nothing to reduce
    DTRAIN_CHECK(!reduced[static_cast<size_t>(w)], op, ": dim ", d, " given twice for shape ",
                 shape_str(x.shape()));
    reduced[static_cast<size_t>(w)] = true;
  }
  ReducePlan p;
  int64_t first = -1, last = -1;
  for (int64_t d = 0; d < nd; ++d) {
    size_t du = static_cast<size_t>(d);
    if (reduced[du]) {
      p.keep_shape.push_back(1);
      if (first < 0) first = d;
      last = d;
    } else {
      p.keep_shape.push_back(x.shape()[du]);
      p.out_shape.push_back(x.shape()[du]);
    }
  }
  bool adjacent = true;
  for (int64_t d = first; d >= 0 && d <= last; ++d) {
    adjacent = adjacent && reduced[static_cast<size_t>(d)];
  }
  NoGradGuard no_grad;
  if (first < 0) {
    p.x = x.contiguous();
    p.outer = x.numel();
  } else if (adjacent) {
    p.x = x.contiguous();
    for (int64_t d = 0; d < nd; ++d) {
      int64_t s = x.shape()[static_cast<size_t>(d)];
      if (d < first)
        p.outer *= s;
      else if (d <= last)
        p.n *= s;
      else
        p.inner *= s;
    }
  } else {
    // Kept dims first, reduced dims last: one copy makes every output's inputs one contiguous run.
    std::vector<int64_t> order;
    for (int64_t d = 0; d < nd; ++d)
      if (!reduced[static_cast<size_t>(d)]) order.push_back(d);
    for (int64_t d = 0; d < nd; ++d)
      if (reduced[static_cast<size_t>(d)]) order.push_back(d);
    p.x = x.permute(order).contiguous();
    p.outer = shape_numel(p.out_shape);
    p.n = x.numel() / std::max<int64_t>(p.outer, 1);
    if (p.outer == 0) p.n = 0;
  }
  return p;
}

Tensor run_reduce(ReduceOp op, const ReducePlan& p, const Tensor& indices = Tensor()) {
  Tensor out = Tensor::empty(p.out_shape, p.x.dtype(), p.x.device());
  if (out.numel() > 0) {
    backend_for(p.x.device()).reduce(op, p.x, p.outer, p.n, p.inner, out, indices);
  }
  return out;
}

// The gradient of a sum: g (of the reduced shape) copied back over the reduced dims.
Tensor expand_back(const Tensor& g, const Shape& keep_shape, const Shape& in_shape) {
  return g.reshape(keep_shape).expand(in_shape).contiguous();
}

Shape result_shape(const ReducePlan& p, bool keepdim) {
  return keepdim ? p.keep_shape : p.out_shape;
}

// A handle of `t` with another shape of the same numel (t is contiguous); not recorded.
Tensor reshaped(const Tensor& t, const Shape& shape) {
  return make_view(t, shape, contiguous_strides(shape), t.offset());
}

// The gradient of a max along [outer, n, inner]: g goes to the arg max of each reduced run. The
// one-hot mask compares an arange over the reduced dim with the indices, so it runs on any backend.
Tensor scatter_to_argmax(const Tensor& g, const Tensor& indices, int64_t outer, int64_t n,
                         int64_t inner, const Tensor& like) {
  Tensor positions = reshaped(Tensor::arange(n, DType::i64, like.device()), {1, n, 1});
  Tensor hit = eq(positions, reshaped(indices, {outer, 1, inner}));  // [outer, n, inner] of 0/1
  Tensor gv = reshaped(g.contiguous(), {outer, 1, inner});
  return mul(hit.to(like.dtype()), gv.to(like.dtype()));
}

}  // namespace

// d sum / dx = 1 for every reduced element.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  if (amp::autocast_enabled()) {  // reductions accumulate in f32
    Tensor x32 = amp::autocast(amp::OpClass::reduction, x);
    if (!x32.same(x)) return sum(x32, dims, keepdim);
  }
  ReducePlan p = plan_reduce("sum", x, dims);
  Tensor out = reshaped(run_reduce(ReduceOp::sum, p), result_shape(p, keepdim));
  const Shape& keep = p.keep_shape;
  const Shape& in_shape = x.shape();
  return record("sum", {x}, out, [keep, in_shape](const Tensor& g, const Needs&) {
    return Grads{expand_back(g, keep, in_shape)};
  });
}

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

// mean = sum / count, so d mean / dx = 1 / count.
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  if (amp::autocast_enabled()) {
    Tensor x32 = amp::autocast(amp::OpClass::reduction, x);
    if (!x32.same(x)) return mean(x32, dims, keepdim);
  }
  DTRAIN_CHECK(x.defined() && is_floating(x.dtype()), "mean: needs a floating tensor, got ",
               x.defined() ? dtype_name(x.dtype()) : "an undefined one");
  ReducePlan p = plan_reduce("mean", x, dims);
  const int64_t count = p.n;  // elements averaged into each output
  Tensor total = run_reduce(ReduceOp::sum, p);
  Tensor out = Tensor::empty(total.shape(), total.dtype(), total.device());
  if (out.numel() > 0) {
    backend_for(x.device())
        .binary_scalar(BinaryOp::mul, total, 1.0 / static_cast<double>(count), false, out);
  }
  out = reshaped(out, result_shape(p, keepdim));
  const Shape& keep = p.keep_shape;
  const Shape& in_shape = x.shape();
  return record("mean", {x}, out, [keep, in_shape, count](const Tensor& g, const Needs&) {
    return Grads{expand_back(mul(g, 1.0 / static_cast<double>(count)), keep, in_shape)};
  });
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  ReducePlan p = plan_reduce("max", x, {dim});
  DTRAIN_CHECK(p.n > 0 || p.outer * p.inner == 0, "max: dim ", dim, " of shape ",
               shape_str(x.shape()), " is empty");
  Tensor indices = Tensor::empty(p.out_shape, DType::i64, x.device());
  Tensor out = reshaped(run_reduce(ReduceOp::max, p, indices), result_shape(p, keepdim));
  const Shape& in_shape = x.shape();
  int64_t outer = p.outer, n = p.n, inner = p.inner;
  Tensor like = x.detach();
  return record("max", {x}, out, [=](const Tensor& g, const Needs&) {
    return Grads{scatter_to_argmax(g, indices, outer, n, inner, like).reshape(in_shape)};
  });
}

Tensor max(const Tensor& x) {
  DTRAIN_CHECK(x.defined() && x.numel() > 0, "max: the tensor of shape ",
               x.defined() ? shape_str(x.shape()) : "?", " is empty; it has no maximum");
  ReducePlan p = plan_reduce("max", x, {});
  Tensor indices = Tensor::empty({}, DType::i64, x.device());
  Tensor out = run_reduce(ReduceOp::max, p, indices);
  const Shape& in_shape = x.shape();
  int64_t n = x.numel();
  Tensor like = x.detach();
  return record("max", {x}, out, [=](const Tensor& g, const Needs&) {
    return Grads{scatter_to_argmax(g, indices, 1, n, 1, like).reshape(in_shape)};
  });
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  ReducePlan p = plan_reduce("argmax", x, {dim});
  DTRAIN_CHECK(p.n > 0 || p.outer * p.inner == 0, "argmax: dim ", dim, " of shape ",
               shape_str(x.shape()), " is empty");
  Tensor indices = Tensor::empty(p.out_shape, DType::i64, x.device());
  run_reduce(ReduceOp::max, p, indices);
  return reshaped(indices, result_shape(p, keepdim));
}

}  // namespace dtrain
