// CUDA 2-D convolution through cuDNN's convolution API (NCHW, cross-correlation, groups), forward
// and backward. Algorithms come from cuDNN's heuristics (the _v7 queries), taking the first that
// succeeds within the workspace limit; for the filter gradient a deterministic algorithm is
// preferred, so training runs repeat bit for bit. The descriptors and the chosen algorithm are made
// once per problem (ConvPlan, keyed on shapes, arguments, dtype, TF32 setting, device and pass), so
// a training step's convolutions cost a map look-up of host work each.
//
// f16/bf16 run on tensor cores with f32 accumulation; when cuDNN declines a half-precision shape
// (any CUDNN_STATUS_NOT_SUPPORTED_* status), the convolution runs on f32 copies instead. f32 uses
// tensor cores (TF32) only when allowed (cuda_device.h); otherwise its descriptors are pinned to
// CUDNN_FMA_MATH, since algorithms reporting CUDNN_DEFAULT_MATH may use TF32 on Ampere and later.
// The bias and its gradient are plain broadcast add and reductions (deterministic).
#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <mutex>
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
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::f64:
      return CUDNN_DATA_DOUBLE;
    case DType::f16:
      return CUDNN_DATA_HALF;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
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

using Dims4 = std::array<int, 4>;
Dims4 dims_of(const Tensor& t, const char* what) {
  return {to_int(t.size(0), what), to_int(t.size(1), what), to_int(t.size(2), what),
          to_int(t.size(3), what)};
}

// Owners of cuDNN descriptors (never copied: plans hold them in place).
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(const Dims4& s, DType type) {
    DTRAIN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    DTRAIN_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, cudnn_type(type), s[0], s[1], s[2], s[3]));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(const Dims4& s, DType type) {
    DTRAIN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    DTRAIN_CUDNN_CHECK(
        cudnnSetFilter4dDescriptor(d, cudnn_type(type), CUDNN_TENSOR_NCHW, s[0], s[1], s[2], s[3]));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const Conv2dArgs& a, DType type, cudnnMathType_t math) {
    DTRAIN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    const cudnnDataType_t compute = type == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    DTRAIN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        d, to_int(a.pad_h, "pad_h"), to_int(a.pad_w, "pad_w"), to_int(a.stride_h, "stride_h"),
        to_int(a.stride_w, "stride_w"), 1, 1, CUDNN_CROSS_CORRELATION, compute));
    DTRAIN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, to_int(a.groups, "groups")));
    DTRAIN_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

enum class ConvPass { forward, backward_data, backward_filter };

// One pass of one convolution problem, ready to run: descriptors of x, y (dy for the backward
// passes) and w, the convolution descriptor with the math type the algorithm runs with, and the
// algorithm (none: cuDNN declined the problem). Immutable once cached.
struct ConvPlan {
  ConvPlan(const Dims4& x, const Dims4& w, const Dims4& y, const Conv2dArgs& a, DType type,
           bool allow_tf32)
      : xd(x, type), yd(y, type), wd(w, type), cd(a, type, conv_requested_math(type, allow_tf32)) {}
  TensorDesc xd, yd;
  FilterDesc wd;
  ConvDesc cd;
  bool available = false;
  int algo = 0;  // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, by pass
  size_t workspace = 0;
};

// Heuristic results in the order to try them: status success, a math type the dtype allows (f32
// without TF32 must not run on tensor cores), and, when asked, deterministic algorithms first.
template <class Perf>
std::vector<const Perf*> candidates(const std::vector<Perf>& perfs, DType type, bool allow_tf32,
                                    bool want_deterministic) {
  std::vector<const Perf*> out;
  for (int pass = want_deterministic ? 0 : 1; pass < 2; ++pass) {
    for (const Perf& p : perfs) {
      if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspace) continue;
      if (!conv_algo_allowed(p.mathType, type, allow_tf32)) continue;
      const bool deterministic = p.determinism == CUDNN_DETERMINISTIC;
      if (want_deterministic && deterministic != (pass == 0)) continue;
      out.push_back(&p);
    }
  }
  return out;
}

// Fixes the plan's algorithm: the first candidate whose workspace, under the math type it will run
// with (conv_execution_math may differ from the one the heuristic assumed), fits the limit.
template <class Perf, class WorkspaceQuery>
void choose(ConvPlan& plan, const std::vector<Perf>& perfs, DType type, bool allow_tf32,
            bool want_deterministic, WorkspaceQuery workspace_of) {
  for (const Perf* p : candidates(perfs, type, allow_tf32, want_deterministic)) {
    DTRAIN_CUDNN_CHECK(
        cudnnSetConvolutionMathType(plan.cd.d, conv_execution_math(p->mathType, type, allow_tf32)));
    size_t bytes = 0;
    const cudnnStatus_t status = workspace_of(p->algo, &bytes);
    if (cudnn_declined(status)) continue;
    check_cudnn(status, "cudnnGetConvolution*WorkspaceSize");
    bytes = std::max(bytes, p->memory);
    if (bytes > kMaxWorkspace) continue;
    plan.available = true;
    plan.algo = static_cast<int>(p->algo);
    plan.workspace = bytes;
    return;
  }
}

// A decline (cudnn_declined) returns true; any other failure throws.
bool declined(cudnnStatus_t status, const char* call) {
  if (cudnn_declined(status)) return true;
  check_cudnn(status, call);
  return false;
}

std::unique_ptr<ConvPlan> make_plan(DeviceContext& ctx, ConvPass pass, const Dims4& x,
                                    const Dims4& w, const Dims4& y, const Conv2dArgs& args,
                                    DType type, bool allow_tf32) {
  auto plan = std::make_unique<ConvPlan>(x, w, y, args, type, allow_tf32);
  cudnnHandle_t h = ctx.cudnn();
  const ConvPlan& p = *plan;
  int found = 0;
  switch (pass) {
    case ConvPass::forward: {
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perfs(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
      if (declined(cudnnGetConvolutionForwardAlgorithm_v7(h, p.xd.d, p.wd.d, p.cd.d, p.yd.d,
                                                          static_cast<int>(perfs.size()), &found,
                                                          perfs.data()),
                   "cudnnGetConvolutionForwardAlgorithm_v7")) {
        break;
      }
      perfs.resize(static_cast<size_t>(found));
      choose(*plan, perfs, type, allow_tf32, false,
             [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
               return cudnnGetConvolutionForwardWorkspaceSize(h, p.xd.d, p.wd.d, p.cd.d, p.yd.d,
                                                              algo, bytes);
             });
      break;
    }
    case ConvPass::backward_data: {
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perfs(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
      if (declined(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.wd.d, p.yd.d, p.cd.d, p.xd.d,
                                                               static_cast<int>(perfs.size()),
                                                               &found, perfs.data()),
                   "cudnnGetConvolutionBackwardDataAlgorithm_v7")) {
        break;
      }
      perfs.resize(static_cast<size_t>(found));
      choose(*plan, perfs, type, allow_tf32, true,
             [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
               return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.wd.d, p.yd.d, p.cd.d,
                                                                   p.xd.d, algo, bytes);
             });
      break;
    }
    case ConvPass::backward_filter: {
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perfs(
          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
      if (declined(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.xd.d, p.yd.d, p.cd.d, p.wd.d,
                                                                 static_cast<int>(perfs.size()),
                                                                 &found, perfs.data()),
                   "cudnnGetConvolutionBackwardFilterAlgorithm_v7")) {
        break;
      }
      perfs.resize(static_cast<size_t>(found));
      choose(*plan, perfs, type, allow_tf32, true,
             [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
               return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.xd.d, p.yd.d, p.cd.d,
                                                                     p.wd.d, algo, bytes);
             });
      break;
    }
  }
  return plan;
}

// Everything a plan depends on: device, pass, dtype, TF32 setting, the shapes of x, w and y, and
// the convolution arguments.
using ConvKey = std::array<int64_t, 21>;

// The plan of `pass` for x * w -> y (y is dy for the backward passes), made on first use.
const ConvPlan& conv_plan(DeviceContext& ctx, ConvPass pass, const Tensor& x, const Tensor& w,
                          const Tensor& y, const Conv2dArgs& a, DType type) {
  static std::mutex mutex;
  // Never shrinks, so cached plans stay put while used outside the lock; leaked like the contexts.
  static auto* cache = new std::map<ConvKey, std::unique_ptr<ConvPlan>>();
  const bool allow_tf32 = cuda_allow_tf32();
  const Dims4 xs = dims_of(x, "x dimension"), ws = dims_of(w, "weight dimension"),
              ys = dims_of(y, "output dimension");
  const ConvKey key{ctx.index,
                    static_cast<int64_t>(pass),
                    static_cast<int64_t>(type),
                    allow_tf32 ? 1 : 0,
                    xs[0],
                    xs[1],
                    xs[2],
                    xs[3],
                    ws[0],
                    ws[1],
                    ws[2],
                    ws[3],
                    ys[0],
                    ys[1],
                    ys[2],
                    ys[3],
                    a.pad_h,
                    a.pad_w,
                    a.stride_h,
                    a.stride_w,
                    a.groups};
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache->find(key);
    if (it != cache->end()) return *it->second;
  }
  // Made outside the lock (heuristics take a while); a plan another thread cached meanwhile wins.
  std::unique_ptr<ConvPlan> plan = make_plan(ctx, pass, xs, ws, ys, a, type, allow_tf32);
  std::lock_guard<std::mutex> lock(mutex);
  return *cache->emplace(key, std::move(plan)).first->second;
}

// Device scratch memory from the caching allocator, returned (stream-ordered) at scope end.
struct Scratch {
  DeviceContext& ctx;
  void* ptr = nullptr;
  Scratch(DeviceContext& c, size_t nbytes) : ctx(c) {
    if (nbytes > 0) ptr = ctx.allocator->allocate(nbytes, ctx.stream);
  }
  ~Scratch() { ctx.allocator->free(ptr); }
};

struct Scalars {
  double one_d = 1.0, zero_d = 0.0;
  float one_f = 1.0f, zero_f = 0.0f;
  const void* one;
  const void* zero;
  explicit Scalars(DType type)
      : one(type == DType::f64 ? static_cast<const void*>(&one_d) : &one_f),
        zero(type == DType::f64 ? static_cast<const void*>(&zero_d) : &zero_f) {}
  Scalars(const Scalars&) = delete;
  Scalars& operator=(const Scalars&) = delete;
};

// Runs the convolution pieces in dtype `type` (x, w, y, dy already in it). Returns false when cuDNN
// has no algorithm for one of the requested pieces; outputs may then be partly written, and the
// caller recomputes all of them.
bool run_forward(DeviceContext& ctx, const Tensor& x, const Tensor& w, const Conv2dArgs& args,
                 const Tensor& y, DType type) {
  const ConvPlan& plan = conv_plan(ctx, ConvPass::forward, x, w, y, args, type);
  if (!plan.available) return false;
  Scratch ws(ctx, plan.workspace);
  const Scalars s(type);
  return !declined(
      cudnnConvolutionForward(ctx.cudnn(), s.one, plan.xd.d, x.raw_data(), plan.wd.d, w.raw_data(),
                              plan.cd.d, static_cast<cudnnConvolutionFwdAlgo_t>(plan.algo), ws.ptr,
                              plan.workspace, s.zero, plan.yd.d, y.raw_data()),
      "cudnnConvolutionForward");
}

bool run_backward(DeviceContext& ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                  const Conv2dArgs& args, const Tensor& dx, const Tensor& dw, DType type) {
  // Both plans are made before either runs, so a decline costs no work.
  const ConvPlan* data_plan =
      dx.defined() ? &conv_plan(ctx, ConvPass::backward_data, x, w, dy, args, type) : nullptr;
  const ConvPlan* filter_plan =
      dw.defined() ? &conv_plan(ctx, ConvPass::backward_filter, x, w, dy, args, type) : nullptr;
  if ((data_plan && !data_plan->available) || (filter_plan && !filter_plan->available)) {
    return false;
  }
  cudnnHandle_t h = ctx.cudnn();
  const Scalars s(type);
  if (data_plan) {
    const ConvPlan& p = *data_plan;
    Scratch ws(ctx, p.workspace);
    if (declined(
            cudnnConvolutionBackwardData(h, s.one, p.wd.d, w.raw_data(), p.yd.d, dy.raw_data(),
                                         p.cd.d, static_cast<cudnnConvolutionBwdDataAlgo_t>(p.algo),
                                         ws.ptr, p.workspace, s.zero, p.xd.d, dx.raw_data()),
            "cudnnConvolutionBackwardData")) {
      return false;
    }
  }
  if (filter_plan) {
    const ConvPlan& p = *filter_plan;
    Scratch ws(ctx, p.workspace);
    if (declined(cudnnConvolutionBackwardFilter(
                     h, s.one, p.xd.d, x.raw_data(), p.yd.d, dy.raw_data(), p.cd.d,
                     static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.algo), ws.ptr, p.workspace,
                     s.zero, p.wd.d, dw.raw_data()),
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
