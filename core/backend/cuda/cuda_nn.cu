// CUDA kernels for softmax, embedding and cross entropy (layer norm is in cuda_layer_norm.cu). Row
// kernels run one block of 256 threads per row: threads stride over the columns, and block_sum /
// block_max combine their partials in a fixed order, so results are bitwise reproducible. Compute
// is f32 for f32/f16/bf16 data and f64 for f64; operands are read and written with their own
// dtypes.
//
// Embedding gradients are reduced without atomics, in a fixed order, so they are deterministic too.
//
// Class targets and embedding indices are not range-checked on the host (that would cost a device
// to host sync per step; the data pipeline validates them before the upload). The kernels stay
// memory-safe on a bad value and make it visible instead: a cross-entropy target outside
// [0, classes) that is not ignore_index gives a NaN loss and a NaN gradient row; an embedding index
// outside [0, vocab) gives a NaN output row (zeros for an integer table) and adds nothing to the
// weight gradient.
#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"

namespace dtrain {
namespace cuda {
namespace {

__device__ __forceinline__ float exp_c(float x) { return expf(x); }
__device__ __forceinline__ double exp_c(double x) { return exp(x); }
__device__ __forceinline__ float log_c(float x) { return logf(x); }
__device__ __forceinline__ double log_c(double x) { return log(x); }

// ---------------------------------------------------------------------------------------------
// softmax:     y_j = exp(x_j - m) / s,   m = max_j x_j,  s = sum_j exp(x_j - m)
// log_softmax: y_j = x_j - m - log(s)
// A row of only -inf gives NaN (0/0), as in PyTorch.
template <class C>
__global__ void softmax_kernel(const void* x, DType xt, void* y, DType yt, int64_t cols, bool log) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  C m = lowest<C>();
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const C v = load_as<C>(x, base + j, xt);
    m = v > m ? v : m;
  }
  m = block_max(m);
  C s = C(0);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    s += exp_c(load_as<C>(x, base + j, xt) - m);
  s = block_sum(s);
  if (log) {
    const C shift = m + log_c(s);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      store_as<C>(y, base + j, yt, load_as<C>(x, base + j, xt) - shift);
    }
  } else {
    const C inv = C(1) / s;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      store_as<C>(y, base + j, yt, exp_c(load_as<C>(x, base + j, xt) - m) * inv);
    }
  }
}

// softmax:     dx_j = y_j (dy_j - sum_i dy_i y_i)
// log_softmax: dx_j = dy_j - exp(y_j) sum_i dy_i
template <class C>
__global__ void softmax_backward_kernel(const void* y, DType yt, const void* dy, DType dyt,
                                        void* dx, DType dxt, int64_t cols, bool log) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  C s = C(0);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const C g = load_as<C>(dy, base + j, dyt);
    s += log ? g : g * load_as<C>(y, base + j, yt);
  }
  s = block_sum(s);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const C yv = load_as<C>(y, base + j, yt), g = load_as<C>(dy, base + j, dyt);
    store_as<C>(dx, base + j, dxt, log ? g - exp_c(yv) * s : yv * (g - s));
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding: out[i, :] = weight[idx[i], :]; a row gather moves bits, so W is the element's width.
// An index outside [0, vocab) writes `invalid` (a NaN's bits; 0 for integer tables).
template <class W>
__global__ void embedding_kernel(const W* weight, const int64_t* idx, W* out, int64_t n,
                                 int64_t dim, int64_t vocab, W invalid) {
  DTRAIN_GRID_STRIDE(e, n * dim) {
    const int64_t i = e / dim, j = e % dim;
    const int64_t row = idx[i];
    out[e] = row >= 0 && row < vocab ? weight[row * dim + j] : invalid;
  }
}

// dweight[r, :] += sum over positions i with idx[i] = r of grad[i, :], for r != padding_idx.
// The key of position i is its row, or vocab (sorted last, never gathered) for the padding row and
// an index outside [0, vocab).
__global__ void embedding_keys_kernel(const int64_t* idx, int64_t n, int64_t vocab,
                                      int64_t padding_idx, uint32_t* keys) {
  DTRAIN_GRID_STRIDE(i, n) {
    const int64_t row = idx[i];
    const bool used = row >= 0 && row < vocab && row != padding_idx;
    keys[i] = static_cast<uint32_t>(used ? row : vocab);
  }
}

// After group_positions_by_key, the positions of row r are a run of the sorted keys. One block per
// row (blocks stride over rows) finds its run by binary search, and each thread sums its columns
// over the run in ascending position: the order of the CPU loop, so the result is deterministic and
// the same bits. Rows without positions are left as they are. O(n * dim) in all, plus a search per
// row.
template <class C>
__global__ void embedding_backward_kernel(const void* grad, DType gt, const uint32_t* keys,
                                          const int32_t* positions, int32_t n, C* dweight,
                                          int64_t vocab, int64_t dim) {
  for (int64_t row = blockIdx.x; row < vocab; row += gridDim.x) {
    const int32_t lo = lower_bound(keys, n, static_cast<uint32_t>(row));
    const int32_t hi = lower_bound(keys, n, static_cast<uint32_t>(row + 1));
    if (lo == hi) continue;  // uniform across the block
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      C acc = dweight[row * dim + j];
      for (int32_t p = lo; p < hi; ++p) {
        acc += load_as<C>(grad, static_cast<int64_t>(positions[p]) * dim + j, gt);
      }
      dweight[row * dim + j] = acc;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cross entropy of a row with label smoothing s over C classes, lse = log sum_j exp(x_j):
//   loss = (1 - s) (lse - x_t) + s (lse - mean_j x_j)
// and its gradient g (softmax_j - q_j) with q = (1 - s) onehot(t) + s / C, recomputed from the logits
// in the backward kernel, so no probabilities are stored between the two. A row whose target is
// ignore_index has loss 0 and gradient 0; a target outside [0, C) otherwise has loss NaN and a NaN
// gradient row (the logits are not read at the bad target).
struct CrossEntropyArgs {
  const void* logits;
  DType lt;
  const int64_t* targets;
  int64_t ignore_index;
  double smoothing;
  int64_t classes;
  void* losses;  // forward
  DType lst;
  const void* grad;  // backward
  DType gt;
  void* dlogits;
  DType dt;
};

template <class C>
__device__ void row_logsumexp(const CrossEntropyArgs& a, int64_t base, C& m, C& s, C& sum_x,
                              bool want_sum_x) {
  m = lowest<C>();
  for (int64_t j = threadIdx.x; j < a.classes; j += blockDim.x) {
    const C v = load_as<C>(a.logits, base + j, a.lt);
    m = v > m ? v : m;
  }
  m = block_max(m);
  C se = C(0), sx = C(0);
  for (int64_t j = threadIdx.x; j < a.classes; j += blockDim.x) {
    const C v = load_as<C>(a.logits, base + j, a.lt);
    se += exp_c(v - m);
    sx += v;
  }
  s = block_sum(se);
  sum_x = want_sum_x ? block_sum(sx) : C(0);
}

template <class C>
__global__ void cross_entropy_kernel(CrossEntropyArgs a) {
  const int64_t row = blockIdx.x, base = row * a.classes;
  const int64_t t = a.targets[row];
  if (t == a.ignore_index || t < 0 || t >= a.classes) {  // uniform across the block
    const C loss = t == a.ignore_index ? C(0) : quiet_nan<C>();
    if (threadIdx.x == 0) store_as<C>(a.losses, row, a.lst, loss);
    return;
  }
  C m, s, sum_x;
  row_logsumexp(a, base, m, s, sum_x, a.smoothing != 0.0);
  if (threadIdx.x == 0) {
    const C lse = m + log_c(s);
    const C smooth = static_cast<C>(a.smoothing);
    C loss = (C(1) - smooth) * (lse - load_as<C>(a.logits, base + t, a.lt));
    if (a.smoothing != 0.0) loss += smooth * (lse - sum_x / static_cast<C>(a.classes));
    store_as<C>(a.losses, row, a.lst, loss);
  }
}

template <class C>
__global__ void cross_entropy_backward_kernel(CrossEntropyArgs a) {
  const int64_t row = blockIdx.x, base = row * a.classes;
  const int64_t t = a.targets[row];
  if (t == a.ignore_index || t < 0 || t >= a.classes) {
    const C d = t == a.ignore_index ? C(0) : quiet_nan<C>();
    for (int64_t j = threadIdx.x; j < a.classes; j += blockDim.x) {
      store_as<C>(a.dlogits, base + j, a.dt, d);
    }
    return;
  }
  C m, s, sum_x;
  row_logsumexp(a, base, m, s, sum_x, false);
  const C g = load_as<C>(a.grad, row, a.gt);
  const C inv_s = C(1) / s;
  const C smooth = static_cast<C>(a.smoothing);
  const C uniform = smooth / static_cast<C>(a.classes);
  for (int64_t j = threadIdx.x; j < a.classes; j += blockDim.x) {
    C d = exp_c(load_as<C>(a.logits, base + j, a.lt) - m) * inv_s - uniform;
    if (j == t) d -= C(1) - smooth;
    store_as<C>(a.dlogits, base + j, a.dt, g * d);
  }
}

int64_t last_dim(const Tensor& t) { return t.dim() == 0 ? 1 : t.shape().back(); }

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  const int64_t cols = last_dim(out);
  if (out.numel() == 0 || cols == 0) return;
  check_cuda_tensor(out, "softmax", "out");
  const Tensor xs = contiguous_as(x, x.dtype());
  const int64_t rows = out.numel() / cols;
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_compute(out.dtype(), "softmax", [&](auto tag) {
    using C = decltype(tag);
    softmax_kernel<C><<<rows_grid(rows), kThreads, 0, stream>>>(cdata(xs), xs.dtype(), mdata(out),
                                                                out.dtype(), cols, log);
  });
  check_launch("softmax_kernel");
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) {
  const int64_t cols = last_dim(dx);
  if (dx.numel() == 0 || cols == 0) return;
  check_cuda_tensor(dx, "softmax_backward", "dx");
  const Tensor ys = contiguous_as(y, y.dtype()), dys = contiguous_as(dy, dy.dtype());
  const int64_t rows = dx.numel() / cols;
  const int dev = dx.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  dispatch_compute(dx.dtype(), "softmax_backward", [&](auto tag) {
    using C = decltype(tag);
    softmax_backward_kernel<C><<<rows_grid(rows), kThreads, 0, stream>>>(
        cdata(ys), ys.dtype(), cdata(dys), dys.dtype(), mdata(dx), dx.dtype(), cols, log);
  });
  check_launch("softmax_backward_kernel");
}

void CudaBackend::embedding(const Tensor& weight, const Tensor& indices, const Tensor& out) {
  const int64_t n = indices.numel();
  const int64_t vocab = weight.size(0);
  const int64_t dim = vocab == 0 ? 0 : weight.numel() / vocab;
  if (n == 0 || dim == 0) return;
  check_cuda_tensor(out, "embedding", "out");
  DTRAIN_CHECK(indices.dtype() == DType::i64, "cuda embedding: indices must be i64, got ",
               dtype_name(indices.dtype()));
  const Tensor ws = contiguous_as(weight, out.dtype());
  const Tensor is = contiguous_as(indices, DType::i64);
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  // The bits written for an out-of-range index: a quiet NaN of the table's dtype, 0 for integers.
  uint64_t invalid = 0;
  switch (out.dtype()) {
    case DType::f32:
      invalid = 0x7fc00000u;
      break;
    case DType::f64:
      invalid = 0x7ff8000000000000u;
      break;
    case DType::f16:
      invalid = 0x7e00u;
      break;
    case DType::bf16:
      invalid = 0x7fc0u;
      break;
    case DType::i32:
    case DType::i64:
      invalid = 0;
      break;
  }
  switch (dtype_size(out.dtype())) {
    case 2:
      embedding_kernel<uint16_t><<<grid_for(n * dim), kThreads, 0, stream>>>(
          ws.data<uint16_t>(), is.data<int64_t>(), out.data<uint16_t>(), n, dim, vocab,
          static_cast<uint16_t>(invalid));
      break;
    case 4:
      embedding_kernel<uint32_t><<<grid_for(n * dim), kThreads, 0, stream>>>(
          ws.data<uint32_t>(), is.data<int64_t>(), out.data<uint32_t>(), n, dim, vocab,
          static_cast<uint32_t>(invalid));
      break;
    default:
      embedding_kernel<uint64_t><<<grid_for(n * dim), kThreads, 0, stream>>>(
          ws.data<uint64_t>(), is.data<int64_t>(), out.data<uint64_t>(), n, dim, vocab, invalid);
      break;
  }
  check_launch("embedding_kernel");
}

void CudaBackend::embedding_backward(const Tensor& grad, const Tensor& indices, int64_t padding_idx,
                                     const Tensor& dweight) {
  const int64_t n = indices.numel();
  const int64_t vocab = dweight.size(0);
  const int64_t dim = vocab == 0 ? 0 : dweight.numel() / vocab;
  if (n == 0 || dim == 0) return;
  check_cuda_tensor(dweight, "embedding_backward", "dweight");
  DTRAIN_CHECK(vocab < (int64_t{1} << 32) - 1, "cuda embedding_backward: a table of ", vocab,
               " rows is not supported (at most 2^32 - 2); split the table");
  const Tensor gs = contiguous_as(grad, grad.dtype());
  const Tensor is = contiguous_as(indices, DType::i64);
  // Half-precision tables accumulate in an f32 copy and are rounded once, as on the CPU.
  const bool staged = is_half(dweight.dtype());
  const Tensor acc = staged ? contiguous_as(dweight, DType::f32) : dweight;
  const int dev = dweight.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  Tensor keys = Tensor::empty({n}, DType::i32, dweight.device());
  embedding_keys_kernel<<<grid_for(n), kThreads, 0, stream>>>(
      is.data<int64_t>(), n, vocab, padding_idx, static_cast<uint32_t*>(mdata(keys)));
  check_launch("embedding_keys_kernel");
  const GroupedPositions groups =
      group_positions_by_key(keys, key_bits_for(static_cast<uint64_t>(vocab)));
  // Enough threads for a row's columns (whole warps, at most kThreads); blocks stride over rows.
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (dim + 31) / 32 * 32));
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(vocab, kMaxBlocks));
  dispatch_compute(acc.dtype(), "embedding_backward", [&](auto tag) {
    using C = decltype(tag);
    embedding_backward_kernel<C><<<blocks, threads, 0, stream>>>(
        cdata(gs), gs.dtype(), static_cast<const uint32_t*>(cdata(groups.keys)),
        groups.positions.data<int32_t>(), static_cast<int32_t>(n), acc.data<C>(), vocab, dim);
  });
  check_launch("embedding_backward_kernel");
  if (staged) copy(acc, dweight);
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                double label_smoothing, const Tensor& losses) {
  const int64_t rows = targets.numel();
  const int64_t classes = last_dim(logits);
  if (rows == 0) return;
  check_cuda_tensor(losses, "cross_entropy", "losses");
  const Tensor ls = contiguous_as(logits, logits.dtype());
  const Tensor ts = contiguous_as(targets, DType::i64);
  const int dev = losses.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  CrossEntropyArgs a{cdata(ls), ls.dtype(),    ts.data<int64_t>(), ignore_index, label_smoothing,
                     classes,   mdata(losses), losses.dtype(),     nullptr,      DType::f32,
                     nullptr,   DType::f32};
  dispatch_compute(logits.dtype(), "cross_entropy", [&](auto tag) {
    using C = decltype(tag);
    cross_entropy_kernel<C><<<rows_grid(rows), kThreads, 0, stream>>>(a);
  });
  check_launch("cross_entropy_kernel");
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                         int64_t ignore_index, double label_smoothing,
                                         const Tensor& grad_losses, const Tensor& dlogits) {
  const int64_t rows = targets.numel();
  const int64_t classes = last_dim(logits);
  if (rows == 0) return;
  check_cuda_tensor(dlogits, "cross_entropy_backward", "dlogits");
  const Tensor ls = contiguous_as(logits, logits.dtype());
  const Tensor ts = contiguous_as(targets, DType::i64);
  const Tensor gs = contiguous_as(grad_losses, grad_losses.dtype());
  const int dev = dlogits.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  CrossEntropyArgs a{
      cdata(ls), ls.dtype(), ts.data<int64_t>(), ignore_index, label_smoothing, classes,
      nullptr,   DType::f32, cdata(gs),          gs.dtype(),   mdata(dlogits),  dlogits.dtype()};
  dispatch_compute(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using C = decltype(tag);
    cross_entropy_backward_kernel<C><<<rows_grid(rows), kThreads, 0, stream>>>(a);
  });
  check_launch("cross_entropy_backward_kernel");
}

}  // namespace dtrain
