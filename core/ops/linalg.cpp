// Matrix products. Operands reach the backend GEMM as they are laid out: a matrix whose last two
// strides are (1, rows) is the transpose of a contiguous one and is passed with a transpose flag,
// so x.transpose(-1, -2) and W^T in linear cost no copy. Batch dims broadcast with a stride of 0.
#include "core/amp/autocast.h"
#include "core/ops/linalg.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace dtrain {

using autograd::record;
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

namespace {

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  DTRAIN_CHECK(a.defined() && b.defined(), op, ": got an undefined tensor");
  DTRAIN_CHECK(a.device() == b.device(), op, ": tensors are on different devices (",
               a.device().str(), " and ", b.device().str(), "); move one with .to(device)");
  DTRAIN_CHECK(a.dtype() == b.dtype(), op, ": dtypes ", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), " differ (shapes ", shape_str(a.shape()), " and ",
               shape_str(b.shape()), "); convert one with .to(dtype)");
  DTRAIN_CHECK(is_floating(a.dtype()), op, ": needs floating tensors, got ", dtype_name(a.dtype()));
}

// How BLAS sees a rows x cols matrix with strides (s_row, s_col): stored row-major with leading
// dimension ld, either as is or transposed. `ok` is false when neither stride is 1 (a copy is
// needed). Strides of size-1 dims do not matter and are ignored.
struct MatLayout {
  bool ok = false, trans = false;
  int64_t ld = 0;
};

MatLayout matrix_layout(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  if (rows <= 1 && cols <= 1) return {true, false, 1};
  if (rows == 0 || cols == 0) return {true, false, std::max<int64_t>(cols, 1)};
  if (cols == 1 || s_col == 1) {
    int64_t ld = rows == 1 ? cols : s_row;
    if (ld >= cols) return {true, false, ld};
  }
  if (rows == 1 || s_row == 1) {
    int64_t ld = cols == 1 ? rows : s_col;
    if (ld >= rows) return {true, true, ld};
  }
  return {};
}

MatLayout layout_of(const Tensor& t) {
  const int64_t nd = t.dim();
  const size_t r = static_cast<size_t>(nd - 2), c = static_cast<size_t>(nd - 1);
  return matrix_layout(t.shape()[r], t.shape()[c], t.strides()[r], t.strides()[c]);
}

// One GEMM out [m, n] = a [m, k] @ b [k, n] into a dense out, a and b read through their layouts.
GemmArgs gemm_args(const MatLayout& la, const MatLayout& lb, int64_t m, int64_t n, int64_t k) {
  GemmArgs g;
  g.trans_a = la.trans;
  g.trans_b = lb.trans;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = la.ld;
  g.ldb = lb.ld;
  g.ldc = n;
  return g;
}

// The single stride that walks t's batch dims (broadcast to `batch`) in row-major order, or -1 when
// they do not collapse to one stride (e.g. two dims broadcast in different operands).
int64_t batch_stride(const Tensor& t, const Shape& batch) {
  const size_t lead = batch.size() - static_cast<size_t>(t.dim() - 2);
  int64_t stride = -1;
  int64_t inner_count = 1;  // product of the batch sizes after the current dim
  for (size_t i = batch.size(); i-- > 0;) {
    if (batch[i] != 1) {
      int64_t s = 0;
      if (i >= lead && t.shape()[i - lead] != 1) s = t.strides()[i - lead];
      if (stride < 0) {
        if (s % inner_count != 0) return -1;
        stride = s / inner_count;
      } else if (s != stride * inner_count) {
        return -1;
      }
    }
    inner_count *= batch[i];
  }
  return stride < 0 ? 0 : stride;
}

// A dense copy of t broadcast to batch + its matrix dims (no graph).
Tensor materialise(const Tensor& t, const Shape& batch) {
  Shape full = batch;
  full.push_back(t.shape()[static_cast<size_t>(t.dim() - 2)]);
  full.push_back(t.shape()[static_cast<size_t>(t.dim() - 1)]);
  NoGradGuard no_grad;
  return t.expand(full).contiguous();
}

// out = a @ b for a [..., m, k], b [..., k, n] (both at least 2-D), batch dims broadcast. No graph.
// An epilogue (backend_kernels.def's gemm row) needs 2-D operands; `bias` is its vector.
Tensor matmul_kernel(const Tensor& a_in, const Tensor& b_in,
                     GemmEpilogue epilogue = GemmEpilogue::none, const Tensor& bias = Tensor()) {
  Tensor a = a_in, b = b_in;
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  DTRAIN_CHECK(b.size(-2) == k, "matmul: shapes ", shape_str(a.shape()), " and ",
               shape_str(b.shape()), " cannot be multiplied (", k, " columns vs ", b.size(-2),
               " rows)");
  Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(a_batch, b_batch, "matmul");
  } catch (const Error&) {
    throw Error(detail::concat("matmul: the batch dims of shapes ", shape_str(a.shape()), " and ",
                               shape_str(b.shape()), " do not broadcast; make them equal or 1"));
  }
  const int64_t batch_count = shape_numel(batch);

  MatLayout la = layout_of(a), lb = layout_of(b);
  int64_t sa = batch_stride(a, batch), sb = batch_stride(b, batch);
  if (!la.ok || sa < 0) {
    a = materialise(a, batch);
    la = layout_of(a);
    sa = m * k;
  }
  if (!lb.ok || sb < 0) {
    b = materialise(b, batch);
    lb = layout_of(b);
    sb = k * n;
  }

  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;

  GemmArgs g = gemm_args(la, lb, m, n, k);
  g.batch = batch_count;
  g.epilogue = epilogue;
  g.bias = bias;
  g.stride_a = sa;
  g.stride_b = sb;
  g.stride_c = m * n;
  // A shared right operand and a left operand whose rows run on from one batch to the next (e.g.
  // activations [B, T, k] times weights [k, n]): one GEMM of B*m rows instead of B small ones.
  if (g.batch > 1 && sb == 0 && !la.trans) {
    bool rows_run_on = m > 1 ? sa == m * la.ld : sa >= std::max<int64_t>(k, 1);
    if (rows_run_on) {
      g.lda = sa / m;
      g.m = m * g.batch;
      g.batch = 1;
    }
  }
  backend_for(a.device()).gemm(g, a, b, out);
  return out;
}

// a @ b for operands of at least 2 dims, recorded. d(a b) = g b^T for a and a^T g for b, summed
// over the batch dims each operand was broadcast along.
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  Tensor out = matmul_kernel(a, b);
  Tensor sa = a.detach(), sb = b.detach();
  return record("matmul", {a, b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    Tensor ga, gb;
    if (needs[0]) ga = sum_to(matmul_kernel(g, sb.transpose(-1, -2)), sa.shape());
    if (needs[1]) {
      if (sb.dim() == 2 && sa.dim() > 2) {
        // Shared weights: fold the batch into the contraction, one [k, B*m] @ [B*m, n] GEMM.
        Tensor a2 = sa.reshape({-1, sa.size(-1)});
        Tensor g2 = g.reshape({-1, g.size(-1)});
        gb = matmul_kernel(a2.transpose(0, 1), g2);
      } else {
        gb = sum_to(matmul_kernel(sa.transpose(-1, -2), g), sb.shape());
      }
    }
    return Grads{ga, gb};
  });
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (amp::autocast_enabled()) {  // GEMMs run in the autocast dtype
    Tensor a16 = amp::autocast(amp::OpClass::gemm, a), b16 = amp::autocast(amp::OpClass::gemm, b);
    if (!a16.same(a) || !b16.same(b)) return matmul(a16, b16);
  }
  check_operands("matmul", a, b);
  DTRAIN_CHECK(a.dim() >= 1 && b.dim() >= 1,
               "matmul: operands must have at least 1 dim, got shapes ", shape_str(a.shape()),
               " and ", shape_str(b.shape()));
  DTRAIN_CHECK(a.size(-1) == b.size(b.dim() == 1 ? 0 : -2), "matmul: shapes ", shape_str(a.shape()),
               " and ", shape_str(b.shape()), " cannot be multiplied (", a.size(-1), " vs ",
               b.size(b.dim() == 1 ? 0 : -2), ")");
  // 1-D operands as in torch.matmul: a vector on the left is a row, on the right a column, and
  // the added dim is removed from the result.
  if (a.dim() == 1 && b.dim() == 1) return matmul_nd(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (a.dim() == 1) return matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_nd(a, b.unsqueeze(1)).squeeze(-1);
  return matmul_nd(a, b);
}

// y = x W^T + b over x [..., in], W [out, in]. W^T is W with swapped strides (a transpose flag),
// and the GEMM adds the bias in its epilogue. Backward: dx = g W, dW = g^T x, and db = sum_r g[r]
// from the dW GEMM's bias_grad epilogue when W and b both need gradients.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (amp::autocast_enabled()) {
    Tensor x16 = amp::autocast(amp::OpClass::gemm, x),
           w16 = amp::autocast(amp::OpClass::gemm, weight);
    Tensor b16 = amp::autocast(amp::OpClass::gemm, bias);
    if (!x16.same(x) || !w16.same(weight) || (bias.defined() && !b16.same(bias))) {
      return linear(x16, w16, b16);
    }
  }
  check_operands("linear", x, weight);
  DTRAIN_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1),
               "linear: input of shape ", shape_str(x.shape()), " does not match weight of shape ",
               shape_str(weight.shape()), " (expected input [..., in] and weight [out, in])");
  const int64_t in = weight.size(1), out_features = weight.size(0);
  if (bias.defined()) {
    check_operands("linear", x, bias);
    DTRAIN_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "linear: bias of shape ",
                 shape_str(bias.shape()), " does not match weight of shape ",
                 shape_str(weight.shape()), " (expected [", out_features, "])");
  }
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);

  Tensor x2, w = weight;
  {
    NoGradGuard no_grad;
    x2 = x.reshape({-1, in});
  }
  const int64_t rows = x2.size(0);
  Tensor out2 = Tensor::empty({rows, out_features}, x.dtype(), x.device());
  Backend& backend = backend_for(x.device());
  if (out2.numel() > 0) {
    MatLayout lx = layout_of(x2);
    if (!lx.ok) {
      NoGradGuard no_grad;
      x2 = x2.contiguous();
      lx = layout_of(x2);
    }
    // W^T is [in, out] with strides (W.stride(1), W.stride(0)).
    MatLayout lw = matrix_layout(in, out_features, w.strides()[1], w.strides()[0]);
    if (!lw.ok) {
      NoGradGuard no_grad;
      w = w.contiguous();
      lw = matrix_layout(in, out_features, w.strides()[1], w.strides()[0]);
    }
    GemmArgs g = gemm_args(lx, lw, rows, out_features, in);
    if (bias.defined()) {
      NoGradGuard no_grad;
      g.epilogue = GemmEpilogue::bias;
      g.bias = bias.contiguous();
    }
    backend.gemm(g, x2, w, out2);
  }
  Tensor out = make_view(out2, out_shape, contiguous_strides(out_shape), 0);

  Tensor sx = x2.detach(), sw = weight.detach();
  const Shape& x_shape = x.shape();
  return record("linear", {x, weight, bias}, out,
                [sx, sw, x_shape, out_features](const Tensor& g, const Needs& needs) {
                  Tensor g2 = g.reshape({-1, out_features});
                  Tensor gx, gw, gb;
                  if (needs[0]) gx = matmul_kernel(g2, sw).reshape(x_shape);  // g W
                  // One GEMM for dW and db, unless dW is empty or sum would reduce in another
                  // dtype (under autocast).
                  const bool fused_db =
                      needs[1] && needs[2] && sw.numel() > 0 &&
                      amp::autocast_target(amp::OpClass::reduction, g2.dtype()) == g2.dtype();
                  if (fused_db) {
                    gb = Tensor::empty({out_features}, g2.dtype(), g2.device());
                    gw = matmul_kernel(g2.transpose(0, 1), sx, GemmEpilogue::bias_grad, gb);
                    return Grads{gx, gw, gb};
                  }
                  if (needs[1]) gw = matmul_kernel(g2.transpose(0, 1), sx);  // g^T x
                  if (needs[2]) gb = sum(g2, {0});
                  return Grads{gx, gw, gb};
                });
}

}  // namespace dtrain
