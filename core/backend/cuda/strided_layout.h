// The host-side plan of an elementwise kernel and the index arithmetic it runs: N operands of one
// shape, each with its own strides (0 on broadcast dims).
//
// 1. Dims are coalesced on the host: size-1 dims dropped, and neighbours merged where every operand
//    steps through them as through one dim (outer stride = inner stride * inner size, for all N).
//    Contiguous operands of one shape become one flat dim; a transposed operand keeps its dims.
// 2. The path: `flat` (one dim, unit stride in every operand: the linear index is the offset, no
//    index math), else `strided32` when the element count and every operand's largest offset fit
//    in int32, else `strided64`. The strided kernels are instantiated for both index types.
// 3. On the device an element's offsets take one division per coalesced dim except the outermost
//    (its index is what is left of the linear index). In 32-bit mode the division is a
//    multiply-high and a shift by a constant prepared on the host (Divisor32), not the
//    ~70-instruction 64-bit division routine.
//
// Plain C++ (also compiled by the host compiler, and tested without a GPU).
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/tensor/dtype.h"

#ifdef __CUDACC__
#define DTRAIN_HOST_DEVICE __host__ __device__
#else
#define DTRAIN_HOST_DEVICE
#endif

namespace dtrain::cuda {

constexpr int kMaxDims = 12;

template <int N>
struct StridedLayout {
  int ndim = 1;
  int64_t sizes[kMaxDims] = {1};
  int64_t strides[N][kMaxDims] = {};

  // The element offset of linear index `linear` (row-major over sizes) in each operand.
  DTRAIN_HOST_DEVICE void offsets(int64_t linear, int64_t (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t size = sizes[d];
      const int64_t idx = linear % size;
      linear /= size;
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
    }
  }
};

// Builds the coalesced layout. Returns false when more than kMaxDims dims remain after coalescing.
template <int N>
bool make_strided_layout(const std::vector<int64_t>& shape,
                         const std::array<const std::vector<int64_t>*, N>& strides,
                         StridedLayout<N>& out) {
  // Working copy without size-1 dims, outermost first.
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, N>> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    sizes.push_back(shape[d]);
    std::array<int64_t, N> s{};
    for (int k = 0; k < N; ++k) s[static_cast<size_t>(k)] = (*strides[static_cast<size_t>(k)])[d];
    st.push_back(s);
  }
  // Merge dim i into dim i + 1 (the inner one) when, for every operand, stride[i] = stride[i+1] *
  // size[i+1]. A broadcast operand (stride 0 on both) merges; stride 0 beside a non-zero stride
  // does not, nor does a transposed pair (the outer stride is the smaller one).
  std::vector<int64_t> msizes;
  std::vector<std::array<int64_t, N>> mst;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (!msizes.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < static_cast<size_t>(N); ++k) {
        if (mst.back()[k] != st[d][k] * sizes[d]) mergeable = false;
      }
      if (mergeable) {
        msizes.back() *= sizes[d];
        mst.back() = st[d];
        continue;
      }
    }
    msizes.push_back(sizes[d]);
    mst.push_back(st[d]);
  }
  if (msizes.size() > static_cast<size_t>(kMaxDims)) return false;
  out = StridedLayout<N>{};
  if (msizes.empty()) {  // a scalar, or all dims of size 1
    out.ndim = 1;
    out.sizes[0] = 1;
    for (int k = 0; k < N; ++k) out.strides[k][0] = 0;
    return true;
  }
  out.ndim = static_cast<int>(msizes.size());
  for (int d = 0; d < out.ndim; ++d) {
    out.sizes[d] = msizes[static_cast<size_t>(d)];
    for (int k = 0; k < N; ++k) {
      out.strides[k][d] = mst[static_cast<size_t>(d)][static_cast<size_t>(k)];
    }
  }
  return true;
}

// True when the layout is one dim with unit stride in every operand (plain contiguous arrays).
template <int N>
bool is_flat_contiguous(const StridedLayout<N>& l) {
  if (l.ndim != 1) return false;
  for (int k = 0; k < N; ++k) {
    if (l.strides[k][0] != 1 && l.sizes[0] != 1) return false;
  }
  return true;
}

// True when `numel` and every offset any operand reaches (both signs) fit in int32, so the kernel
// may index in 32 bits.
template <int N>
bool fits_int32(const StridedLayout<N>& l, int64_t numel) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (numel > kMax) return false;
  for (int k = 0; k < N; ++k) {
    int64_t high = 0, low = 0;  // the largest and the smallest offset of operand k
    for (int d = 0; d < l.ndim; ++d) {
      const int64_t steps = l.sizes[d] - 1, stride = l.strides[k][d];
      if (steps <= 0 || stride == 0) continue;
      const int64_t magnitude = stride < 0 ? -stride : stride;
      if (magnitude > kMax || steps > kMax / magnitude) return false;
      (stride > 0 ? high : low) += stride * steps;  // each term <= kMax: no int64 overflow
      if (high > kMax || low < -kMax) return false;
    }
  }
  return true;
}

enum class IndexPath { flat, strided32, strided64 };

template <int N>
IndexPath choose_index_path(const StridedLayout<N>& l, int64_t numel) {
  if (is_flat_contiguous(l)) return IndexPath::flat;
  return fits_int32(l, numel) ? IndexPath::strided32 : IndexPath::strided64;
}

// ---- division by a run-time constant

// n / d and n % d for 0 <= n < 2^31 and 1 <= d < 2^31 with one multiply-high, an add and a shift.
// With s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1 (which fits in 32 bits), let
// M = 2^32 + m = floor(2^(32+s) / d) + 1 = 2^(32+s) / d + e with 0 < e <= 1. Then
//   (mulhi(n, m) + n) >> s = floor(n M / 2^(32+s)) = floor(n / d + n e / 2^(32+s))
// and n e / 2^(32+s) < 2^31 / 2^(32+s) = 2^-(s+1) < 1/d, less than the gap from n/d to the next
// integer, so the floor is n / d. The sum mulhi + n < 2^32 does not overflow because n < 2^31.
struct Divisor32 {
  uint32_t divisor = 1, multiplier = 1, shift = 0;

  static Divisor32 make(uint32_t d) {
    Divisor32 r;
    r.divisor = d;
    r.shift = 0;
    while ((uint64_t{1} << r.shift) < d) ++r.shift;
    r.multiplier =
        static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << r.shift) - d)) / d + 1);
    return r;
  }
  DTRAIN_HOST_DEVICE uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t hi = __umulhi(n, multiplier);
#else
    const auto hi = static_cast<uint32_t>((uint64_t{n} * multiplier) >> 32);
#endif
    return (hi + n) >> shift;
  }
};

// The divisor of one dim for index type I: Divisor32 for int32_t, the plain division for int64_t.
template <class I>
struct IndexDivisor;

template <>
struct IndexDivisor<int32_t> {
  Divisor32 d;
  static IndexDivisor make(int64_t size) { return {Divisor32::make(static_cast<uint32_t>(size))}; }
  DTRAIN_HOST_DEVICE void divmod(int32_t n, int32_t& q, int32_t& r) const {
    const uint32_t uq = d.div(static_cast<uint32_t>(n));
    q = static_cast<int32_t>(uq);
    r = n - static_cast<int32_t>(uq * d.divisor);
  }
};

template <>
struct IndexDivisor<int64_t> {
  int64_t d;
  static IndexDivisor make(int64_t size) { return {size}; }
  DTRAIN_HOST_DEVICE void divmod(int64_t n, int64_t& q, int64_t& r) const {
    q = n / d;
    r = n - q * d;
  }
};

// What a strided kernel receives: the coalesced layout in index type I (int32_t only where
// fits_int32 holds). sizes[0] is never divided by, so its divisor is left unset.
template <int N, class I>
struct IndexLayout {
  using index_type = I;
  int ndim = 1;
  IndexDivisor<I> sizes[kMaxDims] = {};
  I strides[N][kMaxDims] = {};

  DTRAIN_HOST_DEVICE void offsets(I linear, I (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d > 0; --d) {
      I q, idx;
      sizes[d].divmod(linear, q, idx);
      linear = q;
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
    }
    for (int k = 0; k < N; ++k) off[k] += linear * strides[k][0];  // linear < sizes[0] here
  }
};

template <class I, int N>
IndexLayout<N, I> index_layout(const StridedLayout<N>& l) {
  IndexLayout<N, I> r;
  r.ndim = l.ndim;
  for (int d = 0; d < l.ndim; ++d) {
    if (d > 0) r.sizes[d] = IndexDivisor<I>::make(l.sizes[d]);
    for (int k = 0; k < N; ++k) r.strides[k][d] = static_cast<I>(l.strides[k][d]);
  }
  return r;
}

// ---- converting copies

// The type a converting copy passes each element through. f32 for any pair of f32/f16/bf16 (they
// widen to f32 exactly, and narrowing from f32 rounds once, as on the CPU); f64 when either side is
// f64; i64 between integers and between an integer and f32/f16/bf16 (int64 -> float is one
// rounding, the CPU's static_cast; float -> int64 truncates, and in-range values narrow exactly to
// i32).
enum class CastVia { f32, f64, i64 };

inline CastVia cast_via(DType src, DType dst) {
  if (src == DType::f64 || dst == DType::f64) return CastVia::f64;
  if (!is_floating(src) || !is_floating(dst)) return CastVia::i64;
  return CastVia::f32;
}

// Pairs the flat path converts with compile-time types and 128-bit loads and stores: two different
// dtypes among f32, f16 and bf16 (the casts of mixed precision).
inline bool cast_is_vectorisable(DType src, DType dst) {
  auto narrow = [](DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; };
  return src != dst && narrow(src) && narrow(dst);
}

// ---- key sorts (group_positions_by_key in kernel_utils.cuh)

// The bits a radix sort must look at so that every key in [0, max_key] is ordered: the position of
// max_key's highest set bit plus one (at least 1).
inline int key_bits_for(uint64_t max_key) {
  int bits = 1;
  while (bits < 64 && (max_key >> bits) != 0) ++bits;
  return bits;
}

}  // namespace dtrain::cuda
