// CUDA elementwise kernels: converting strided copy, fill, unary ops and their derivatives, binary ops
// with broadcast strides, and ops with a scalar. The math of each op (the rows of
// core/backend/unary_ops.def and binary_ops.def) is in cuda_elementwise_math.cuh.
//
// The host plans each launch with strided_layout.h: dims are coalesced, then
//   flat (every operand contiguous, one shape): the linear index is the offset. Operands aligned to
//     16 bytes take the vectorised path: each thread moves one 128-bit pack (4 f32, 8 f16/bf16,
//     2 f64) per load and store, and a scalar tail finishes the last n % pack elements. A
//     same-dtype copy is a cudaMemcpyAsync.
//   strided: offsets from the coalesced layout, in 32-bit arithmetic (a multiply-high per division)
//     when the element count and all offsets fit in int32, else in 64-bit. Each strided kernel is
//     instantiated for both index types, nothing more.
// Converting copies compute in f32 between f32/f16/bf16 (vectorised when flat and aligned), in f64
// only when a side is f64, and through int64 when a side is an integer (see cast_via).
#include <cmath>
#include <cstring>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/cuda_elementwise_math.cuh"
#include "core/backend/cuda/kernel_utils.cuh"
#include "core/backend/cuda/strided_layout.h"

namespace dtrain {
namespace cuda {
namespace {

// Elements of T in 128 bits.
template <class T>
constexpr int kPackSize = 16 / static_cast<int>(sizeof(T));

// V elements moved as one unit: 128 bits by default; an 8-element pack of f32 is two 128-bit moves.
template <class T, int V = kPackSize<T>>
struct alignas(16) Pack {
  T v[V];
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- copy and fill

// Layout is an IndexLayout<N, int32_t or int64_t> (strided_layout.h); I its index type.

// Same dtype, any strides: moves the bits (W is an unsigned type of the element's width).
template <class W, class Layout>
__global__ void bit_copy_kernel(const W* src, W* dst, Layout layout, int64_t n) {
  using I = typename Layout::index_type;
  DTRAIN_GRID_STRIDE(i, n) {
    I off[2];
    layout.offsets(static_cast<I>(i), off);
    dst[off[0]] = src[off[1]];
  }
}

// Different dtypes, run-time dtypes, any strides: through C (float, double or int64: cast_via).
template <class C, class Layout>
__global__ void convert_copy_kernel(const void* src, DType src_type, void* dst, DType dst_type,
                                    Layout layout, int64_t n) {
  using I = typename Layout::index_type;
  DTRAIN_GRID_STRIDE(i, n) {
    I off[2];
    layout.offsets(static_cast<I>(i), off);
    store_as<C>(dst, off[0], dst_type, load_as<C>(src, off[1], src_type));
  }
}

// Flat converting copy between two of f32/f16/bf16 (through f32, in cast<>), 8 elements per thread:
// one 128-bit move on the 16-bit side, two on the f32 side.
template <class S, class D>
__global__ void cast_flat_kernel(const S* src, D* dst, int64_t n, bool vectorised) {
  constexpr int V = 8;
  int64_t done = 0;
  if (vectorised) {
    const int64_t packs = n / V;
    DTRAIN_GRID_STRIDE(p, packs) {
      const Pack<S, V> in = reinterpret_cast<const Pack<S, V>*>(src)[p];
      Pack<D, V> res;
#pragma unroll
      for (int j = 0; j < V; ++j) res.v[j] = cast<D>(in.v[j]);
      reinterpret_cast<Pack<D, V>*>(dst)[p] = res;
    }
    done = packs * V;
  }
  DTRAIN_GRID_STRIDE(i, n - done) {
    const int64_t k = done + i;
    dst[k] = cast<D>(src[k]);
  }
}

template <class W, class Layout>
__global__ void fill_kernel(W* dst, W bits, Layout layout, int64_t n) {
  using I = typename Layout::index_type;
  DTRAIN_GRID_STRIDE(i, n) {
    I off[1];
    layout.offsets(static_cast<I>(i), off);
    dst[off[0]] = bits;
  }
}

template <class W>
__global__ void fill_flat_kernel(W* dst, W bits, int64_t n, bool vectorised) {
  constexpr int V = kPackSize<W>;
  int64_t done = 0;
  if (vectorised) {
    Pack<W> pack;
#pragma unroll
    for (int j = 0; j < V; ++j) pack.v[j] = bits;
    const int64_t packs = n / V;
    DTRAIN_GRID_STRIDE(p, packs) reinterpret_cast<Pack<W>*>(dst)[p] = pack;
    done = packs * V;
  }
  DTRAIN_GRID_STRIDE(i, n - done) dst[done + i] = bits;
}

template <class F>
void dispatch_width(size_t width, F&& f) {
  switch (width) {
    case 2:
      f(uint16_t{});
      return;
    case 4:
      f(uint32_t{});
      return;
    case 8:
      f(uint64_t{});
      return;
    default:
      throw Error(detail::concat("cuda: unsupported element width ", width));
  }
}

// ---- unary, binary

template <class T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* out, int64_t n, bool vectorised) {
  using C = compute_t<T>;
  constexpr int V = kPackSize<T>;
  int64_t done = 0;
  if (vectorised) {
    const int64_t packs = n / V;
    DTRAIN_GRID_STRIDE(p, packs) {
      Pack<T> in = reinterpret_cast<const Pack<T>*>(x)[p];
      Pack<T> res;
#pragma unroll
      for (int j = 0; j < V; ++j) res.v[j] = cast<T>(apply_unary<C>(op, cast<C>(in.v[j])));
      reinterpret_cast<Pack<T>*>(out)[p] = res;
    }
    done = packs * V;
  }
  DTRAIN_GRID_STRIDE(i, n - done) {
    const int64_t k = done + i;
    out[k] = cast<T>(apply_unary<C>(op, cast<C>(x[k])));
  }
}

template <class T>
__global__ void unary_backward_kernel(UnaryOp op, const T* x, const T* grad, T* out, int64_t n,
                                      bool vectorised) {
  using C = compute_t<T>;
  constexpr int V = kPackSize<T>;
  int64_t done = 0;
  if (vectorised) {
    const int64_t packs = n / V;
    DTRAIN_GRID_STRIDE(p, packs) {
      Pack<T> xv = reinterpret_cast<const Pack<T>*>(x)[p];
      Pack<T> gv = reinterpret_cast<const Pack<T>*>(grad)[p];
      Pack<T> res;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        res.v[j] = cast<T>(apply_unary_backward<C>(op, cast<C>(xv.v[j]), cast<C>(gv.v[j])));
      }
      reinterpret_cast<Pack<T>*>(out)[p] = res;
    }
    done = packs * V;
  }
  DTRAIN_GRID_STRIDE(i, n - done) {
    const int64_t k = done + i;
    out[k] = cast<T>(apply_unary_backward<C>(op, cast<C>(x[k]), cast<C>(grad[k])));
  }
}

template <class T>
__global__ void binary_contiguous_kernel(BinaryOp op, const T* a, const T* b, T* out, int64_t n,
                                         bool vectorised) {
  using C = compute_t<T>;
  constexpr int V = kPackSize<T>;
  int64_t done = 0;
  if (vectorised) {
    const int64_t packs = n / V;
    DTRAIN_GRID_STRIDE(p, packs) {
      Pack<T> av = reinterpret_cast<const Pack<T>*>(a)[p];
      Pack<T> bv = reinterpret_cast<const Pack<T>*>(b)[p];
      Pack<T> res;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        res.v[j] = cast<T>(apply_binary<C>(op, cast<C>(av.v[j]), cast<C>(bv.v[j])));
      }
      reinterpret_cast<Pack<T>*>(out)[p] = res;
    }
    done = packs * V;
  }
  DTRAIN_GRID_STRIDE(i, n - done) {
    const int64_t k = done + i;
    out[k] = cast<T>(apply_binary<C>(op, cast<C>(a[k]), cast<C>(b[k])));
  }
}

template <class T, class Layout>
__global__ void binary_strided_kernel(BinaryOp op, const T* a, const T* b, T* out, Layout layout,
                                      int64_t n) {
  using C = compute_t<T>;
  using I = typename Layout::index_type;
  DTRAIN_GRID_STRIDE(i, n) {
    I off[3];
    layout.offsets(static_cast<I>(i), off);
    out[off[0]] = cast<T>(apply_binary<C>(op, cast<C>(a[off[1]]), cast<C>(b[off[2]])));
  }
}

template <class T>
__global__ void binary_scalar_kernel(BinaryOp op, const T* a, double s, bool scalar_first, T* out,
                                     int64_t n, bool vectorised) {
  using C = compute_t<T>;
  constexpr int V = kPackSize<T>;
  const C sc = static_cast<C>(s);
  int64_t done = 0;
  if (vectorised) {
    const int64_t packs = n / V;
    DTRAIN_GRID_STRIDE(p, packs) {
      Pack<T> av = reinterpret_cast<const Pack<T>*>(a)[p];
      Pack<T> res;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const C x = cast<C>(av.v[j]);
        res.v[j] = cast<T>(scalar_first ? apply_binary<C>(op, sc, x) : apply_binary<C>(op, x, sc));
      }
      reinterpret_cast<Pack<T>*>(out)[p] = res;
    }
    done = packs * V;
  }
  DTRAIN_GRID_STRIDE(i, n - done) {
    const int64_t k = done + i;
    const C x = cast<C>(a[k]);
    out[k] = cast<T>(scalar_first ? apply_binary<C>(op, sc, x) : apply_binary<C>(op, x, sc));
  }
}

// Calls f(T{}) for a floating storage type, else throws naming op.
template <class F>
void dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
      f(float{});
      return;
    case DType::f64:
      f(double{});
      return;
    case DType::f16:
      f(half{});
      return;
    case DType::bf16:
      f(bf16{});
      return;
    default:
      throw Error(detail::concat("cuda ", op, ": unsupported dtype ", dtype_name(t),
                                 "; expected f32, f64, f16 or bf16"));
  }
}

template <int N>
StridedLayout<N> layout_of(const char* op, const Shape& shape,
                           const std::array<const Shape*, N>& strides) {
  StridedLayout<N> layout;
  DTRAIN_CHECK(make_strided_layout<N>(shape, strides, layout), "cuda ", op, ": shape ",
               shape_str(shape), " has more than ", kMaxDims,
               " dims that cannot be merged; make the operands contiguous first");
  return layout;
}

// Calls f(IndexLayout<N, I>) with I = int32_t where fits_int32 allows it, else int64_t.
template <int N, class F>
void with_index_layout(const StridedLayout<N>& layout, int64_t n, F&& f) {
  if (fits_int32(layout, n)) {
    f(index_layout<int32_t>(layout));
  } else {
    f(index_layout<int64_t>(layout));
  }
}

// Calls f(T{}) for T the storage type of f32, f16 or bf16.
template <class F>
void dispatch_narrow_float(DType t, F&& f) {
  switch (t) {
    case DType::f16:
      f(half{});
      return;
    case DType::bf16:
      f(bf16{});
      return;
    default:
      f(float{});
      return;
  }
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  DTRAIN_CHECK(src.shape() == dst.shape(), "cuda copy: source shape ", shape_str(src.shape()),
               " differs from destination shape ", shape_str(dst.shape()));
  DTRAIN_CHECK(src.device() == dst.device(), "cuda copy: source on ", src.device().str(),
               " and destination on ", dst.device().str(), " must share a device");
  const int64_t n = dst.numel();
  if (n == 0) return;
  const int dev = dst.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  const auto layout = layout_of<2>("copy", dst.shape(), {&dst.strides(), &src.strides()});
  const bool flat = choose_index_path(layout, n) == IndexPath::flat;
  if (src.dtype() == dst.dtype()) {
    const size_t width = dtype_size(dst.dtype());
    if (flat) {
      DTRAIN_CUDA_CHECK(cudaMemcpyAsync(mdata(dst), cdata(src), static_cast<size_t>(n) * width,
                                        cudaMemcpyDeviceToDevice, stream));
      return;
    }
    dispatch_width(width, [&](auto w) {
      using W = decltype(w);
      with_index_layout(layout, n, [&](auto l) {
        bit_copy_kernel<W><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const W*>(cdata(src)),
                                                                 static_cast<W*>(mdata(dst)), l, n);
      });
    });
    check_launch("bit_copy_kernel");
    return;
  }
  if (flat && cast_is_vectorisable(src.dtype(), dst.dtype())) {
    const bool vec = aligned16(cdata(src)) && aligned16(mdata(dst));
    dispatch_narrow_float(src.dtype(), [&](auto s_tag) {
      dispatch_narrow_float(dst.dtype(), [&](auto d_tag) {
        using S = decltype(s_tag);
        using D = decltype(d_tag);
        if constexpr (!std::is_same_v<S, D>) {
          cast_flat_kernel<S, D><<<grid_for(vec ? n / 8 + 1 : n), kThreads, 0, stream>>>(
              static_cast<const S*>(cdata(src)), static_cast<D*>(mdata(dst)), n, vec);
        }
      });
    });
    check_launch("cast_flat_kernel");
    return;
  }
  // Everything else (a side is f64 or an integer, or a strided operand): run-time dtypes. A flat
  // layout is one coalesced dim, whose offsets cost no division.
  with_index_layout(layout, n, [&](auto l) {
    auto launch = [&](auto c_tag) {
      using C = decltype(c_tag);
      convert_copy_kernel<C><<<grid_for(n), kThreads, 0, stream>>>(cdata(src), src.dtype(),
                                                                   mdata(dst), dst.dtype(), l, n);
    };
    switch (cast_via(src.dtype(), dst.dtype())) {
      case CastVia::f32:
        launch(float{});
        break;
      case CastVia::f64:
        launch(double{});
        break;
      case CastVia::i64:
        launch(int64_t{});
        break;
    }
  });
  check_launch("convert_copy_kernel");
}

void CudaBackend::fill(const Tensor& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  const int dev = dst.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  // The element's bits, converted on the host with the CPU backend's rounding.
  uint64_t bits = 0;
  switch (dst.dtype()) {
    case DType::f32:
      bits = f32_bits(static_cast<float>(value));
      break;
    case DType::f64:
      std::memcpy(&bits, &value, 8);
      break;
    case DType::f16:
      bits = float_to_half(static_cast<float>(value)).bits;
      break;
    case DType::bf16:
      bits = float_to_bf16(static_cast<float>(value)).bits;
      break;
    case DType::i32:
      bits = static_cast<uint32_t>(static_cast<int32_t>(value));
      break;
    case DType::i64:
      bits = static_cast<uint64_t>(static_cast<int64_t>(value));
      break;
  }
  const size_t width = dtype_size(dst.dtype());
  const auto layout = layout_of<1>("fill", dst.shape(), {&dst.strides()});
  const bool flat = choose_index_path(layout, n) == IndexPath::flat;
  if (bits == 0 && flat) {
    DTRAIN_CUDA_CHECK(cudaMemsetAsync(mdata(dst), 0, static_cast<size_t>(n) * width, stream));
    return;
  }
  dispatch_width(width, [&](auto w) {
    using W = decltype(w);
    W* p = static_cast<W*>(mdata(dst));
    if (flat) {
      const bool vec = aligned16(p);
      fill_flat_kernel<W><<<grid_for(vec ? n / kPackSize<W> + 1 : n), kThreads, 0, stream>>>(
          p, static_cast<W>(bits), n, vec);
    } else {
      with_index_layout(layout, n, [&](auto l) {
        fill_kernel<W><<<grid_for(n), kThreads, 0, stream>>>(p, static_cast<W>(bits), l, n);
      });
    }
  });
  check_launch("fill_kernel");
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (!out.is_contiguous()) {  // computed densely, then scattered into the strided output
    Tensor dense = Tensor::empty(out.shape(), out.dtype(), out.device());
    unary(op, x, dense);
    copy(dense, out);
    return;
  }
  check_cuda_tensor(out, "unary", "out");
  const Tensor xs = contiguous_as(x, out.dtype());
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_floating(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(cdata(xs)) && aligned16(mdata(out));
    unary_kernel<T><<<grid_for(vec ? n / kPackSize<T> + 1 : n), kThreads, 0, stream>>>(
        op, static_cast<const T*>(cdata(xs)), static_cast<T*>(mdata(out)), n, vec);
  });
  check_launch("unary_kernel");
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& grad,
                                 const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (!out.is_contiguous()) {
    Tensor dense = Tensor::empty(out.shape(), out.dtype(), out.device());
    unary_backward(op, x, grad, dense);
    copy(dense, out);
    return;
  }
  check_cuda_tensor(out, "unary_backward", "out");
  const Tensor xs = contiguous_as(x, out.dtype());
  const Tensor gs = contiguous_as(grad, out.dtype());
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_floating(out.dtype(), "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(cdata(xs)) && aligned16(cdata(gs)) && aligned16(mdata(out));
    unary_backward_kernel<T><<<grid_for(vec ? n / kPackSize<T> + 1 : n), kThreads, 0, stream>>>(
        op, static_cast<const T*>(cdata(xs)), static_cast<const T*>(cdata(gs)),
        static_cast<T*>(mdata(out)), n, vec);
  });
  check_launch("unary_backward_kernel");
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DTRAIN_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "cuda binary: operands ",
               shape_str(a.shape()), " and ", shape_str(b.shape()),
               " must be broadcast to the output shape ", shape_str(out.shape()));
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  // Mixed dtypes are converted to the output's first (rare: the ops promote before calling).
  Tensor as = a, bs = b;
  if (a.dtype() != out.dtype()) as = contiguous_as(a, out.dtype());
  if (b.dtype() != out.dtype()) bs = contiguous_as(b, out.dtype());
  const auto layout =
      layout_of<3>("binary", out.shape(), {&out.strides(), &as.strides(), &bs.strides()});
  dispatch_storage(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* ap = static_cast<const T*>(cdata(as));
    const T* bp = static_cast<const T*>(cdata(bs));
    T* op_ = static_cast<T*>(mdata(out));
    if (choose_index_path(layout, n) == IndexPath::flat) {
      const bool vec = aligned16(ap) && aligned16(bp) && aligned16(op_);
      binary_contiguous_kernel<T>
          <<<grid_for(vec ? n / kPackSize<T> + 1 : n), kThreads, 0, stream>>>(op, ap, bp, op_, n,
                                                                              vec);
    } else {
      with_index_layout(layout, n, [&](auto l) {
        binary_strided_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(op, ap, bp, op_, l, n);
      });
    }
  });
  check_launch("binary_kernel");
}

void CudaBackend::binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first,
                                const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (!out.is_contiguous()) {
    Tensor dense = Tensor::empty(out.shape(), out.dtype(), out.device());
    binary_scalar(op, a, s, scalar_first, dense);
    copy(dense, out);
    return;
  }
  check_cuda_tensor(out, "binary_scalar", "out");
  const Tensor as = contiguous_as(a, out.dtype());
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_storage(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(cdata(as)) && aligned16(mdata(out));
    binary_scalar_kernel<T><<<grid_for(vec ? n / kPackSize<T> + 1 : n), kThreads, 0, stream>>>(
        op, static_cast<const T*>(cdata(as)), s, scalar_first, static_cast<T*>(mdata(out)), n, vec);
  });
  check_launch("binary_scalar_kernel");
}

}  // namespace dtrain
