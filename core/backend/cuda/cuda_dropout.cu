// CUDA fused dropout + residual add (backend_kernels.def: dropout_add):
//   out_i = residual_i + x_i keep_i / (1 - p)
// with keep_i from dropout_add_mask.h, the bits the CPU backend draws too. Thread t evaluates one
// Philox call and serves elements [4t, 4t + 4). Compute is f32 for f32/f16/bf16 data and f64 for
// f64; operands are read and written with their own dtypes.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"
#include "core/backend/dropout_add_mask.h"

namespace dtrain {
namespace cuda {
namespace {

template <class C>
__global__ void dropout_add_kernel(const void* x, DType xt, const void* residual, DType rt,
                                   void* out, DType ot, uint64_t seed, float p, C scale,
                                   int64_t n) {
  DTRAIN_GRID_STRIDE(g, (n + 3) / 4) {
    const Philox4 words = dropout_add_words(seed, static_cast<uint64_t>(g));
    for (int64_t lane = 0; lane < 4 && 4 * g + lane < n; ++lane) {
      const int64_t i = 4 * g + lane;
      C v = dropout_add_keep_word(words.v[lane], p) ? load_as<C>(x, i, xt) * scale : C(0);
      if (residual) v += load_as<C>(residual, i, rt);
      store_as<C>(out, i, ot, v);
    }
  }
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::dropout_add(const Tensor& x, const Tensor& residual, double p, uint64_t seed,
                              const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  check_cuda_tensor(out, "dropout_add", "out");
  DTRAIN_CHECK(x.numel() == n && (!residual.defined() || residual.numel() == n),
               "cuda dropout_add: x ", shape_str(x.shape()), " and residual must have out's size ",
               shape_str(out.shape()), "; pass tensors of one shape");
  const Tensor xs = contiguous_as(x, x.dtype());
  const Tensor rs = residual.defined() ? contiguous_as(residual, residual.dtype()) : residual;
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_compute(out.dtype(), "dropout_add", [&](auto tag) {
    using C = decltype(tag);
    dropout_add_kernel<C><<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(
        cdata(xs), xs.dtype(), rs.defined() ? cdata(rs) : nullptr,
        rs.defined() ? rs.dtype() : DType::f32, mdata(out), out.dtype(), seed,
        static_cast<float>(p), static_cast<C>(dropout_add_scale(p)), n);
  });
  check_launch("dropout_add_kernel");
}

}  // namespace dtrain
