// CUDA reductions of x viewed as [outer, n, inner] over n: sum, and max/min with the (first) arg position.
//
// Two mappings, both deterministic (a fixed combination order, no atomics):
//   inner == 1 (reducing the last dim): a block of 256 threads per row, tree-combined in shared memory;
//   inner > 1: 32 x 8 blocks, 32 adjacent inner columns (coalesced loads) times 8 row lanes over n.
// When outer * inner is too small to fill the GPU and n is long, n is cut into chunks that reduce in
// parallel into partials [outer, chunks, inner]; a second pass of the same kernels reduces the chunks.
//
// Sums accumulate in f64 for floating inputs and i64 for integers; max/min compare in the same type
// (exact). NaN wins max/min, and among equal values the lowest position wins, as in PyTorch.
//
// Also here: group_positions_by_key (kernel_utils.cuh), the stable key sort behind the
// deterministic, scatter-free backward passes of embedding and max pooling. It is CUB's radix sort,
// instantiated in this one file for one key and value type, so its compile time is paid once.
#include <cub/device/device_radix_sort.cuh>

#include <limits>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"

namespace dtrain {
namespace cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kColLanes = 32, kColRows = 8;

template <class C>
__device__ __forceinline__ bool nan_of(C v) {
  return v != v;
}

// Whether candidate (vb, ib) replaces the current (va, ia) for max/min. Index -1 marks "nothing yet".
template <class C>
__device__ __forceinline__ bool better(bool is_max, C vb, int64_t ib, C va, int64_t ia) {
  if (ib < 0) return false;
  if (ia < 0) return true;
  if (nan_of(va)) return nan_of(vb) && ib < ia;
  if (nan_of(vb)) return true;
  if (is_max ? vb > va : vb < va) return true;
  return vb == va && ib < ia;
}

template <class C>
__device__ __forceinline__ void combine(ReduceOp op, C& v, int64_t& i, C vb, int64_t ib) {
  if (op == ReduceOp::sum) {
    v += vb;
  } else if (better(op == ReduceOp::max, vb, ib, v, i)) {
    v = vb;
    i = ib;
  }
}

struct ReduceArgs {
  ReduceOp op;
  const void* in;
  DType in_type;
  const int64_t* in_idx;  // positions of the input values (second pass), or null: position = j
  void* out;
  DType out_type;
  int64_t* out_idx;  // may be null
  int64_t outer, n, inner;
  int64_t chunks, chunk_len;  // out is [outer, chunks, inner]
};

template <class C>
__device__ __forceinline__ void load_element(const ReduceArgs& a, int64_t flat, int64_t j, C& v,
                                             int64_t& i) {
  v = load_as<C>(a.in, flat, a.in_type);
  i = a.in_idx ? a.in_idx[flat] : j;
}

template <class C>
__device__ __forceinline__ void store_result(const ReduceArgs& a, int64_t flat, C v, int64_t i) {
  store_as<C>(a.out, flat, a.out_type, v);
  if (a.out_idx) a.out_idx[flat] = i < 0 ? 0 : i;
}

// inner == 1: block b reduces chunk (b % chunks) of row (b / chunks).
template <class C>
__global__ void reduce_rows_kernel(ReduceArgs a) {
  __shared__ C sval[kRowThreads];
  __shared__ int64_t sidx[kRowThreads];
  const int64_t o = blockIdx.x / a.chunks, c = blockIdx.x % a.chunks;
  const int64_t j0 = c * a.chunk_len;
  const int64_t j1 = min(a.n, j0 + a.chunk_len);
  C v = C(0);
  int64_t vi = -1;
  for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    C x;
    int64_t xi;
    load_element(a, o * a.n + j, j, x, xi);
    combine(a.op, v, vi, x, xi);
  }
  sval[threadIdx.x] = v;
  sidx[threadIdx.x] = vi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      C w = sval[threadIdx.x];
      int64_t wi = sidx[threadIdx.x];
      combine(a.op, w, wi, sval[threadIdx.x + s], sidx[threadIdx.x + s]);
      sval[threadIdx.x] = w;
      sidx[threadIdx.x] = wi;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) store_result(a, o * a.chunks + c, sval[0], sidx[0]);
}

// inner > 1: block b covers 32 inner columns of chunk c of slice o; its 8 row lanes stride over n.
template <class C>
__global__ void reduce_cols_kernel(ReduceArgs a, int64_t col_blocks) {
  __shared__ C sval[kColRows][kColLanes];
  __shared__ int64_t sidx[kColRows][kColLanes];
  const int64_t b = blockIdx.x;
  const int64_t cb = b % col_blocks;
  const int64_t c = (b / col_blocks) % a.chunks;
  const int64_t o = b / (col_blocks * a.chunks);
  const int64_t col = cb * kColLanes + threadIdx.x;
  const int64_t j0 = c * a.chunk_len;
  const int64_t j1 = min(a.n, j0 + a.chunk_len);
  C v = C(0);
  int64_t vi = -1;
  if (col < a.inner) {
    for (int64_t j = j0 + threadIdx.y; j < j1; j += kColRows) {
      C x;
      int64_t xi;
      load_element(a, (o * a.n + j) * a.inner + col, j, x, xi);
      combine(a.op, v, vi, x, xi);
    }
  }
  sval[threadIdx.y][threadIdx.x] = v;
  sidx[threadIdx.y][threadIdx.x] = vi;
  __syncthreads();
  if (threadIdx.y == 0 && col < a.inner) {
    for (int r = 1; r < kColRows; ++r)
      combine(a.op, v, vi, sval[r][threadIdx.x], sidx[r][threadIdx.x]);
    store_result(a, (o * a.chunks + c) * a.inner + col, v, vi);
  }
}

template <class C>
void launch_reduce(const ReduceArgs& a, cudaStream_t stream) {
  if (a.inner == 1) {
    const int64_t blocks = a.outer * a.chunks;
    reduce_rows_kernel<C><<<rows_grid(blocks), kRowThreads, 0, stream>>>(a);
    check_launch("reduce_rows_kernel");
  } else {
    const int64_t col_blocks = (a.inner + kColLanes - 1) / kColLanes;
    const int64_t blocks = col_blocks * a.chunks * a.outer;
    reduce_cols_kernel<C>
        <<<rows_grid(blocks), dim3(kColLanes, kColRows), 0, stream>>>(a, col_blocks);
    check_launch("reduce_cols_kernel");
  }
}

// How many chunks to cut n into so that about kTargetBlocks blocks run, keeping chunks long enough
// to amortise the second pass.
int64_t choose_chunks(int64_t outer, int64_t n, int64_t inner) {
  constexpr int64_t kTargetBlocks = 1024;
  const int64_t min_len = inner == 1 ? 4 * kRowThreads : 8 * kColRows;
  const int64_t blocks = inner == 1 ? outer : outer * ((inner + kColLanes - 1) / kColLanes);
  if (blocks >= kTargetBlocks) return 1;
  const int64_t want = (kTargetBlocks + blocks - 1) / blocks;
  const int64_t most = (n + min_len - 1) / min_len;
  return std::max<int64_t>(1, std::min(want, most));
}

__global__ void iota_kernel(int32_t* out, int64_t n) {
  DTRAIN_GRID_STRIDE(i, n) out[i] = static_cast<int32_t>(i);
}

}  // namespace

GroupedPositions group_positions_by_key(const Tensor& keys, int key_bits) {
  const int64_t n = keys.numel();
  DTRAIN_CHECK(keys.dtype() == DType::i32 && keys.is_contiguous() && keys.device().is_cuda(),
               "cuda group_positions_by_key: keys must be a contiguous i32 CUDA tensor");
  DTRAIN_CHECK(n < std::numeric_limits<int32_t>::max(), "cuda: grouping ", n,
               " positions by key: 2^31 - 1 or more is not supported; split the batch");
  DTRAIN_CHECK(key_bits >= 1 && key_bits <= 32, "cuda group_positions_by_key: key_bits ", key_bits,
               " is outside [1, 32]");
  const Device device = keys.device();
  GroupedPositions r{Tensor::empty({n}, DType::i32, device),
                     Tensor::empty({n}, DType::i32, device)};
  if (n == 0) return r;
  DeviceGuard guard(device.index);
  cudaStream_t stream = compute_stream(device.index);
  Tensor positions = Tensor::empty({n}, DType::i32, device);
  iota_kernel<<<grid_for(n), kThreads, 0, stream>>>(positions.data<int32_t>(), n);
  check_launch("iota_kernel");
  const auto* keys_in = static_cast<const uint32_t*>(cdata(keys));
  auto* keys_out = static_cast<uint32_t*>(mdata(r.keys));
  const int count = static_cast<int>(n);
  // The first call only sizes the scratch space; the second sorts (LSD radix: stable).
  size_t scratch_bytes = 0;
  DTRAIN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, scratch_bytes, keys_in, keys_out, positions.data<int32_t>(),
      r.positions.data<int32_t>(), count, 0, key_bits, stream));
  Tensor scratch = Tensor::empty({static_cast<int64_t>(scratch_bytes / 8 + 1)}, DType::i64, device);
  DTRAIN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      mdata(scratch), scratch_bytes, keys_in, keys_out, positions.data<int32_t>(),
      r.positions.data<int32_t>(), count, 0, key_bits, stream));
  return r;
}

}  // namespace cuda

using namespace cuda;

void CudaBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner,
                         const Tensor& out, const Tensor& indices) {
  DTRAIN_CHECK(outer * n * inner == x.numel() && outer * inner == out.numel(), "cuda reduce: [",
               outer, ", ", n, ", ", inner, "] does not match input shape ", shape_str(x.shape()),
               " and output shape ", shape_str(out.shape()));
  if (out.numel() == 0) return;
  if (!out.is_contiguous()) {
    Tensor dense = Tensor::empty(out.shape(), out.dtype(), out.device());
    reduce(op, x, outer, n, inner, dense, indices);
    copy(dense, out);
    return;
  }
  check_cuda_tensor(out, "reduce", "out");
  if (indices.defined()) check_cuda_tensor(indices, "reduce", "indices");
  DTRAIN_CHECK(n > 0 || op == ReduceOp::sum, "cuda reduce: max/min over an empty dim of ",
               shape_str(x.shape()));
  const Tensor xs = x.is_contiguous() ? x : contiguous_as(x, x.dtype());
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  const bool integral = !is_floating(x.dtype());
  auto run = [&](auto tag) {
    using C = decltype(tag);
    ReduceArgs a{};
    a.op = op;
    a.in = cdata(xs);
    a.in_type = xs.dtype();
    a.in_idx = nullptr;
    a.outer = outer, a.n = n, a.inner = inner;
    a.chunks = choose_chunks(outer, n, inner);
    a.chunk_len = a.chunks == 1 ? std::max<int64_t>(n, 1) : (n + a.chunks - 1) / a.chunks;
    a.chunks = a.chunks == 1 ? 1 : (n + a.chunk_len - 1) / a.chunk_len;
    int64_t* out_idx = indices.defined() && op != ReduceOp::sum ? indices.data<int64_t>() : nullptr;
    if (a.chunks == 1) {
      a.out = mdata(out), a.out_type = out.dtype(), a.out_idx = out_idx;
      launch_reduce<C>(a, stream);
      return;
    }
    // First pass into partials kept in the accumulation type, then the chunks are reduced.
    const DType acc_type = integral ? DType::i64 : DType::f64;
    Tensor partial = Tensor::empty({outer, a.chunks, inner}, acc_type, out.device());
    Tensor partial_idx = Tensor::empty({outer, a.chunks, inner}, DType::i64, out.device());
    a.out = mdata(partial), a.out_type = acc_type, a.out_idx = partial_idx.data<int64_t>();
    launch_reduce<C>(a, stream);
    ReduceArgs b = a;
    b.in = cdata(partial), b.in_type = acc_type;
    b.in_idx = op == ReduceOp::sum ? nullptr : partial_idx.data<int64_t>();
    b.n = a.chunks, b.chunks = 1, b.chunk_len = a.chunks;
    b.out = mdata(out), b.out_type = out.dtype(), b.out_idx = out_idx;
    launch_reduce<C>(b, stream);
  };
  if (integral) {
    run(int64_t{});
  } else {
    run(double{});
  }
}

}  // namespace dtrain
