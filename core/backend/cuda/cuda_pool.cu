// CUDA 2-D max and average pooling, NCHW, forward and backward, with the CPU backend's conventions:
// max pooling looks only at the in-image part of each window (padding never wins), NaN wins, and
// `indices` holds the flat position h * W + w of the max within its plane; average pooling divides by
// the window clipped to the padded image (PyTorch's count_include_pad=True).
//
// Both backward passes gather: each input element sums what reaches it in a fixed order, with no
// atomics, so they are deterministic (and max pooling's matches the CPU's bits).
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"

namespace dtrain {
namespace cuda {
namespace {

struct PoolGeometry {
  int64_t planes, h, w, oh, ow;
  int64_t kh, kw, sh, sw, ph, pw;
};

PoolGeometry geometry(const Tensor& input, const Tensor& output, const Pool2dArgs& a) {
  return {input.size(0) * input.size(1),
          input.size(2),
          input.size(3),
          output.size(2),
          output.size(3),
          a.kernel_h,
          a.kernel_w,
          a.stride_h,
          a.stride_w,
          a.pad_h,
          a.pad_w};
}

__device__ __forceinline__ int64_t avg_divisor(const PoolGeometry& g, int64_t y0, int64_t x0) {
  const int64_t ye = min(y0 + g.kh, g.h + g.ph), xe = min(x0 + g.kw, g.w + g.pw);
  return (ye - y0) * (xe - x0);
}

template <class C>
__global__ void max_pool_kernel(const void* x, DType xt, void* y, DType yt, int64_t* indices,
                                PoolGeometry g) {
  DTRAIN_GRID_STRIDE(o, g.planes * g.oh * g.ow) {
    const int64_t ox = o % g.ow, oy = (o / g.ow) % g.oh, pl = o / (g.ow * g.oh);
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    const int64_t ys = max(y0, int64_t{0}), ye = min(y0 + g.kh, g.h);
    const int64_t xs = max(x0, int64_t{0}), xe = min(x0 + g.kw, g.w);
    const int64_t base = pl * g.h * g.w;
    C best = lowest<C>();
    int64_t best_at = ys * g.w + xs;
    for (int64_t iy = ys; iy < ye; ++iy) {
      for (int64_t ix = xs; ix < xe; ++ix) {
        const C v = load_as<C>(x, base + iy * g.w + ix, xt);
        if (v > best || v != v) {
          best = v;
          best_at = iy * g.w + ix;
        }
      }
    }
    store_as<C>(y, o, yt, best);
    if (indices) indices[o] = best_at;
  }
}

// dx[pl, at] = sum of dy[pl, o] over the outputs o of plane pl whose argmax indices[pl, o] = at.
// Without the window geometry (the backend call does not carry it) the outputs that reach an input
// element are found by sorting: output o's key is its input element pl * hw + at, or `total`
// (sorted last, never gathered) for an index outside [0, hw).
__global__ void max_pool_keys_kernel(const int64_t* indices, int64_t outputs, int64_t hw,
                                     int64_t ohw, int64_t total, uint32_t* keys) {
  DTRAIN_GRID_STRIDE(o, outputs) {
    const int64_t at = indices[o];
    keys[o] = static_cast<uint32_t>(at >= 0 && at < hw ? o / ohw * hw + at : total);
  }
}

// After group_positions_by_key, one thread per input element finds the run of its key and sums dy
// over it in ascending output order (the CPU's order, so the same bits), in C, rounding once on
// store. Every element is written, so dx needs no zeroing first.
template <class C>
__global__ void max_pool_backward_kernel(const void* dy, DType dyt, const uint32_t* keys,
                                         const int32_t* positions, int32_t outputs, void* dx,
                                         DType dxt, int64_t total) {
  DTRAIN_GRID_STRIDE(e, total) {
    C acc = C(0);
    const auto key = static_cast<uint32_t>(e);
    for (int32_t p = lower_bound(keys, outputs, key); p < outputs && keys[p] == key; ++p) {
      acc += load_as<C>(dy, positions[p], dyt);
    }
    store_as<C>(dx, e, dxt, acc);
  }
}

template <class C>
__global__ void avg_pool_kernel(const void* x, DType xt, void* y, DType yt, PoolGeometry g) {
  DTRAIN_GRID_STRIDE(o, g.planes * g.oh * g.ow) {
    const int64_t ox = o % g.ow, oy = (o / g.ow) % g.oh, pl = o / (g.ow * g.oh);
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    const int64_t ys = max(y0, int64_t{0}), ye = min(y0 + g.kh, g.h);
    const int64_t xs = max(x0, int64_t{0}), xe = min(x0 + g.kw, g.w);
    const int64_t base = pl * g.h * g.w;
    C acc = C(0);
    for (int64_t iy = ys; iy < ye; ++iy) {
      for (int64_t ix = xs; ix < xe; ++ix) acc += load_as<C>(x, base + iy * g.w + ix, xt);
    }
    store_as<C>(y, o, yt, acc / static_cast<C>(avg_divisor(g, y0, x0)));
  }
}

// Input element (iy, ix) lies in the windows of outputs oy with oy*sh - ph <= iy < oy*sh - ph + kh,
// i.e. ceil((iy + ph - kh + 1) / sh) <= oy <= floor((iy + ph) / sh); likewise for ox.
template <class C>
__global__ void avg_pool_backward_kernel(const void* dy, DType dyt, void* dx, DType dxt,
                                         PoolGeometry g) {
  DTRAIN_GRID_STRIDE(i, g.planes * g.h * g.w) {
    const int64_t ix = i % g.w, iy = (i / g.w) % g.h, pl = i / (g.w * g.h);
    const int64_t ty = iy + g.ph, tx = ix + g.pw;
    const int64_t oy0 = ty - g.kh + 1 > 0 ? (ty - g.kh + 1 + g.sh - 1) / g.sh : 0;
    const int64_t oy1 = min(ty / g.sh, g.oh - 1);
    const int64_t ox0 = tx - g.kw + 1 > 0 ? (tx - g.kw + 1 + g.sw - 1) / g.sw : 0;
    const int64_t ox1 = min(tx / g.sw, g.ow - 1);
    C acc = C(0);
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
        const int64_t o = (pl * g.oh + oy) * g.ow + ox;
        acc += load_as<C>(dy, o, dyt) / static_cast<C>(avg_divisor(g, y0, x0));
      }
    }
    store_as<C>(dx, i, dxt, acc);
  }
}

void check_4d(const Tensor& t, const char* op, const char* what) {
  DTRAIN_CHECK(t.dim() == 4, "cuda ", op, ": ", what, " of shape ", shape_str(t.shape()),
               " must be 4-D (NCHW)");
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::max_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out,
                             const Tensor& indices) {
  check_4d(x, "max_pool2d", "x");
  check_4d(out, "max_pool2d", "out");
  if (out.numel() == 0) return;
  check_cuda_tensor(out, "max_pool2d", "out");
  const Tensor xs = contiguous_as(x, x.dtype());
  const PoolGeometry g = geometry(x, out, args);
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  int64_t* ip = nullptr;
  if (indices.defined()) {
    check_cuda_tensor(indices, "max_pool2d", "indices");
    ip = indices.data<int64_t>();
  }
  dispatch_compute(x.dtype(), "max_pool2d", [&](auto tag) {
    using C = decltype(tag);
    max_pool_kernel<C><<<grid_for(out.numel()), kThreads, 0, stream>>>(
        cdata(xs), xs.dtype(), mdata(out), out.dtype(), ip, g);
  });
  check_launch("max_pool_kernel");
}

void CudaBackend::max_pool2d_backward(const Tensor& dy, const Tensor& indices, const Tensor& dx) {
  check_4d(dy, "max_pool2d_backward", "dy");
  check_4d(dx, "max_pool2d_backward", "dx");
  if (dx.numel() == 0) return;
  check_cuda_tensor(dx, "max_pool2d_backward", "dx");
  const int64_t planes = dx.size(0) * dx.size(1), hw = dx.size(2) * dx.size(3);
  const int64_t ohw = dy.size(2) * dy.size(3), outputs = dy.numel(), total = dx.numel();
  DTRAIN_CHECK(dy.size(0) * dy.size(1) == planes && indices.numel() == outputs,
               "cuda max_pool2d_backward: dy ", shape_str(dy.shape()), " and indices ",
               shape_str(indices.shape()), " do not match dx ", shape_str(dx.shape()));
  const int dev = dx.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  if (outputs == 0) {  // nothing reaches dx
    fill(dx, 0.0);
    return;
  }
  DTRAIN_CHECK(total < (int64_t{1} << 32) - 1, "cuda max_pool2d_backward: ", total,
               " input elements are not supported (at most 2^32 - 2); split the batch");
  const Tensor dys = contiguous_as(dy, dy.dtype());
  const Tensor is = contiguous_as(indices, DType::i64);
  Tensor keys = Tensor::empty({outputs}, DType::i32, dx.device());
  max_pool_keys_kernel<<<grid_for(outputs), kThreads, 0, stream>>>(
      is.data<int64_t>(), outputs, hw, ohw, total, static_cast<uint32_t*>(mdata(keys)));
  check_launch("max_pool_keys_kernel");
  const GroupedPositions groups =
      group_positions_by_key(keys, key_bits_for(static_cast<uint64_t>(total)));
  // Half-precision gradients accumulate in f32 and are rounded once, as on the CPU.
  dispatch_compute(dx.dtype(), "max_pool2d_backward", [&](auto tag) {
    using C = decltype(tag);
    max_pool_backward_kernel<C><<<grid_for(total), kThreads, 0, stream>>>(
        cdata(dys), dys.dtype(), static_cast<const uint32_t*>(cdata(groups.keys)),
        groups.positions.data<int32_t>(), static_cast<int32_t>(outputs), mdata(dx), dx.dtype(),
        total);
  });
  check_launch("max_pool_backward_kernel");
}

void CudaBackend::avg_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out) {
  check_4d(x, "avg_pool2d", "x");
  check_4d(out, "avg_pool2d", "out");
  if (out.numel() == 0) return;
  check_cuda_tensor(out, "avg_pool2d", "out");
  const Tensor xs = contiguous_as(x, x.dtype());
  const PoolGeometry g = geometry(x, out, args);
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_compute(x.dtype(), "avg_pool2d", [&](auto tag) {
    using C = decltype(tag);
    avg_pool_kernel<C><<<grid_for(out.numel()), kThreads, 0, stream>>>(cdata(xs), xs.dtype(),
                                                                       mdata(out), out.dtype(), g);
  });
  check_launch("avg_pool_kernel");
}

void CudaBackend::avg_pool2d_backward(const Tensor& dy, const Pool2dArgs& args, const Tensor& dx) {
  check_4d(dy, "avg_pool2d_backward", "dy");
  check_4d(dx, "avg_pool2d_backward", "dx");
  if (dx.numel() == 0) return;
  check_cuda_tensor(dx, "avg_pool2d_backward", "dx");
  const Tensor dys = contiguous_as(dy, dy.dtype());
  const PoolGeometry g = geometry(dx, dy, args);
  const int dev = dx.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_compute(dx.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using C = decltype(tag);
    avg_pool_backward_kernel<C><<<grid_for(dx.numel()), kThreads, 0, stream>>>(
        cdata(dys), dys.dtype(), mdata(dx), dx.dtype(), g);
  });
  check_launch("avg_pool_backward_kernel");
}

}  // namespace dtrain
