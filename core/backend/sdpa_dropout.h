// The keep mask of attention dropout in the fused sdpa kernels, one function for every backend
// (host and device) so that forward and backward, CPU and CUDA, drop the same scores. Score
// (b, h, i, j) (batch, head, query row, key) is kept iff
//   u >= p,  u = uniform_float(philox4x32_10(counter (j, i, h, b), key (seed lo, seed hi)).v[0])
// where u is a multiple of 2^-24 in [0, 1) and p is compared as an f32, for every input dtype (so
// the f64 kernels keep the same scores as the f32 ones). Kept weights are scaled by 1 / (1 - p)
// (sdpa_dropout_scale): E[M / (1 - p)] = 1, the inverted dropout of PyTorch.
#pragma once
#include <cstdint>

#include "core/backend/cuda/philox.h"

namespace dtrain {

DTRAIN_PHILOX_HD bool sdpa_dropout_keep(uint64_t seed, uint32_t b, uint32_t h, uint32_t i,
                                        uint32_t j, float p) {
  const cuda::Philox4 r = cuda::philox4x32_10(
      cuda::Philox4{{j, i, h, b}}, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return cuda::uniform_float(r.v[0]) >= p;
}

// 1 / (1 - p), and 0 for p = 1 (every score dropped: the output is 0, not 0 * inf).
inline double sdpa_dropout_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }

}  // namespace dtrain
