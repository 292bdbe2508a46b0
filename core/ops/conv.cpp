// conv2d, max_pool2d and avg_pool2d over NCHW tensors. Output sizes follow PyTorch (floor mode):
//   out = (in + 2 * padding - kernel) / stride + 1
#include "core/amp/autocast.h"
#include "core/ops/conv.h"

#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

namespace {

int64_t out_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding) {
  return (in + 2 * padding - kernel) / stride + 1;
}

void check_same_place(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name,
                      const char* op) {
  DTRAIN_CHECK(a.dtype() == b.dtype(), op, ": ", a_name, " is ", dtype_name(a.dtype()), " but ",
               b_name, " is ", dtype_name(b.dtype()), "; cast them to one dtype");
  DTRAIN_CHECK(a.device() == b.device(), op, ": ", a_name, " is on ", a.device().str(), " but ",
               b_name, " is on ", b.device().str(), "; move them to one device");
}

// Shared checks of the pooling ops; returns the backend arguments.
Pool2dArgs pool_args(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                     const char* op) {
  DTRAIN_CHECK(x.defined(), op, ": x is undefined");
  DTRAIN_CHECK(x.dim() == 4, op, ": x has shape ", shape_str(x.shape()),
               "; it must be [N, C, H, W]");
  DTRAIN_CHECK(is_floating(x.dtype()), op, ": x is ", dtype_name(x.dtype()),
               "; it needs a floating dtype");
  if (stride == 0) stride = kernel;
  DTRAIN_CHECK(kernel > 0 && stride > 0 && padding >= 0, op, ": kernel ", kernel, ", stride ",
               stride, " and padding ", padding, " must be positive (padding >= 0)");
  // Beyond half a kernel a window could lie entirely in the padding (PyTorch has the same rule).
  DTRAIN_CHECK(padding <= kernel / 2, op, ": padding ", padding, " is more than half the kernel ",
               kernel, "; use padding <= ", kernel / 2);
  DTRAIN_CHECK(x.size(2) + 2 * padding >= kernel && x.size(3) + 2 * padding >= kernel, op,
               ": kernel ", kernel, " is larger than the padded input ", shape_str(x.shape()),
               " with padding ", padding);
  Pool2dArgs a;
  a.kernel_h = a.kernel_w = kernel;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = padding;
  return a;
}

Shape pool_out_shape(const Tensor& x, const Pool2dArgs& a) {
  return {x.size(0), x.size(1), out_size(x.size(2), a.kernel_h, a.stride_h, a.pad_h),
          out_size(x.size(3), a.kernel_w, a.stride_w, a.pad_w)};
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, int64_t stride,
              int64_t padding, int64_t groups) {
  if (amp::autocast_enabled() && x_in.defined() && weight_in.defined()) {
    Tensor x16 = amp::autocast(amp::OpClass::conv, x_in),
           w16 = amp::autocast(amp::OpClass::conv, weight_in);
    Tensor b16 = amp::autocast(amp::OpClass::conv, bias_in);
    if (!x16.same(x_in) || !w16.same(weight_in) || (bias_in.defined() && !b16.same(bias_in))) {
      return conv2d(x16, w16, b16, stride, padding, groups);
    }
  }
  DTRAIN_CHECK(x_in.defined() && weight_in.defined(), "conv2d: x or weight is undefined");
  DTRAIN_CHECK(x_in.dim() == 4, "conv2d: x has shape ", shape_str(x_in.shape()),
               "; it must be [N, C_in, H, W]");
  DTRAIN_CHECK(weight_in.dim() == 4, "conv2d: weight has shape ", shape_str(weight_in.shape()),
               "; it must be [C_out, C_in / groups, KH, KW]");
  DTRAIN_CHECK(is_floating(x_in.dtype()), "conv2d: x is ", dtype_name(x_in.dtype()),
               "; it needs a floating dtype");
  check_same_place(x_in, "x", weight_in, "weight", "conv2d");
  DTRAIN_CHECK(stride > 0 && padding >= 0 && groups > 0, "conv2d: stride ", stride, ", padding ",
               padding, " and groups ", groups, " must be positive (padding >= 0)");
  const int64_t c_in = x_in.size(1), c_out = weight_in.size(0);
  DTRAIN_CHECK(c_in % groups == 0 && c_out % groups == 0, "conv2d: x ", shape_str(x_in.shape()),
               " has ", c_in, " input channels and weight ", shape_str(weight_in.shape()), " has ",
               c_out, " output channels; both must be divisible by groups = ", groups);
  DTRAIN_CHECK(weight_in.size(1) == c_in / groups, "conv2d: weight ", shape_str(weight_in.shape()),
               " expects ", weight_in.size(1) * groups, " input channels (groups = ", groups,
               ") but x ", shape_str(x_in.shape()), " has ", c_in);
  if (bias_in.defined()) {
    DTRAIN_CHECK(bias_in.dim() == 1 && bias_in.size(0) == c_out, "conv2d: bias has shape ",
                 shape_str(bias_in.shape()), " but weight ", shape_str(weight_in.shape()),
                 " needs [", c_out, "]");
    check_same_place(bias_in, "bias", x_in, "x", "conv2d");
  }
  const int64_t kh = weight_in.size(2), kw = weight_in.size(3);
  DTRAIN_CHECK(x_in.size(2) + 2 * padding >= kh && x_in.size(3) + 2 * padding >= kw,
               "conv2d: kernel ", kh, "x", kw, " of weight ", shape_str(weight_in.shape()),
               " is larger than the padded input ", shape_str(x_in.shape()), " with padding ",
               padding);

  Conv2dArgs args;
  args.stride_h = args.stride_w = stride;
  args.pad_h = args.pad_w = padding;
  args.groups = groups;
  const Tensor x = x_in.detach().contiguous();
  const Tensor weight = weight_in.detach().contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.detach().contiguous() : bias_in;
  Tensor out = Tensor::empty({x.size(0), c_out, out_size(x.size(2), kh, stride, padding),
                              out_size(x.size(3), kw, stride, padding)},
                             x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).conv2d(x, weight, bias, args, out);

  return autograd::record(
      "conv2d", {x_in, weight_in, bias_in}, out,
      [xd = x, wd = weight, args, has_bias = bias.defined()](const Tensor& grad_out,
                                                             const std::vector<bool>& needs) {
        Tensor dx, dw, db;
        if (needs[0]) dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
        if (needs[1]) dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
        if (needs[2] && has_bias) db = Tensor::empty({wd.size(0)}, wd.dtype(), wd.device());
        if (grad_out.numel() > 0) {
          backend_for(xd.device()).conv2d_backward(grad_out.contiguous(), xd, wd, args, dx, dw, db);
        } else {
          for (Tensor* t : {&dx, &dw, &db}) {
            if (t->defined()) t->zero_();
          }
        }
        return std::vector<Tensor>{dx, dw, db};
      });
}

Tensor max_pool2d(const Tensor& x_in, int64_t kernel, int64_t stride, int64_t padding) {
  const Pool2dArgs args = pool_args(x_in, kernel, stride, padding, "max_pool2d");
  const Tensor x = x_in.detach().contiguous();
  Tensor out = Tensor::empty(pool_out_shape(x, args), x.dtype(), x.device());
  Tensor indices = Tensor::empty(out.shape(), DType::i64, x.device());
  if (out.numel() > 0) backend_for(x.device()).max_pool2d(x, args, out, indices);

  return autograd::record("max_pool2d", {x_in}, out,
                          [indices, xshape = x.shape(), dtype = x.dtype(), device = x.device()](
                              const Tensor& grad_out, const std::vector<bool>& needs) {
                            if (!needs[0]) return std::vector<Tensor>{Tensor()};
                            Tensor dx = Tensor::empty(xshape, dtype, device);
                            if (grad_out.numel() > 0) {
                              backend_for(device).max_pool2d_backward(grad_out.contiguous(),
                                                                      indices, dx);
                            } else {
                              dx.zero_();
                            }
                            return std::vector<Tensor>{dx};
                          });
}

Tensor avg_pool2d(const Tensor& x_in, int64_t kernel, int64_t stride, int64_t padding) {
  const Pool2dArgs args = pool_args(x_in, kernel, stride, padding, "avg_pool2d");
  const Tensor x = x_in.detach().contiguous();
  Tensor out = Tensor::empty(pool_out_shape(x, args), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).avg_pool2d(x, args, out);

  return autograd::record("avg_pool2d", {x_in}, out,
                          [args, xshape = x.shape(), dtype = x.dtype(), device = x.device()](
                              const Tensor& grad_out, const std::vector<bool>& needs) {
                            if (!needs[0]) return std::vector<Tensor>{Tensor()};
                            Tensor dx = Tensor::empty(xshape, dtype, device);
                            if (grad_out.numel() > 0) {
                              backend_for(device).avg_pool2d_backward(grad_out.contiguous(), args,
                                                                      dx);
                            } else {
                              dx.zero_();
                            }
                            return std::vector<Tensor>{dx};
                          });
}

}  // namespace dtrain
