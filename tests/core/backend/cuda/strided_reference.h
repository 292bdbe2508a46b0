// The reference the strided-indexing tests check the kernels' index math against: the element offset
// of row-major position `linear` in a view of `shape` and `strides`, by plain division, one dim at a
// time (sum_d idx_d * stride_d).
#pragma once
#include <cstdint>

#include "core/tensor/tensor.h"

namespace dtrain::testing {

inline int64_t direct_offset(int64_t linear, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (linear % shape[d]) * strides[d];
    linear /= shape[d];
  }
  return off;
}

}  // namespace dtrain::testing
