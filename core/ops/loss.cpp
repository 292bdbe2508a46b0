// cross_entropy: log-softmax and negative log-likelihood in one kernel, with torch's label
// smoothing and ignore_index. The backend returns one loss per row; the reduction and its gradient
// are done here, so the whole op is one graph node.
#include "core/amp/autocast.h"
#include "core/ops/loss.h"

#include <limits>

#include "core/autograd/node.h"
#include "core/backend/backend.h"

namespace dtrain {

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, int64_t ignore_index,
                     double label_smoothing, Reduction reduction) {
  if (amp::autocast_enabled() && logits_in.defined()) {  // losses in f32
    Tensor logits32 = amp::autocast(amp::OpClass::loss, logits_in);
    if (!logits32.same(logits_in)) {
      return cross_entropy(logits32, targets_in, ignore_index, label_smoothing, reduction);
    }
  }
  DTRAIN_CHECK(logits_in.defined() && targets_in.defined(),
               "cross_entropy: logits or targets is undefined");
  DTRAIN_CHECK(logits_in.dim() >= 1, "cross_entropy: logits have shape ",
               shape_str(logits_in.shape()), "; they must be [N, C] or [..., C]");
  DTRAIN_CHECK(is_floating(logits_in.dtype()), "cross_entropy: logits are ",
               dtype_name(logits_in.dtype()), "; they need a floating dtype");
  DTRAIN_CHECK(targets_in.dtype() == DType::i64 || targets_in.dtype() == DType::i32,
               "cross_entropy: targets are ", dtype_name(targets_in.dtype()),
               "; they must be class indices in i64 (or i32)");
  DTRAIN_CHECK(targets_in.device() == logits_in.device(), "cross_entropy: targets are on ",
               targets_in.device().str(), " but logits are on ", logits_in.device().str(),
               "; move them to one device");
  DTRAIN_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
               "cross_entropy: label_smoothing is ", label_smoothing, "; it must be in [0, 1]");
  const int64_t classes = logits_in.size(-1);
  DTRAIN_CHECK(classes > 0, "cross_entropy: logits ", shape_str(logits_in.shape()),
               " have no classes");
  const int64_t rows = logits_in.numel() / classes;
  DTRAIN_CHECK(targets_in.numel() == rows, "cross_entropy: logits ", shape_str(logits_in.shape()),
               " hold ", rows, " rows of ", classes, " classes but targets ",
               shape_str(targets_in.shape()), " hold ", targets_in.numel(),
               " values; give one target per row");

  const Tensor targets =
      (targets_in.dtype() == DType::i64 ? targets_in : targets_in.to(DType::i64)).contiguous();
  // On the CPU the targets are range-checked here, where it costs no wait. Device targets are not
  // read back (that would stall every step): the data pipeline checks them on the host before the copy
  // (launch/workload.cpp), and the device kernels give an out-of-range row a NaN loss.
  if (targets.device().is_cpu()) {
    const int64_t* t = targets.data<int64_t>();
    for (int64_t i = 0; i < targets.numel(); ++i) {
      if (t[i] == ignore_index) continue;
      DTRAIN_CHECK(t[i] >= 0 && t[i] < classes, "cross_entropy: target ", t[i], " at position ", i,
                   " is outside [0, ", classes, ") for logits ", shape_str(logits_in.shape()),
                   " (ignore_index is ", ignore_index, ")");
    }
  }

  const Tensor logits = logits_in.detach().contiguous();
  const DType dtype = logits.dtype();
  const Device device = logits.device();
  Backend& be = backend_for(device);
  Tensor losses = Tensor::empty({rows}, dtype, device);
  if (rows > 0) be.cross_entropy(logits, targets, ignore_index, label_smoothing, losses);

  Tensor out;
  Tensor mean_scale;  // d(out)/d(losses[i]) of the mean, on the device (the sum's is 1)
  if (reduction == Reduction::none) {
    out = losses.view(targets_in.shape());
  } else {
    out = Tensor::empty({}, dtype, device);
    be.reduce(ReduceOp::sum, losses, 1, rows, 1, out, Tensor());
    if (reduction == Reduction::mean) {
      // As torch: divide by the rows that were not ignored, counted where the targets are (0/0 = nan
      // when all were ignored); the gradient scale is 1 / max(count, 1) (with no row counted, every
      // row is ignored and gets no gradient whatever the scale).
      // Counted in f32 (f64 for f64), exact up to 2^24 rows whatever the logits' dtype.
      const DType count_type = dtype == DType::f64 ? DType::f64 : DType::f32;
      Tensor kept = Tensor::empty({rows}, count_type, device);
      Tensor count = Tensor::empty({}, count_type, device);
      if (rows > 0) {
        be.copy(targets.view({rows}), kept);
        be.binary_scalar(BinaryOp::ne, kept, static_cast<double>(ignore_index), false, kept);
      }
      be.reduce(ReduceOp::sum, kept, 1, rows, 1, count, Tensor());
      Tensor scale = Tensor::empty({}, count_type, device);
      be.binary_scalar(BinaryOp::maximum, count, 1.0, false, scale);
      be.binary_scalar(BinaryOp::div, scale, 1.0, true, scale);
      if (count_type != dtype) {
        Tensor narrowed = Tensor::empty({}, dtype, device);
        be.copy(count, narrowed);
        count = narrowed;
        mean_scale = Tensor::empty({}, dtype, device);
        be.copy(scale, mean_scale);
      } else {
        mean_scale = scale;
      }
      be.binary(BinaryOp::div, out, count, out);
    }
  }

  return autograd::record(
      "cross_entropy", {logits_in}, out,
      [logits_d = logits, targets, ignore_index, label_smoothing, reduction, mean_scale, rows](
          const Tensor& grad_out, const std::vector<bool>& needs) {
        if (!needs[0]) return std::vector<Tensor>{Tensor()};
        const Device dev = logits_d.device();
        Backend& b = backend_for(dev);
        Tensor grad_losses = Tensor::empty({rows}, logits_d.dtype(), dev);
        if (reduction == Reduction::none) {
          b.copy(grad_out.contiguous().view({rows}), grad_losses);
        } else {
          // Every row receives the scalar gradient (times 1/count for the mean).
          b.copy(make_view(grad_out, {rows}, {0}, grad_out.offset()), grad_losses);
          if (mean_scale.defined()) {
            b.binary(BinaryOp::mul, grad_losses,
                     make_view(mean_scale, {rows}, {0}, mean_scale.offset()), grad_losses);
          }
        }
        Tensor dlogits = Tensor::empty(logits_d.shape(), logits_d.dtype(), dev);
        if (rows > 0) {
          b.cross_entropy_backward(logits_d, targets, ignore_index, label_smoothing, grad_losses,
                                   dlogits);
        }
        return std::vector<Tensor>{dlogits};
      });
}

}  // namespace dtrain
