// The index arithmetic of strided elementwise kernels: N operands of one shape, each with its own
// strides (0 on broadcast dims). Dims are coalesced on the host first - size-1 dims dropped, and
// neighbours merged where every operand steps through them as through one dim - so a transposed or
// broadcast view usually costs one or two divisions per element, and a contiguous one none.
// Plain C++ (also compiled by the host compiler, and tested without a GPU).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

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
  // Merge dim i into dim i + 1 (the inner one) when, for every operand, stride[i] = stride[i+1] * size[i+1].
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

}  // namespace dtrain::cuda
