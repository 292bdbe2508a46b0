// CUDA layer norm, alone and fused with the residual add before it (h = x + residual, y =
// layer_norm(h)), forward and backward. The row kernels run one block of 256 threads per row:
// threads stride over the columns, and block_sum combines their partials in a fixed order, so
// results are bitwise reproducible. Compute is f32 for f32/f16/bf16 data and f64 for f64; operands
// are read and written with their own dtypes (weights in f32 beside bf16 activations, f32
// statistics). Weight and bias gradients are reduced without atomics, in a fixed order, so they are
// deterministic too.
#include <algorithm>
#include <type_traits>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"

namespace dtrain {
namespace cuda {
namespace {

__device__ __forceinline__ float sqrt_c(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_c(double x) { return sqrt(x); }

// ---------------------------------------------------------------------------------------------
// Layer norm over the last dim (D = cols):
//   mean = sum_j x_j / D,  var = sum_j (x_j - mean)^2 / D,  rstd = 1 / sqrt(var + eps)
//   y_j = (x_j - mean) rstd w_j + b_j
// The variance is taken around the mean (two passes over the row), which stays accurate when
// |mean| >> std.
//
// With a residual (r non-null) the row normalised is h = x + r: it is stored to h first and then
// read back as stored, rounding included, so the result is that of add then layer_norm. Each thread
// reads back only the elements it wrote itself, so no barrier is needed.
struct LayerNormArgs {
  const void* x;
  DType xt;
  const void* r;  // residual; null for a plain layer norm
  DType rt;
  void* h;  // receives x + r; null without a residual
  DType ht;
  const void* w;  // may be null
  DType wt;
  const void* b;  // may be null
  DType bt;
  double eps;
  void* y;
  DType yt;
  void* mean;  // may be null
  DType mt;
  void* rstd;  // may be null
  DType rt_stat;
  int64_t cols;
};

template <class C>
__global__ void layer_norm_kernel(LayerNormArgs a) {
  const int64_t row = blockIdx.x, base = row * a.cols;
  const void* src = a.x;
  DType st = a.xt;
  if (a.r) {
    for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
      store_as<C>(a.h, base + j, a.ht,
                  load_as<C>(a.x, base + j, a.xt) + load_as<C>(a.r, base + j, a.rt));
    }
    src = a.h;
    st = a.ht;
  }
  C s = C(0);
  for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) s += load_as<C>(src, base + j, st);
  const C mu = block_sum(s) / static_cast<C>(a.cols);
  C ss = C(0);
  for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
    const C d = load_as<C>(src, base + j, st) - mu;
    ss += d * d;
  }
  const C var = block_sum(ss) / static_cast<C>(a.cols);
  const C rs = C(1) / sqrt_c(var + static_cast<C>(a.eps));
  for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
    C v = (load_as<C>(src, base + j, st) - mu) * rs;
    if (a.w) v *= load_as<C>(a.w, j, a.wt);
    if (a.b) v += load_as<C>(a.b, j, a.bt);
    store_as<C>(a.y, base + j, a.yt, v);
  }
  if (threadIdx.x == 0) {
    if (a.mean) store_as<C>(a.mean, row, a.mt, mu);
    if (a.rstd) store_as<C>(a.rstd, row, a.rt_stat, rs);
  }
}

// With xhat = (x - mean) rstd and g = dy w (g = dy without weight):
//   dx_j = rstd (g_j - mean_k(g_k) - xhat_j mean_k(g_k xhat_k))  [+ dh_j when fused with an add]
// For the fused op x is h, and dh is the gradient that reached h directly (the residual stream).
struct LayerNormBackwardArgs {
  const void* dy;
  DType dyt;
  const void* dh;  // may be null
  DType dht;
  const void* x;
  DType xt;
  const void* w;  // may be null
  DType wt;
  const void* mean;
  DType mt;
  const void* rstd;
  DType rt;
  void* dx;
  DType dxt;
  int64_t rows, cols;
};

template <class C>
__global__ void layer_norm_backward_dx_kernel(LayerNormBackwardArgs a) {
  const int64_t row = blockIdx.x, base = row * a.cols;
  const C mu = load_as<C>(a.mean, row, a.mt), rs = load_as<C>(a.rstd, row, a.rt);
  C sg = C(0), sgh = C(0);
  for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
    C g = load_as<C>(a.dy, base + j, a.dyt);
    if (a.w) g *= load_as<C>(a.w, j, a.wt);
    sg += g;
    sgh += g * (load_as<C>(a.x, base + j, a.xt) - mu) * rs;
  }
  const C inv_d = C(1) / static_cast<C>(a.cols);
  const C mean_g = block_sum(sg) * inv_d;
  const C mean_gh = block_sum(sgh) * inv_d;
  for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
    C g = load_as<C>(a.dy, base + j, a.dyt);
    if (a.w) g *= load_as<C>(a.w, j, a.wt);
    const C h = (load_as<C>(a.x, base + j, a.xt) - mu) * rs;
    C v = rs * (g - mean_g - h * mean_gh);
    if (a.dh) v += load_as<C>(a.dh, base + j, a.dht);
    store_as<C>(a.dx, base + j, a.dxt, v);
  }
}

// dw_j = sum_rows dy_j xhat_j,  db_j = sum_rows dy_j. First pass: block (cb, chunk) sums rows of
// its chunk for 256 columns into partial_w/partial_b [chunks, cols]; the chunks are then summed in
// order by reduce().
template <class C>
__global__ void layer_norm_param_partials_kernel(LayerNormBackwardArgs a, int64_t chunk_rows,
                                                 C* partial_w, C* partial_b) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (col >= a.cols) return;
  const int64_t r0 = chunk * chunk_rows, r1 = min(a.rows, r0 + chunk_rows);
  C acc_w = C(0), acc_b = C(0);
  for (int64_t r = r0; r < r1; ++r) {
    const C g = load_as<C>(a.dy, r * a.cols + col, a.dyt);
    const C mu = load_as<C>(a.mean, r, a.mt), rs = load_as<C>(a.rstd, r, a.rt);
    acc_w += g * (load_as<C>(a.x, r * a.cols + col, a.xt) - mu) * rs;
    acc_b += g;
  }
  if (partial_w) partial_w[chunk * a.cols + col] = acc_w;
  if (partial_b) partial_b[chunk * a.cols + col] = acc_b;
}

int64_t last_dim(const Tensor& t) { return t.dim() == 0 ? 1 : t.shape().back(); }

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
void* mut_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

Tensor contiguous_or_undefined(const Tensor& t) {
  return t.defined() ? contiguous_as(t, t.dtype()) : t;
}

// The forward of both ops: residual and h undefined for a plain layer norm.
void launch_layer_norm(const char* op, const Tensor& x, const Tensor& residual,
                       const Tensor& weight, const Tensor& bias, double eps, const Tensor& h,
                       const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  const int64_t cols = last_dim(x);
  if (x.numel() == 0 || cols == 0) return;
  check_cuda_tensor(out, op, "out");
  if (residual.defined()) check_cuda_tensor(h, op, "h");
  const Tensor xs = contiguous_as(x, x.dtype()), rs = contiguous_or_undefined(residual);
  const Tensor ws = contiguous_or_undefined(weight), bs = contiguous_or_undefined(bias);
  const int64_t rows = x.numel() / cols;
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  LayerNormArgs a{cdata(xs),
                  xs.dtype(),
                  ptr_or_null(rs),
                  dtype_or(rs, DType::f32),
                  rs.defined() ? mdata(h) : nullptr,
                  dtype_or(h, DType::f32),
                  ptr_or_null(ws),
                  dtype_or(ws, DType::f32),
                  ptr_or_null(bs),
                  dtype_or(bs, DType::f32),
                  eps,
                  mdata(out),
                  out.dtype(),
                  mut_or_null(mean),
                  dtype_or(mean, DType::f32),
                  mut_or_null(rstd),
                  dtype_or(rstd, DType::f32),
                  cols};
  dispatch_compute(x.dtype(), op, [&](auto tag) {
    using C = decltype(tag);
    layer_norm_kernel<C><<<rows_grid(rows), kThreads, 0, stream>>>(a);
  });
  check_launch("layer_norm_kernel");
}

// The backward of both ops: dh undefined for a plain layer norm (x is then the layer norm's input,
// and h for the fused op).
void launch_layer_norm_backward(const char* op, const Tensor& dy, const Tensor& dh, const Tensor& x,
                                const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                const Tensor& dx, const Tensor& dweight, const Tensor& dbias) {
  const int64_t cols = last_dim(x);
  if (x.numel() == 0 || cols == 0) return;
  const Tensor dys = contiguous_as(dy, dy.dtype()), xs = contiguous_as(x, x.dtype());
  const Tensor dhs = contiguous_or_undefined(dh), ws = contiguous_or_undefined(weight);
  const Tensor ms = contiguous_as(mean, mean.dtype()), rs = contiguous_as(rstd, rstd.dtype());
  const int64_t rows = x.numel() / cols;
  const int dev = x.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  LayerNormBackwardArgs a{cdata(dys),
                          dys.dtype(),
                          ptr_or_null(dhs),
                          dtype_or(dhs, DType::f32),
                          cdata(xs),
                          xs.dtype(),
                          ptr_or_null(ws),
                          dtype_or(ws, DType::f32),
                          cdata(ms),
                          ms.dtype(),
                          cdata(rs),
                          rs.dtype(),
                          nullptr,
                          DType::f32,
                          rows,
                          cols};
  dispatch_compute(x.dtype(), op, [&](auto tag) {
    using C = decltype(tag);
    if (dx.defined()) {
      check_cuda_tensor(dx, op, "dx");
      LayerNormBackwardArgs ad = a;
      ad.dx = mdata(dx);
      ad.dxt = dx.dtype();
      layer_norm_backward_dx_kernel<C><<<rows_grid(rows), kThreads, 0, stream>>>(ad);
      check_launch("layer_norm_backward_dx_kernel");
    }
    if (!dweight.defined() && !dbias.defined()) return;
    // Enough row chunks that about 1024 blocks run; each chunk at least 32 rows.
    const int64_t col_blocks = (cols + kThreads - 1) / kThreads;
    int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(1024 / col_blocks, (rows + 31) / 32));
    chunks = std::min<int64_t>(chunks, 65535);
    const int64_t chunk_rows = (rows + chunks - 1) / chunks;
    chunks = (rows + chunk_rows - 1) / chunk_rows;
    const DType acc = std::is_same_v<C, double> ? DType::f64 : DType::f32;
    Tensor pw = dweight.defined() ? Tensor::empty({chunks, cols}, acc, x.device()) : Tensor();
    Tensor pb = dbias.defined() ? Tensor::empty({chunks, cols}, acc, x.device()) : Tensor();
    layer_norm_param_partials_kernel<C>
        <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)), kThreads, 0,
           stream>>>(a, chunk_rows, pw.defined() ? pw.data<C>() : nullptr,
                     pb.defined() ? pb.data<C>() : nullptr);
    check_launch("layer_norm_param_partials_kernel");
    Backend& be = backend_for(x.device());
    if (dweight.defined()) be.reduce(ReduceOp::sum, pw, 1, chunks, cols, dweight, Tensor());
    if (dbias.defined()) be.reduce(ReduceOp::sum, pb, 1, chunks, cols, dbias, Tensor());
  });
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                             const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  launch_layer_norm("layer_norm", x, Tensor(), weight, bias, eps, Tensor(), out, mean, rstd);
}

void CudaBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                      const Tensor& dweight, const Tensor& dbias) {
  launch_layer_norm_backward("layer_norm_backward", dy, Tensor(), x, weight, mean, rstd, dx,
                             dweight, dbias);
}

void CudaBackend::add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                 const Tensor& bias, double eps, const Tensor& h, const Tensor& out,
                                 const Tensor& mean, const Tensor& rstd) {
  DTRAIN_CHECK(residual.defined() && residual.numel() == x.numel(), "cuda add_layer_norm: x ",
               shape_str(x.shape()), " and residual need one shape; pass tensors of equal shape");
  launch_layer_norm("add_layer_norm", x, residual, weight, bias, eps, h, out, mean, rstd);
}

void CudaBackend::add_layer_norm_backward(const Tensor& dy, const Tensor& dh, const Tensor& h,
                                          const Tensor& weight, const Tensor& mean,
                                          const Tensor& rstd, const Tensor& dx,
                                          const Tensor& dweight, const Tensor& dbias) {
  launch_layer_norm_backward("add_layer_norm_backward", dy, dh, h, weight, mean, rstd, dx, dweight,
                             dbias);
}

}  // namespace dtrain
