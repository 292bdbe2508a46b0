// Device-side helpers shared by the .cu files of the CUDA backend: element conversions, loads and stores
// with the dtype known only at run time, launch geometry, and block-wide reductions.
//
// Conversions follow the CPU backend: f16 and bf16 widen exactly to f32 and narrow from f32 with
// round-to-nearest-even; f64 narrows to f16/bf16 through f32 (as the CPU's converting copy does).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/strided_layout.h"
#include "core/tensor/dtype.h"
#include "core/tensor/tensor.h"

namespace dtrain::cuda {

using half = __half;
using bf16 = __nv_bfloat16;

// ---- conversions

template <class T>
inline constexpr bool is_half_type = std::is_same_v<T, half> || std::is_same_v<T, bf16>;

template <class To, class From>
__device__ __forceinline__ To cast(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, half>) {
    return cast<To>(__half2float(v));
  } else if constexpr (std::is_same_v<From, bf16>) {
    return cast<To>(__bfloat162float(v));
  } else if constexpr (std::is_same_v<To, half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bf16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

// The type a kernel computes in for storage type T: f32 for f32/f16/bf16, f64 for f64, i64 for ints.
template <class T>
struct ComputeOf {
  using type = float;
};
template <>
struct ComputeOf<double> {
  using type = double;
};
template <>
struct ComputeOf<int32_t> {
  using type = int64_t;
};
template <>
struct ComputeOf<int64_t> {
  using type = int64_t;
};
template <class T>
using compute_t = typename ComputeOf<T>::type;

// ---- loads and stores with a run-time dtype (the switch is uniform across a warp)

template <class C>
__device__ __forceinline__ C load_as(const void* p, int64_t i, DType t) {
  switch (t) {
    case DType::f32:
      return cast<C>(static_cast<const float*>(p)[i]);
    case DType::f64:
      return cast<C>(static_cast<const double*>(p)[i]);
    case DType::f16:
      return cast<C>(static_cast<const half*>(p)[i]);
    case DType::bf16:
      return cast<C>(static_cast<const bf16*>(p)[i]);
    case DType::i32:
      return cast<C>(static_cast<const int32_t*>(p)[i]);
    case DType::i64:
      return cast<C>(static_cast<const int64_t*>(p)[i]);
  }
  return C(0);
}

template <class C>
__device__ __forceinline__ void store_as(void* p, int64_t i, DType t, C v) {
  switch (t) {
    case DType::f32:
      static_cast<float*>(p)[i] = cast<float>(v);
      return;
    case DType::f64:
      static_cast<double*>(p)[i] = cast<double>(v);
      return;
    case DType::f16:
      static_cast<half*>(p)[i] = cast<half>(v);
      return;
    case DType::bf16:
      static_cast<bf16*>(p)[i] = cast<bf16>(v);
      return;
    case DType::i32:
      static_cast<int32_t*>(p)[i] = cast<int32_t>(v);
      return;
    case DType::i64:
      static_cast<int64_t*>(p)[i] = cast<int64_t>(v);
      return;
  }
}

// ---- launch geometry

constexpr int kThreads = 256;
// Grid-stride kernels need no more blocks than this to fill an H100 (132 SMs x 8 blocks of 256).
constexpr int64_t kMaxBlocks = 65535;

inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned>(blocks);
}

// Blocks for one-block-per-row kernels: rows go to gridDim.x (up to 2^31 - 1).
inline unsigned rows_grid(int64_t rows) {
  DTRAIN_CHECK(rows < (int64_t{1} << 31), "CUDA kernel over ", rows,
               " rows: more than 2^31 - 1 rows is not supported; split the batch");
  return static_cast<unsigned>(rows < 1 ? 1 : rows);
}

#define DTRAIN_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ---- reductions within a warp and a block

template <class C>
__device__ __forceinline__ C warp_sum(C v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class C>
__device__ __forceinline__ C warp_max(C v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    C o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = o > v ? o : v;
  }
  return v;
}

// Sum over the block, returned to every thread. blockDim.x must be a multiple of 32 (<= 1024). Safe to
// call repeatedly: the leading barrier keeps a new call from overwriting the previous call's result.
template <class C>
__device__ C block_sum(C v) {
  __shared__ C partial[32];
  __shared__ C result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    C w = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : C(0);
    w = warp_sum(w);
    if (lane == 0) result = w;
  }
  __syncthreads();
  return result;
}

// Maximum over the block (NaN is not propagated; callers see it through the sums that follow).
template <class C>
__device__ C block_max(C v) {
  __shared__ C partial[32];
  __shared__ C result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    C w = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : partial[0];
    w = warp_max(w);
    if (lane == 0) result = w;
  }
  __syncthreads();
  return result;
}

template <class C>
__device__ __forceinline__ C lowest();
template <>
__device__ __forceinline__ float lowest<float>() {
  return -__int_as_float(0x7f800000);  // -inf
}
template <>
__device__ __forceinline__ double lowest<double>() {
  return -__longlong_as_double(0x7ff0000000000000LL);
}

// A quiet NaN: what kernels write where an input (a class target, an embedding index) is out of
// range, so the bad value shows in the loss instead of being read or written out of bounds.
template <class C>
__device__ __forceinline__ C quiet_nan();
template <>
__device__ __forceinline__ float quiet_nan<float>() {
  return __int_as_float(0x7fc00000);
}
template <>
__device__ __forceinline__ double quiet_nan<double>() {
  return __longlong_as_double(0x7ff8000000000000LL);
}

// ---- searching sorted keys

// The first p in [0, n) with sorted[p] >= key, or n.
__device__ __forceinline__ int32_t lower_bound(const uint32_t* sorted, int32_t n, uint32_t key) {
  int32_t lo = 0, hi = n;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// ---- host-side helpers

// Positions 0..n-1 of an i32 tensor of keys (read as uint32, each < 2^key_bits), grouped by key: a
// stable radix sort of (key, position) pairs, so equal keys keep their positions ascending. A
// gather over the groups then sums each group in position order: the deterministic replacement for
// scattering with atomics (embedding and max-pool backward). Defined in cuda_reduce.cu, queued on
// the compute stream of keys' device; n must be below 2^31.
struct GroupedPositions {
  Tensor keys;       // i32 [n], the keys ascending (uint32 bits)
  Tensor positions;  // i32 [n], the position each sorted key came from
};
// key_bits: key_bits_for(largest key), strided_layout.h.
GroupedPositions group_positions_by_key(const Tensor& keys, int key_bits);

// The element pointer of a tensor (its storage plus offset), as void* for run-time-dtype kernels.
inline const void* cdata(const Tensor& t) { return t.raw_data(); }
inline void* mdata(const Tensor& t) { return t.raw_data(); }
inline DType dtype_or(const Tensor& t, DType fallback) {
  return t.defined() ? t.dtype() : fallback;
}

// Calls f(float{}) or f(double{}): the compute type of a floating kernel whose data has dtype t.
template <class F>
void dispatch_compute(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
    case DType::f16:
    case DType::bf16:
      f(float{});
      return;
    case DType::f64:
      f(double{});
      return;
    default:
      throw Error(detail::concat("cuda ", op, ": unsupported dtype ", dtype_name(t),
                                 "; expected f32, f64, f16 or bf16"));
  }
}

// Calls f(T{}) for the storage type of dtype t (float, double, half, bf16, int32_t, int64_t).
template <class F>
void dispatch_storage(DType t, F&& f) {
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
    case DType::i32:
      f(int32_t{});
      return;
    case DType::i64:
      f(int64_t{});
      return;
  }
}

}  // namespace dtrain::cuda
