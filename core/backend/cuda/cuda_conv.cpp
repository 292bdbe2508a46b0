// CUDA 2-D convolution through cuDNN's convolution API (NCHW, cross-correlation, groups), forward and
// backward. Algorithms come from cuDNN's heuristics (the _v7 queries), taking the first that succeeds
// within the workspace limit; for the filter gradient a deterministic algorithm is preferred, so
// training runs repeat bit for bit. f16/bf16 run on tensor cores with f32 accumulation; when cuDNN
// offers nothing for a half-precision shape, the convolution runs on f32 copies instead. f32 uses
// tensor cores (TF32) only when allowed (cuda_device.h). The bias and its gradient are plain
// broadcast add and reductions (deterministic).
#include <vector>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"

namespace dtrain {
namespace cuda {
namespace {

constexpr size_t kMaxWorkspace = size_t{1} << 30;

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default:
      throw Error(detail::concat("cuda conv2d: unsupported dtype ", dtype_name(t),
                                 "; expected f32, f64, f16 or bf16"));
  }
}

int to_int(int64_t v, const char* what) {
  DTRAIN_CHECK(v >= 0 && v <= 2147483647, "cuda conv2d: ", what, " = ", v,
               " does not fit cuDNN's int dimensions");
  return static_cast<int>(v);
}

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(const Tensor& t, DType type) {
    DTRAIN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    DTRAIN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(
        d, CUDNN_TENSOR_NCHW, cudnn_type(type), to_int(t.size(0), "N"), to_int(t.size(1), "C"),
        to_int(t.size(2), "H"), to_int(t.size(3), "W")));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(const Tensor& w, DType type) {
    DTRAIN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    DTRAIN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(
        d, cudnn_type(type), CUDNN_TENSOR_NCHW, to_int(w.size(0), "C_out"),
        to_int(w.size(1), "C_in/groups"), to_int(w.size(2), "KH"), to_int(w.size(3), "KW")));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
};

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const Conv2dArgs& a, DType type) {
    DTRAIN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    const cudnnDataType_t compute = type == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    DTRAIN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        d, to_int(a.pad_h, "pad_h"), to_int(a.pad_w, "pad_w"), to_int(a.stride_h, "stride_h"),
        to_int(a.stride_w, "stride_w"), 1, 1, CUDNN_CROSS_CORRELATION, compute));
    DTRAIN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, to_int(a.groups, "groups")));
    DTRAIN_CUDNN_CHECK(cudnnSetConvolutionMathType(d, requested_math(type)));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }

  static cudnnMathType_t requested_math(DType type) {
    if (is_half(type)) return CUDNN_TENSOR_OP_MATH;
    if (type == DType::f32) return cuda_allow_tf32() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    return CUDNN_DEFAULT_MATH;
  }
};

// Device scratch memory from the caching allocator, returned (stream-ordered) at scope end.
struct Scratch {
  DeviceContext& ctx;
  void* ptr = nullptr;
  Scratch(DeviceContext& c, size_t nbytes) : ctx(c) {
    if (nbytes > 0) ptr = ctx.allocator->allocate(nbytes, ctx.stream);
  }
  ~Scratch() { ctx.allocator->free(ptr); }
};

// Picks from heuristic results (best first): status success, workspace within the limit, a math type
// the dtype allows (f32 without TF32 must not run on tensor cores), and, when asked, determinism.
template <class Perf>
const Perf* pick(const std::vector<Perf>& perfs, DType type, bool want_deterministic) {
  const bool fma_only = type == DType::f32 && !cuda_allow_tf32();
  for (int pass = want_deterministic ? 0 : 1; pass < 2; ++pass) {
    for (const Perf& p : perfs) {
      if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspace) continue;
      if (fma_only && (p.mathType == CUDNN_TENSOR_OP_MATH ||
                       p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) {
        continue;
      }
      if (pass == 0 && p.determinism != CUDNN_DETERMINISTIC) continue;
      return &p;
    }
  }
  return nullptr;
}

// CUDNN_STATUS_NOT_SUPPORTED (cuDNN has no kernel for this configuration) is a decline the caller may
// answer with an f32 run; any other failure is an error.
bool declined(cudnnStatus_t status, const char* call) {
  if (status == CUDNN_STATUS_NOT_SUPPORTED) return true;
  check_cudnn(status, call);
  return false;
}

// Runs the convolution pieces in dtype `type` (x, w, y, dy already in it). Returns false when cuDNN has
// no algorithm for one of the requested pieces; outputs may then be partly written, and the caller
// recomputes all of them.
bool run_forward(DeviceContext& ctx, const Tensor& x, const Tensor& w, const Conv2dArgs& args,
                 const Tensor& y, DType type) {
  cudnnHandle_t h = ctx.cudnn();
  TensorDesc xd(x, type), yd(y, type);
  FilterDesc wd(w, type);
  ConvDesc cd(args, type);
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perfs(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  int found = 0;
  if (declined(cudnnGetConvolutionForwardAlgorithm_v7(h, xd.d, wd.d, cd.d, yd.d,
                                                      static_cast<int>(perfs.size()), &found,
                                                      perfs.data()),
               "cudnnGetConvolutionForwardAlgorithm_v7")) {
    return false;
  }
  perfs.resize(static_cast<size_t>(found));
  const auto* p = pick(perfs, type, false);
  if (!p) return false;
  DTRAIN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, p->mathType));
  Scratch ws(ctx, p->memory);
  const double one_d = 1.0, zero_d = 0.0;
  const float one_f = 1.0f, zero_f = 0.0f;
  const void* one = type == DType::f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = type == DType::f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  return !declined(cudnnConvolutionForward(h, one, xd.d, x.raw_data(), wd.d, w.raw_data(), cd.d,
                                            p->algo, ws.ptr, p->memory, zero, yd.d, y.raw_data()),
                   "cudnnConvolutionForward");
}

bool run_backward(DeviceContext& ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                  const Conv2dArgs& args, const Tensor& dx, const Tensor& dw, DType type) {
  cudnnHandle_t h = ctx.cudnn();
  TensorDesc xd(x, type), dyd(dy, type);
  FilterDesc wd(w, type);
  const double one_d = 1.0, zero_d = 0.0;
  const float one_f = 1.0f, zero_f = 0.0f;
  const void* one = type == DType::f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = type == DType::f64 ? static_cast<const void*>(&zero_d) : &zero_f;

  // Both algorithms are chosen before either runs, so a heuristic decline costs no work.
  ConvDesc data_cd(args, type), filter_cd(args, type);
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> data_perfs;
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> filter_perfs;
  const cudnnConvolutionBwdDataAlgoPerf_t* data_algo = nullptr;
  const cudnnConvolutionBwdFilterAlgoPerf_t* filter_algo = nullptr;
  if (dx.defined()) {
    data_perfs.resize(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    int found = 0;
    if (declined(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                     h, wd.d, dyd.d, data_cd.d, xd.d, static_cast<int>(data_perfs.size()), &found,
                     data_perfs.data()),
                 "cudnnGetConvolutionBackwardDataAlgorithm_v7")) {
      return false;
    }
    data_perfs.resize(static_cast<size_t>(found));
    data_algo = pick(data_perfs, type, true);
    if (!data_algo) return false;
  }
  if (dw.defined()) {
    filter_perfs.resize(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    int found = 0;
    if (declined(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                     h, xd.d, dyd.d, filter_cd.d, wd.d, static_cast<int>(filter_perfs.size()),
                     &found, filter_perfs.data()),
                 "cudnnGetConvolutionBackwardFilterAlgorithm_v7")) {
      return false;
    }
    filter_perfs.resize(static_cast<size_t>(found));
    filter_algo = pick(filter_perfs, type, true);
    if (!filter_algo) return false;
  }
  if (data_algo) {
    DTRAIN_CUDNN_CHECK(cudnnSetConvolutionMathType(data_cd.d, data_algo->mathType));
    Scratch ws(ctx, data_algo->memory);
    if (declined(cudnnConvolutionBackwardData(h, one, wd.d, w.raw_data(), dyd.d, dy.raw_data(),
                                              data_cd.d, data_algo->algo, ws.ptr,
                                              data_algo->memory, zero, xd.d, dx.raw_data()),
                 "cudnnConvolutionBackwardData")) {
      return false;
    }
  }
  if (filter_algo) {
    DTRAIN_CUDNN_CHECK(cudnnSetConvolutionMathType(filter_cd.d, filter_algo->mathType));
    Scratch ws(ctx, filter_algo->memory);
    if (declined(cudnnConvolutionBackwardFilter(h, one, xd.d, x.raw_data(), dyd.d, dy.raw_data(),
                                                filter_cd.d, filter_algo->algo, ws.ptr,
                                                filter_algo->memory, zero, wd.d, dw.raw_data()),
                 "cudnnConvolutionBackwardFilter")) {
      return false;
    }
  }
  return true;
}

void check_conv_shapes(const Tensor& x, const Tensor& w, const Conv2dArgs& a, const Tensor& y) {
  DTRAIN_CHECK(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, "cuda conv2d: x ",
               shape_str(x.shape()), ", weight ", shape_str(w.shape()), " and out ",
               shape_str(y.shape()), " must be 4-D (NCHW)");
  DTRAIN_CHECK(a.groups >= 1 && x.size(1) == w.size(1) * a.groups, "cuda conv2d: x ",
               shape_str(x.shape()), " has ", x.size(1), " channels but weight ",
               shape_str(w.shape()), " with groups=", a.groups, " expects ", w.size(1) * a.groups);
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const Conv2dArgs& args, const Tensor& out) {
  check_conv_shapes(x, weight, args, out);
  if (out.numel() == 0) return;
  check_cuda_tensor(out, "conv2d", "out");
  const DType type = out.dtype();
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  DeviceContext& ctx = device_context(dev);
  const Tensor xs = contiguous_as(x, type), ws = contiguous_as(weight, type);
  if (x.numel() == 0 || weight.numel() == 0) {
    fill(out, 0.0);
  } else if (!run_forward(ctx, xs, ws, args, out, type)) {
    DTRAIN_CHECK(is_half(type), "cuda conv2d: cuDNN has no algorithm for x ", shape_str(x.shape()),
                 ", weight ", shape_str(weight.shape()), " in ", dtype_name(type));
    Tensor out32 = f32_like(out);
    DTRAIN_CHECK(run_forward(ctx, contiguous_as(xs, DType::f32), contiguous_as(ws, DType::f32),
                             args, out32, DType::f32),
                 "cuda conv2d: cuDNN has no algorithm for x ", shape_str(x.shape()), ", weight ",
                 shape_str(weight.shape()));
    copy(out32, out);
  }
  if (bias.defined()) {
    // out[n, c, h, w] += bias[c]: the bias as a broadcast view [1, C, 1, 1] -> out's shape.
    const Tensor bs = contiguous_as(bias, type);
    const Tensor bview = make_view(bs, out.shape(), {0, 1, 0, 0}, bs.offset());
    binary(BinaryOp::add, out, bview, out);
  }
}

void CudaBackend::conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                  const Conv2dArgs& args, const Tensor& dx, const Tensor& dweight,
                                  const Tensor& dbias) {
  check_conv_shapes(x, weight, args, dy);
  const DType type = dy.dtype();
  const int dev = dy.device().index;
  DeviceGuard guard(dev);
  DeviceContext& ctx = device_context(dev);
  if (dbias.defined()) {
    // dbias[c] = sum_{n, p} dy[n, c, p]: over the plane, then over the batch (fixed order).
    const Tensor dys = contiguous_as(dy, dy.dtype());
    const int64_t batch = dy.size(0), channels = dy.size(1), plane = dy.size(2) * dy.size(3);
    Tensor per_plane = Tensor::empty({batch, channels}, DType::f64, dy.device());
    reduce(ReduceOp::sum, dys, batch * channels, plane, 1, per_plane, Tensor());
    reduce(ReduceOp::sum, per_plane, 1, batch, channels, dbias, Tensor());
  }
  if (!dx.defined() && !dweight.defined()) return;
  if (dy.numel() == 0 || x.numel() == 0) {
    if (dx.defined()) fill(dx, 0.0);
    if (dweight.defined()) fill(dweight, 0.0);
    return;
  }
  const Tensor dys = contiguous_as(dy, type), xs = contiguous_as(x, type),
               ws = contiguous_as(weight, type);
  // Results land in contiguous tensors of the compute dtype, then are copied out if they differ.
  auto target = [&](const Tensor& t, DType d) {
    if (!t.defined()) return t;
    return t.dtype() == d && t.is_contiguous() ? t : Tensor::empty(t.shape(), d, t.device());
  };
  Tensor dx_t = target(dx, type), dw_t = target(dweight, type);
  bool ok = run_backward(ctx, dys, xs, ws, args, dx_t, dw_t, type);
  if (!ok) {
    DTRAIN_CHECK(is_half(type), "cuda conv2d_backward: cuDNN has no algorithm for x ",
                 shape_str(x.shape()), ", weight ", shape_str(weight.shape()), " in ",
                 dtype_name(type));
    dx_t = target(dx, DType::f32);
    dw_t = target(dweight, DType::f32);
    ok = run_backward(ctx, contiguous_as(dys, DType::f32), contiguous_as(xs, DType::f32),
                      contiguous_as(ws, DType::f32), args, dx_t, dw_t, DType::f32);
    DTRAIN_CHECK(ok, "cuda conv2d_backward: cuDNN has no algorithm for x ", shape_str(x.shape()),
                 ", weight ", shape_str(weight.shape()));
  }
  if (dx.defined() && !dx_t.same(dx)) copy(dx_t, dx);
  if (dweight.defined() && !dw_t.same(dweight)) copy(dw_t, dweight);
}

}  // namespace dtrain
