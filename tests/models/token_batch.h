// Token-id batches for the model tests: rows of different lengths padded at the end.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain::testing {

// i64 [rows, longest row], each row's ids followed by `pad`.
inline Tensor padded_batch(const std::vector<std::vector<int64_t>>& rows, int64_t pad) {
  size_t width = 0;
  for (const auto& r : rows) width = std::max(width, r.size());
  std::vector<int64_t> ids(rows.size() * width, pad);
  for (size_t b = 0; b < rows.size(); ++b)
    std::copy(rows[b].begin(), rows[b].end(), ids.begin() + b * width);
  return Tensor::from_vector(ids, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)},
                             DType::i64);
}

}  // namespace dtrain::testing
